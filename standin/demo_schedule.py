"""``make demo``'s scheduling step, driven from the WordPress site: send later, send
gradually, cancel.

On ``demo_wordpress``'s site, one request (``tests/php/integration/requests/
demo-schedule.php``) queues a reminder held ``REMIND_AFTER_S`` seconds (``wp_mail()``
with ``X-Postbag-Send-At``: a held batch), the digest to its 1,000 subscribers over a
``WINDOW_MINUTES``-minute window (``postbag_notify()`` with ``send_between``) and an
announcement to them held a day (``send_at``). The uploads go to the sender's handlers
as S3 would deliver them (every S3 notification app.py declares, in a thread). The
site's REST API, as its administrator, lists the three waiting (``GET
postbag/v1/scheduled``) and cancels the announcement (``POST
postbag/v1/jobs/<id>/cancel``: ``on_job_cancel``). ``drain_held`` runs every
``TICK_S`` seconds (EventBridge: every minute) and ``on_work_item`` takes the work
queue in this process.

The demo then prints how late the reminder went out (wall time), that the
announcement sent nothing, and the digest's sends per minute of its window against
the ideal. A window is paced by the minute (the drainer's period,
docs/scheduling.md), so a window as short as a demo's would be one minute: all at
once. For the window, the sender's clock (``app.clock``, the one the tests move)
runs ``SPEEDUP`` times faster than the wall: the 6-minute window takes 60 s,
and the drainer runs every 24 s of the sender's time instead of 60. Sends are
counted by when SES took them, on the sender's clock.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import boto3

from standin.aws import LocalAws
from standin.job_run import per_address, sent_mails
from standin.lambda_runtime import LambdaContext, LocalDispatcher, LocalSesEvents
from standin.schedules import Ticker
from standin.sqs_runtime import create_queue, sqs_event

if TYPE_CHECKING:
    from standin.demo_wordpress import Site

PAGE = "/postbag-test/demo-schedule.php"
REMIND_AFTER_S = 12
# The window opens about a minute after the request (on the sender's clock, which runs
# SPEEDUP times faster from the reminder's release on) and lasts WINDOW_MINUTES.
WINDOW_OPENS_S = 60
WINDOW_MINUTES = 6
SPEEDUP = 6.0
TICK_S = 2.0
# A drainer run's release and the batch's send, from the run's start.
RELEASE_S = 5.0
RECIPIENTS = 1000
TIMEOUT_S = 150.0


class SenderClock:
    """``app.clock`` for the demo: the wall's time until ``speed_up()``, then ``factor``
    times faster from that moment on (never backwards)."""

    def __init__(self) -> None:
        self.since: float | None = None
        self.factor = 1.0

    def __call__(self) -> float:
        now = time.time()
        return now if self.since is None else self.since + (now - self.since) * self.factor

    def speed_up(self, factor: float) -> None:
        self.since, self.factor = time.time(), factor

    def at(self, wall: float) -> float:
        """The sender's time when the wall clock said ``wall``."""
        if self.since is None or wall < self.since:
            return wall
        return self.since + (wall - self.since) * self.factor


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _work(sqs: Any, url: str, arn: str, app: Any) -> int:
    """Hand what is on the work queue to on_work_item, as Lambda's poller would."""
    handled = 0
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1,
                                          WaitTimeSeconds=0).get("Messages", []):
        app.on_work_item(sqs_event(messages, arn),
                         LambdaContext(300.0, "postbag-local-on_work_item"))
        sqs.delete_message(QueueUrl=url, ReceiptHandle=messages[0]["ReceiptHandle"])
        handled += 1
    return handled


def _listing(site: Site, title: str) -> list[dict[str, Any]]:
    answer, _ = site.rest("postbag/v1/scheduled")
    print(title)
    for entry in answer["scheduled"]:
        when = entry["send_at"] or "{start} .. {end}".format(**entry["send_between"])
        print(f"  {entry['kind']:<5} {entry['id']:<36}  {entry['state']:<9} {when}")
    scheduled: list[dict[str, Any]] = answer["scheduled"]
    return scheduled


def _request(site: Site, role: str, remind_at: float,
             window: tuple[float, float]) -> dict[str, Any]:
    query = urlencode({"role": role, "remind_at": _iso(remind_at), "start": _iso(window[0]),
                       "end": _iso(window[1]),
                       "announce_at": _iso(time.time() + 86400)})
    page, seconds = site.get(query, PAGE)
    print(f"the page answered in {seconds * 1000:.0f} ms: {json.dumps(page)}")
    if page["errors"] or not (page["digest"] and page["announcement"] and page["reminder"]):
        raise RuntimeError(f"the page did not schedule all three: {page}")
    return dict(page)


def _wait_until(predicate: Any, timeout_s: float) -> bool:
    deadline = time.time() + timeout_s
    while not predicate():
        if time.time() > deadline:
            return False
        time.sleep(0.2)
    return True


