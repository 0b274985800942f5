"""make demo through WordPress: a real site's requests, then what the sender made of them.

``standin/wordpress-site.php`` starts Debian's WordPress with the plugin (the PHP
tests' harness: a throwaway MariaDB, PHP-FPM, nginx on 127.0.0.1) with
``JOB_RECIPIENTS`` subscribers, its plugin uploading to a bucket of its own on the
demo's stand-in. One GET of its page (``tests/php/integration/requests/demo-send.php``)
sends ``MAILS`` mails through ``wp_mail()`` and one ``postbag_notify()`` job to
every subscriber; the page answers before anything is uploaded (PHP-FPM's
``fastcgi_finish_request()``), which is the response time printed (25-60 ms here).
It was once printed as 1,015 ms: that was the site's very first request, when
PHP-FPM compiles WordPress into its opcache (0.35-0.76 s here), made while the
stand-in's four Lambda worker processes were starting on the same two cores. Now
the first request is a REST call that sends nothing, printed apart as what it
is, and the page is requested before the workers start. Then the
uploads' S3 events go to the sender's handlers (every S3 notification app.py
declares: the batch to ``on_batch_uploaded``, the manifest to ``on_job_uploaded``;
the work items to ``on_work_item`` in worker processes), and the demo prints each
mail of the batch with its status and SES message id from its receipt, the job's
status and a few of its rendered mails. Then ``demo_schedule`` on the same site.
The site is stopped on the way out by closing the launcher's stdin.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from base64 import b64encode
from pathlib import Path
from typing import Any

import boto3

from standin import demo_schedule
from standin.aws import LocalAws, stop_by_stdin
from standin.job_run import JobRun, per_address, run_uploaded
from standin.lambda_runtime import LocalDispatcher, LocalSesEvents, app_routes

ROOT = Path(__file__).resolve().parent.parent
LAUNCHER = ROOT / "standin" / "wordpress-site.php"
BUCKET = "postbag-demo-site"
MAILS = 3
JOB_RECIPIENTS = 1000
JOB_CONCURRENCY = 4
MAILS_SHOWN = 2
# Starting MariaDB, installing WordPress, making the subscribers; then the uploads.
START_TIMEOUT_S, UPLOAD_TIMEOUT_S = 180.0, 60.0


class Site:
    """The launcher's process and what it printed; stopped by closing its stdin."""

    def __init__(self, endpoint: str, log: Path):
        env = {**os.environ, "POSTBAG_DEMO_ENDPOINT": endpoint, "POSTBAG_DEMO_BUCKET": BUCKET}
        log.parent.mkdir(parents=True, exist_ok=True)
        self._log = log.open("w")
        self.process = subprocess.Popen(
            ["php", str(LAUNCHER), f"--users={JOB_RECIPIENTS}"], cwd=ROOT, env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # the launcher prints once the site answers
        if not line:
            self.stop()
            raise RuntimeError(f"WordPress did not start: see {log}")
        self.info: dict[str, Any] = json.loads(line)

    def get(self, query: str, page: str = "") -> tuple[Any, float]:
        """A page's JSON answer (``demo-send.php`` unless named) and how long it took
        (seconds), as a browser would wait."""
        return self._call(f"{page or self.info['page']}?{query}")

    def rest(self, route: str, method: str = "GET") -> tuple[Any, float]:
        """The site's REST API (``postbag/v1/...``) as its administrator, authenticated by
        an application password as a script would be."""
        login, password = self.info["admin"]
        token = b64encode(f"{login}:{password}".encode()).decode()
        return self._call(f"{self.info['rest']}?rest_route=/{route}", method,
                          {"Authorization": f"Basic {token}"})

    def _call(self, path: str, method: str = "GET",
              headers: dict[str, str] | None = None) -> tuple[Any, float]:
        request = urllib.request.Request(f"{self.info['url']}{path}", method=method,
                                         headers={"Host": "blog.example.org", **(headers or {})})
        started = time.perf_counter()
        with urllib.request.urlopen(request, timeout=60) as answer:
            body = answer.read()
        return json.loads(body), time.perf_counter() - started

    def stop(self) -> None:
        """Close the launcher's stdin: its shutdown functions stop MariaDB, PHP-FPM and
        nginx by PID."""
        stop_by_stdin(self.process)
        self._log.close()


def _wait_for(s3: Any, key: str) -> None:
    deadline = time.time() + UPLOAD_TIMEOUT_S
    while time.time() < deadline:
        if s3.list_objects_v2(Bucket=BUCKET, Prefix=key).get("KeyCount"):
            return
        time.sleep(0.2)
    raise RuntimeError(f"the site never uploaded {key}")


def _batch_table(s3: Any, dispatcher: LocalDispatcher) -> bool:
    """The site's batch sent; each mail with its status and SES message id. True when all
    went out."""
    dispatcher.run()
    rows = []
    for obj in s3.list_objects_v2(Bucket=BUCKET, Prefix="receipts/").get("Contents", []):
        receipt = json.loads(s3.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read())
        batch = json.loads(s3.get_object(Bucket=BUCKET, Key=receipt["batch"])["Body"].read())
        mails = {mail["id"]: mail for mail in batch["emails"]}
        for outcome in receipt["mails"]:
            mail = mails[outcome["mail_id"]]
            to = ", ".join(m for m in mail["to"] if "asynchronous.mail" not in m)
            rows.append((to, mail["subject"], outcome["status"],
                         outcome.get("message_id") or outcome.get("reason", "")))
    print(f"\n{'recipient':<24} {'subject':<36} {'status':<8} SES message id")
    for to, subject, status, message_id in rows:
        print(f"{to[:23]:<24} {subject[:35]:<36} {status:<8} {message_id}")
    return len(rows) == MAILS and all(row[2] == "sent" for row in rows)


def _job_report(run: JobRun) -> bool:
    status = run.status or {}
    # The job's own mails: the site's batch may have gone out meanwhile (S3 delivers both).
    mails = [mail for mail in run.mails if ", a new post: " in mail["subject"]]
    print(f"\njob {run.job_id}: {status.get('state')}, {status.get('sent')} sent, "
          f"{status.get('failed')} failed of {status.get('recipients')}, "
          f"{run.finished - run.started:.1f} s from its manifest to an empty queue")
    for mail in mails[:MAILS_SHOWN]:
        text = "\n".join("    " + line for line in mail["text"].splitlines()[:3])
        print(f"\nTo: {', '.join(mail['destination'])}\nSubject: {mail['subject']}\n{text}")
    counts = per_address(mails)
    once = len(counts) == JOB_RECIPIENTS and set(counts.values()) == {1}
    print(f"\ncheck: {JOB_RECIPIENTS:,} subscribers, {len(mails):,} mails, "
          f"{'each once' if once else 'NOT each once'}")
    return once and status.get("state") == "done"


def run(aws: LocalAws, s3: Any, app: Any, events: LocalSesEvents,
        _: LocalDispatcher | None = None) -> bool:
    """The request through WordPress and everything it sent, then ``demo_schedule`` on the
    same site; True when all of it went as it should."""
    if shutil.which("php") is None:
        print("\nWordPress: skipped, no php here (`make demo` installs it when run as root: "
              "sudo make php-deps)")
        return False
    print(f"\nWordPress (PHP-FPM, nginx, MariaDB): one request sends {MAILS} mails and a "
          f"notify job to {JOB_RECIPIENTS:,} subscribers")
    s3.create_bucket(Bucket=BUCKET)
    site = Site(aws.endpoint, ROOT / "outbox" / "wordpress-site.log")
    dispatcher = LocalDispatcher(s3, BUCKET, app_routes(app))  # the site's bucket's
    try:
        # The site's first request compiles WordPress into PHP-FPM's opcache (~0.5 s here),
        # which a running site did long ago: a REST call that sends nothing, timed apart.
        _, cold = site.rest("postbag/v1/scheduled")
        print(f"the site's first request (a REST call; PHP-FPM compiles WordPress into its "
              f"opcache): {cold * 1000:.0f} ms")
        # Before the stand-in's Lambda workers start: their start-up (four Pythons importing
        # boto3 and the app) on the same cores is the demo's cost, not the site's.
        page, seconds = site.get(f"mails={MAILS}&role={site.info['role']}")
        print(f"the page answered in {seconds * 1000:.0f} ms: {json.dumps(page)}")
        if not page.get("job"):
            raise RuntimeError(f"the page queued no job: {page}")

        def uploaded() -> tuple[str, int]:
            _wait_for(s3, f"jobs/{page['job']}/manifest.json")  # uploaded after the answer
            return page["job"], JOB_RECIPIENTS

        job = run_uploaded(aws.endpoint, s3, boto3.client("sqs"), app, uploaded,
                           dict(os.environ), JOB_CONCURRENCY, events, BUCKET, timeout_s=300,
                           dispatcher=dispatcher)
        _wait_for(s3, "queue/")
        batch_ok = _batch_table(s3, dispatcher) and page.get("mails") == MAILS
        sent_ok = _job_report(job) and batch_ok
        return demo_schedule.run(aws, s3, app, events, dispatcher, site, BUCKET) and sent_ok
    finally:
        site.stop()