def _spread(mails: list[dict[str, Any]], plan: dict[str, Any], window: tuple[float, float],
            clock: SenderClock) -> bool:
    """The digest's sends per minute of its plan (the sender's clock) against the ideal;
    True when none fell outside the ``window`` (start, end) and no minute is off by more
    than a chunk."""
    start = datetime.fromisoformat(plan["start"].replace("Z", "+00:00")).timestamp()
    sent_at = [clock.at(mail["arrived"]) for mail in mails]
    per_minute = Counter(math.floor((at - start) / 60) for at in sent_at)
    ideal = RECIPIENTS / plan["minutes"]
    print(f"the digest's plan: {plan['chunks']} chunks of {plan['chunk_rows']} over "
          f"{plan['minutes']} minutes from {plan['start']}; sends a minute (the sender's clock):")
    minutes = range(min(0, *per_minute), max(plan["minutes"], max(per_minute) + 1))
    for minute in minutes:
        print(f"  minute {minute + 1:>2}: {per_minute[minute]:>4}  (ideal "
              f"{ideal if 0 <= minute < plan['minutes'] else 0:.1f})")
    outside = sum(1 for at in sent_at if not window[0] <= at <= window[1])
    deviation = max(abs(per_minute[minute] - (ideal if 0 <= minute < plan["minutes"] else 0))
                    for minute in minutes)
    print(f"max deviation {deviation:.1f} a minute; {outside} sent outside the window")
    return outside == 0 and deviation <= plan["chunk_rows"]


def run(aws: LocalAws, s3: Any, app: Any, events: LocalSesEvents,
        dispatcher: LocalDispatcher, site: Site, bucket: str) -> bool:
    """Schedule, list, cancel, then watch (``bucket``: the site's); True when the reminder
    went out on time, the announcement sent nothing, and the digest went to everyone once,
    spread over its window."""
    sqs = boto3.client("sqs")
    url = create_queue(sqs, app.SETTINGS.work_queue, 300)
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    clock = SenderClock()
    app.clock = clock
    before = len(sent_mails(aws.endpoint))
    requested = time.time()
    remind_at = math.ceil(requested + REMIND_AFTER_S)
    opens = math.ceil(requested + WINDOW_OPENS_S)
    window = (float(opens), float(opens + WINDOW_MINUTES * 60))
    print(f"\nScheduled from WordPress: a reminder at {_iso(remind_at)} ({REMIND_AFTER_S} s "
          f"ahead), the digest to {RECIPIENTS:,} subscribers over {WINDOW_MINUTES} minutes, "
          f"an announcement tomorrow; drain_held every {TICK_S:g} s (AWS: every minute)")
    with dispatcher.pumping(), events.pumping(), \
            Ticker(app.drain_held).running(TICK_S) as ticker:
        page = _request(site, site.info["role"], remind_at, window)
        # Uploaded after the answer; the site records each one scheduled once it is up.
        uploaded = _wait_until(lambda: len(site.rest("postbag/v1/scheduled")[0]["scheduled"])
                               == 3, 60)
        _listing(site, "waiting (GET postbag/v1/scheduled, as the site's admin):")
        cancel, _ = site.rest(f"postbag/v1/jobs/{page['announcement']}/cancel", "POST")
        print(f"POST postbag/v1/jobs/{page['announcement']}/cancel: {json.dumps(cancel)}")
        reminded = _wait_until(lambda: any(
            "Reminder" in m["subject"] for m in sent_mails(aws.endpoint, before)), 60)
        # Before the sender's clock runs ahead of the site's (the listing is the site's view).
        _listing(site, "after the cancel and the reminder (GET postbag/v1/scheduled):")
        clock.speed_up(SPEEDUP)
        print(f"from here the sender's clock runs {SPEEDUP:g}x: the digest's window takes "
              f"{WINDOW_MINUTES * 60 / SPEEDUP:.0f} s of wall time")
        progress = app.job_progress()

        def digest_done() -> bool:
            _work(sqs, url, arn, app)
            return (progress.status(bucket, page["digest"]) or {}).get("state") == "done"

        done = _wait_until(digest_done, TIMEOUT_S)
    app.clock = time.time
    mails = sent_mails(aws.endpoint, before)
    reminder = [m for m in mails if "Reminder" in m["subject"]]
    late = reminder[0]["arrived"] - remind_at if reminder else float("nan")
    # On time: sent by the first drainer run at or after its send_at. When that run began
    # is the stand-in's timer (a thread that a loaded machine may starve), not the sender.
    first_run = next((t for t in ticker.started if t >= remind_at), float("nan"))
    after_run = reminder[0]["arrived"] - first_run if reminder else float("nan")
    on_time = uploaded and reminded and len(reminder) == 1 and 0 <= after_run <= RELEASE_S
    print(f"the reminder: released by drain_held {late:+.1f} s after its send_at, "
          f"{after_run:+.1f} s after the first drainer run past it ({ticker.ticks} ticks so far)")
    announced = [m for m in mails if "announcement" in m["subject"]]
    cancelled = (progress.status(bucket, page["announcement"]) or {}).get("state")
    print(f"the announcement: {cancelled}, {len(announced)} mails sent")
    digest = [m for m in mails if "weekly digest" in m["subject"]]
    counts = per_address(digest)
    once = done and len(counts) == RECIPIENTS and set(counts.values()) == {1}
    status = progress.status(bucket, page["digest"]) or {}
    print(f"the digest: {status.get('state')}, {status.get('sent')} sent of "
          f"{status.get('recipients')}, {'each once' if once else 'NOT each once'}")
    even = bool(digest) and "window" in status and _spread(digest, status["window"], window,
                                                          clock)
    ok = on_time and not announced and cancelled == "cancelled" and once and even
    problems = dispatcher.errors + ticker.errors
    print(f"check: reminder {'on time' if on_time else 'NOT on time'}, announcement "
          f"{'sent nothing' if not announced and cancelled == 'cancelled' else 'NOT cancelled'}"
          f", digest {'spread over its window' if once and even else 'NOT spread as planned'}"
          + (f"; errors: {problems}" if problems else ""))
    return ok and not problems
