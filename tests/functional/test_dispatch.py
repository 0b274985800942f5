"""The dispatch stage: each mail once, through ledger (moto), limiter and retries (fake SES)."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import threading
import time
import weakref
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
from moto import mock_aws
from support.clock import FakeClock, busiest_second
from support.fakes import FakeSes
from support.sending import (
    Calls,
    DynamoDown,
    Invocation,
    SerialClient,
    dispatcher,
    jobs,
    leased_tokens,
    mail_ids,
)

from chalicelib.config import Settings
from chalicelib.dispatch import DEADLINE_REASON, MAX_WORKERS, Dispatcher, Job, pool_size
from chalicelib.ledger import CLAIMED, Entry, Ledger, Result, create_table
from chalicelib.observe import SendMetrics, logger, metrics
from chalicelib.ratelimit import SharedRateLimiter
from chalicelib.retry import RetryPolicy

SETTINGS = Settings(idempotency_namespace="postbag-test")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def ledger():
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_table(client, SETTINGS.ledger_table)
        yield Ledger.from_settings(SETTINGS, client)


@pytest.fixture(autouse=True)
def reset_metric_set():
    # powertools' documented test set-up: metrics are shared by every Metrics instance.
    metrics.clear_metrics()
    yield
    metrics.clear_metrics()


def statuses(outcomes) -> Counter:
    return Counter(o.status for o in outcomes)


def run(dispatch: Dispatcher, job_list, clock: FakeClock, budget_s: float = 900.0,
        margin_ms: int = 15_000, queued_at=None):
    remaining = Invocation(clock, budget_s).get_remaining_time_in_millis
    return dispatch.run(job_list, remaining, margin_ms, queued_at)


def test_every_mail_sent_once_with_outcomes_in_job_order(ledger, clock):
    ses = FakeSes(clock=clock, sleep=clock.sleep, latency=0.05)
    ids = mail_ids(40)
    outcomes = run(dispatcher(ledger, clock, workers=8), jobs(ses, ids), clock)
    assert [o.mail_id for o in outcomes] == ids
    assert statuses(outcomes) == {"sent": 40}
    assert sorted(ses.subjects()) == ids
    by_subject = {a.subject: a.message_id for a in ses.accepted}
    assert all(o.message_id == by_subject[o.mail_id] for o in outcomes)


def test_a_replay_sends_nothing_and_returns_the_saved_message_ids(ledger, clock):
    ses = FakeSes(clock=clock, sleep=clock.sleep)
    ids = mail_ids(10)
    first = run(dispatcher(ledger, clock), jobs(ses, ids), clock)
    again = run(dispatcher(ledger, clock), jobs(ses, ids), clock)
    assert statuses(again) == {"duplicate": 10}
    assert [o.message_id for o in again] == [o.message_id for o in first]
    assert ses.calls == 10


def test_a_permanent_rejection_fails_alone_with_its_reason_and_is_never_resent(ledger, clock):
    ids = mail_ids(10)
    ses = FakeSes(clock=clock, sleep=clock.sleep, reject=[f"{ids[3]}@example.net"])
    outcomes = run(dispatcher(ledger, clock), jobs(ses, ids), clock)
    assert statuses(outcomes) == {"sent": 9, "failed": 1}
    assert outcomes[3].status == "failed"
    assert outcomes[3].reason.startswith("RejectedBySes: MessageRejected")
    ses.reject.clear()  # even once the cause is gone, the same key is not resent
    again = run(dispatcher(ledger, clock), jobs(ses, ids), clock)
    assert again[3].status == "failed" and again[3].reason == outcomes[3].reason
    assert ses.calls == 10


def test_throttling_on_30_percent_of_calls_still_delivers_each_mail_once(ledger, clock):
    ses = FakeSes(clock=clock, sleep=clock.sleep, throttle_share=0.3, seed=7)
    ids = mail_ids(100)
    outcomes = run(dispatcher(ledger, clock, workers=8, attempts=10), jobs(ses, ids), clock)
    assert statuses(outcomes) == {"sent": 100}
    assert ses.throttled > 15
    assert sorted(ses.subjects()) == ids  # each exactly once


def test_transient_trouble_beyond_the_attempts_releases_the_claim(ledger, clock):
    ses = FakeSes(clock=clock, sleep=clock.sleep, fail_after=3)
    ids = mail_ids(6)
    outcomes = run(dispatcher(ledger, clock, workers=1, attempts=3), jobs(ses, ids), clock)
    assert statuses(outcomes) == {"sent": 3, "retry_later": 3}
    assert all(o.reason.startswith("SesUnavailable") for o in outcomes[3:])
    ses.fail_after = None  # SES is back: the Lambda retry sends only what is missing
    again = run(dispatcher(ledger, clock), jobs(ses, ids), clock)
    assert statuses(again) == {"duplicate": 3, "sent": 3}
    assert sorted(ses.subjects()) == ids


def test_sending_paused_stops_the_batch_and_loses_nothing(ledger, clock):
    ses = FakeSes(clock=clock, sleep=clock.sleep, daily_quota=4)
    ids = mail_ids(10)
    outcomes = run(dispatcher(ledger, clock, workers=1), jobs(ses, ids), clock)
    assert statuses(outcomes) == {"sent": 4, "paused": 6}
    assert all("Daily message quota exceeded" in o.reason for o in outcomes[4:])
    assert ses.calls == 5  # the first refusal stopped the rest from being tried
    ses.daily_quota = None
    again = run(dispatcher(ledger, clock), jobs(ses, ids), clock)
    assert statuses(again) == {"duplicate": 4, "sent": 6}
    assert sorted(ses.subjects()) == ids


def test_near_the_deadline_it_stops_and_the_rest_goes_out_in_the_next_invocation(ledger, clock):
    ses = FakeSes(clock=clock, sleep=clock.sleep)
    ids = mail_ids(50)
    # 10 mails/s and 2 s of budget before the margin: about 20 go out now.
    first = run(dispatcher(ledger, clock, rate=10), jobs(ses, ids), clock,
                budget_s=17.0, margin_ms=15_000)
    counts = statuses(first)
    assert 15 <= counts["sent"] <= 21 and counts["sent"] + counts["handed_on"] == 50
    unsent = [o.mail_id for o in first if o.status == "handed_on"]
    assert all(o.reason == DEADLINE_REASON for o in first if o.status == "handed_on")
    sent_now = [o.mail_id for o in first if o.status == "sent"]
    assert sorted(sent_now + unsent) == ids  # workers race for slots: not always the tail
    second = run(dispatcher(ledger, clock, rate=10), jobs(ses, unsent), clock)
    assert statuses(second) == {"sent": len(unsent)}
    assert sorted(ses.subjects()) == ids


def test_a_mail_claimed_elsewhere_is_reported_in_progress(ledger, clock):
    ses = FakeSes(clock=clock, sleep=clock.sleep)
    other = Ledger.from_settings(SETTINGS, boto3.client("dynamodb", region_name="us-east-1"))
    assert other.claim(["b1:m0001:0"], 60_000) == [Entry(CLAIMED)]  # another invocation's
    outcomes = run(dispatcher(ledger, clock), jobs(ses, mail_ids(3)), clock)
    assert [o.status for o in outcomes] == ["sent", "in_progress", "sent"]
    assert ses.calls == 2
    other.complete("b1:m0001:0", Result(message_id="elsewhere"))
    other.flush()
    again = run(dispatcher(ledger, clock), jobs(ses, mail_ids(3)), clock)
    assert [o.message_id for o in again][1] == "elsewhere"


def test_sends_through_the_pool_stay_under_the_rate(ledger, clock):
    ses = FakeSes(clock=clock, sleep=clock.sleep)
    ids = mail_ids(84)
    run(dispatcher(ledger, clock, rate=14, workers=1), jobs(ses, ids), clock)
    times = ses.times()
    assert times[-1] - times[0] >= 5.0
    assert busiest_second(times) <= 14


def test_an_unexpected_error_propagates_and_stops_new_work(ledger, clock):
    ses = FakeSes(clock=clock, sleep=clock.sleep)
    good = jobs(ses, mail_ids(5))

    def bug() -> str:
        raise KeyError("a bug, not a send error")

    job_list = [good[0], Job("bug", "b1:bug:0", bug), *good[1:]]
    with pytest.raises(KeyError):
        run(dispatcher(ledger, clock, workers=1), job_list, clock)
    assert ses.subjects() == ["m0000"]
    # The failed job's claim was released, and so were those of the jobs claimed
    # with it but never started: a fixed retry can send them.
    keys = ["b1:bug:0", *(job.key for job in good[1:])]
    assert ledger.claim(keys, 60_000) == [Entry(CLAIMED)] * 5


def test_metrics_are_emitted_as_emf(ledger, clock, capsys):
    ids = mail_ids(6)
    ses = FakeSes(clock=clock, sleep=clock.sleep, reject=[f"{ids[0]}@example.net"],
                  throttle_share=0.5, seed=3)
    created = datetime(2026, 11, 22, 7, 0, tzinfo=UTC)
    dispatch = dispatcher(ledger, clock, workers=2, attempts=10, metrics=SendMetrics(),
                          now=lambda: created + timedelta(seconds=90))
    run(dispatch, jobs(ses, ids), clock, queued_at=created)
    run(dispatch, jobs(ses, ids[:2]), clock, queued_at=created)
    metrics.flush_metrics()
    emf = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert emf["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Postbag"
    assert emf["MailsSent"] == [5.0]
    assert emf["MailsFailed"] == [1.0]
    assert emf["DuplicatesSkipped"] == [2.0]
    assert emf["Throttled"] == [float(ses.throttled)]
    assert emf["QueueDelay"] == [90.0] * 5


def test_no_jobs_no_work(ledger, clock):
    assert run(dispatcher(ledger, clock), [], clock) == []


@pytest.mark.parametrize(
    ("rate", "workers"), [(1, 8), (14, 8), (100, 16), (500, 80), (1_000_000, MAX_WORKERS)]
)
def test_the_pool_grows_with_the_rate(rate, workers):
    assert pool_size(rate, minimum=8) == workers


def test_each_mail_is_logged_as_json_with_its_ids(ledger, clock, caplog):
    ids = mail_ids(2)
    ses = FakeSes(clock=clock, sleep=clock.sleep, reject=[f"{ids[1]}@example.net"])
    run(dispatcher(ledger, clock), jobs(ses, ids, batch_id="logged"), clock)
    # The JSON lines the Lambda prints, rendered by the logger's own formatter.
    lines = [json.loads(logger.registered_formatter.format(r)) for r in caplog.records]
    by_message = {(line["message"], line.get("mail_id")): line for line in lines}
    sent_line = by_message[("mail sent", ids[0])]
    assert sent_line["idempotency_key"] == f"logged:{ids[0]}:0"
    assert sent_line["message_id"] == ses.accepted[0].message_id
    assert sent_line["service"] == "postbag"
    assert "MessageRejected" in by_message[("mail failed for good", ids[1])]["reason"]


def ledger_statuses(ledger: Ledger) -> Counter:
    table = ledger._client.scan(TableName=ledger.table_name, ConsistentRead=True)
    return Counter(item["status"]["S"] for item in table["Items"])


def test_claims_are_taken_a_chunk_at_a_time_and_released_at_a_stop(ledger, clock):
    calls = Calls(ledger._client)
    ses = FakeSes(clock=clock, sleep=clock.sleep, daily_quota=30)
    outcomes = run(dispatcher(ledger, clock, workers=1), jobs(ses, mail_ids(200)), clock)
    assert statuses(outcomes) == {"sent": 30, "paused": 170}
    # Two chunks of 25 claimed, not 200; the 19 claimed and not sent were released.
    assert calls.names.count("TransactWriteItems") == 2
    assert ledger_statuses(ledger) == {"COMPLETED": 30}
    # 25 completions, then 5 + 20 releases at the end
    assert calls.names.count("BatchWriteItem") == 2


def test_at_the_deadline_no_claim_is_left_behind(ledger, clock):
    ses = FakeSes(clock=clock, sleep=clock.sleep)
    outcomes = run(dispatcher(ledger, clock, rate=10), jobs(ses, mail_ids(60)), clock,
                   budget_s=17.0, margin_ms=15_000)
    assert statuses(outcomes)["handed_on"] > 0
    assert ledger_statuses(ledger) == {"COMPLETED": statuses(outcomes)["sent"]}


def test_ledger_trouble_before_sending_sends_nothing_and_asks_for_a_retry(ledger, clock):
    down = Ledger.from_settings(SETTINGS, DynamoDown(ledger._client, {"transact_write_items"}))
    ses = FakeSes(clock=clock, sleep=clock.sleep)
    outcomes = run(dispatcher(down, clock), jobs(ses, mail_ids(30)), clock)
    assert statuses(outcomes) == {"retry_later": 30}
    assert all("LedgerUnavailable" in o.reason for o in outcomes)
    assert ses.calls == 0


def test_completions_lost_after_sending_keep_the_message_ids_and_the_claims(ledger, clock):
    # Its writes are retried until the deadline margin: 15 s of simulated time here.
    lossy = Ledger.from_settings(SETTINGS, DynamoDown(ledger._client, {"batch_write_item"}),
                                 retry=RetryPolicy(sleep=clock.sleep))
    ses = FakeSes(clock=clock, sleep=clock.sleep)
    ids = mail_ids(5)
    outcomes = run(dispatcher(lossy, clock), jobs(ses, ids), clock, budget_s=30.0)
    assert statuses(outcomes) == {"sent": 5}
    # Sends run concurrently: the ids match, in no fixed order.
    assert sorted(o.message_id for o in outcomes) == sorted(a.message_id for a in ses.accepted)
    again = run(dispatcher(ledger, clock), jobs(ses, ids), clock)  # not resent meanwhile
    assert statuses(again) == {"in_progress": 5}
    assert ses.calls == 5


class BuggyLedger(Ledger):
    """A ledger whose third completion raises a bug (not a DynamoDB error)."""

    completions = 0

    def complete(self, key, result):
        self.completions += 1
        if self.completions == 3:
            raise KeyError("a bug while completing")
        super().complete(key, result)


def test_trouble_on_the_invoking_thread_stops_the_workers_and_settles_what_they_did(ledger,
                                                                                      clock):
    buggy = BuggyLedger.from_settings(SETTINGS, ledger._client)
    ses = FakeSes(clock=clock, sleep=clock.sleep, latency=0.01)
    with pytest.raises(KeyError):
        run(dispatcher(buggy, clock, workers=4), jobs(ses, mail_ids(60)), clock)
    statuses_now = ledger_statuses(ledger)
    # Every mail SES took is recorded, but the one whose completion raised (its claim
    # stays, for SES's evidence); no other claim is left behind.
    assert statuses_now == {"COMPLETED": len(ses.accepted) - 1, "INPROGRESS": 1}
    assert len(ses.accepted) < 60  # the workers stopped


# --- the send pool, kept for the instance's life ----------------------------------------


def sent_on(thread_ids: set[int], job_list: list[Job]) -> list[Job]:
    """``job_list`` whose sends note the thread each ran on."""

    def noted(send):
        def run_send() -> str:
            thread_ids.add(threading.get_native_id())  # never reused soon, unlike idents
            return send()
        return run_send

    return [Job(job.mail_id, job.key, noted(job.send)) for job in job_list]


def test_a_warm_instance_sends_its_next_runs_on_the_threads_of_the_first(ledger, clock):
    ses = FakeSes(clock=clock, sleep=clock.sleep, latency=0.05)
    dispatch = dispatcher(ledger, clock, workers=4)
    first: set[int] = set()
    assert statuses(run(dispatch, sent_on(first, jobs(ses, mail_ids(40))), clock)) == {
        "sent": 40}
    later: set[int] = set()
    for batch in ("b2", "b3"):
        outcomes = run(dispatch, sent_on(later, jobs(ses, mail_ids(40), batch)), clock)
        assert statuses(outcomes) == {"sent": 40}
    # The same four workers sent all three runs (a thread per run would show new ids),
    # and wait for the next.
    assert len(first | later) <= 4
    assert first | later <= {thread.native_id for thread in threading.enumerate()}
    assert ses.calls == 120


class Killed(BaseException):
    """The process going down in the middle of a send."""


def test_a_send_killed_mid_way_keeps_its_claim_and_the_pool_serves_the_next_run(ledger,
                                                                                 clock):
    ses = FakeSes(clock=clock, sleep=clock.sleep)
    good = jobs(ses, mail_ids(5))

    def killed() -> str:
        raise Killed

    dispatch = dispatcher(ledger, clock, workers=2)
    with pytest.raises(Killed):
        run(dispatch, [*good[:2], Job("killed", "b1:killed:0", killed), *good[2:]], clock)
    # The killed send's claim stays (SES may have the mail); the others are settled.
    assert ledger.claim(["b1:killed:0"], 60_000)[0].state == "in_progress"
    outcomes = run(dispatch, jobs(ses, mail_ids(30), "b2"), clock)
    assert statuses(outcomes) == {"sent": 30}
    assert sorted(ses.subjects()).count("m0000") == 2  # once in b1 (before the kill), once in b2


def test_a_hung_send_holds_its_run_until_it_returns_and_leaves_nothing_behind(ledger,
                                                                              clock):
    ses = FakeSes(clock=clock, sleep=clock.sleep)
    release = threading.Event()
    hung_started = threading.Event()

    def hung() -> str:
        hung_started.set()
        release.wait(timeout=30)
        return "hung-then-answered"

    dispatch = dispatcher(ledger, clock, workers=2)
    done: list = []
    job_list = [*jobs(ses, mail_ids(10)), Job("hung", "b1:hung:0", hung)]
    runner = threading.Thread(target=lambda: done.append(run(dispatch, job_list, clock)))
    runner.start()
    assert hung_started.wait(timeout=10)
    runner.join(timeout=0.5)
    assert runner.is_alive() and not done  # a run ends with none of its jobs in a worker
    release.set()
    runner.join(timeout=10)
    assert statuses(done[0]) == {"sent": 11}
    assert done[0][-1].message_id == "hung-then-answered"
    # The next run on the same pool gets both workers, its jobs only.
    assert statuses(run(dispatch, jobs(ses, mail_ids(10), "b2"), clock)) == {"sent": 10}


def test_runs_at_once_share_the_pool_and_send_each_mail_once(ledger, clock):
    serial = Ledger.from_settings(SETTINGS, SerialClient(ledger._client))
    ses = FakeSes(clock=clock, sleep=clock.sleep, latency=0.01)
    dispatch = dispatcher(serial, clock, workers=3)
    thread_ids: set[int] = set()
    results: dict[str, list] = {}

    def one(batch: str) -> None:
        results[batch] = run(dispatch, sent_on(thread_ids, jobs(ses, mail_ids(50), batch)),
                             clock)

    runners = [threading.Thread(target=one, args=(batch,)) for batch in ("b1", "b2")]
    for runner in runners:
        runner.start()
    for runner in runners:
        runner.join(timeout=60)
    assert [statuses(results[b]) for b in ("b1", "b2")] == [{"sent": 50}] * 2
    assert ses.calls == 100 and len(thread_ids) <= 3


def test_a_process_whose_pool_idles_still_exits():
    """The workers wait for tasks as daemons: an instance (or a test run) ends without
    closing its dispatcher."""
    script = (
        "import boto3, sys\n"
        "from moto import mock_aws\n"
        "sys.path[:0] = ['chalice_app', 'tests']\n"
        "from support.clock import FakeClock\n"
        "from support.fakes import FakeSes\n"
        "from support.sending import Invocation, dispatcher, jobs, mail_ids\n"
        "from chalicelib.ledger import Ledger, create_table\n"
        "from chalicelib.config import Settings\n"
        "with mock_aws():\n"
        "    settings = Settings(idempotency_namespace='postbag-test')\n"
        "    client = boto3.client('dynamodb', region_name='us-east-1')\n"
        "    create_table(client, settings.ledger_table)\n"
        "    clock = FakeClock()\n"
        "    dispatch = dispatcher(Ledger.from_settings(settings, client), clock, workers=4)\n"
        "    outcomes = dispatch.run(jobs(FakeSes(clock=clock, sleep=clock.sleep),\n"
        "                                 mail_ids(8)),\n"
        "                            Invocation(clock).get_remaining_time_in_millis, 15_000)\n"
        "    print(sorted({o.status.value for o in outcomes}))\n"
    )
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1"}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    # (the log's JSON lines come first on stdout)
    assert (done.returncode, done.stdout.splitlines()[-1]) == (0, "['sent']"), done.stderr


def test_a_dropped_dispatcher_ends_its_workers(ledger, clock):
    workers: set[int] = set()
    dispatch = dispatcher(ledger, clock, workers=4)
    ses = FakeSes(clock=clock, sleep=clock.sleep, latency=0.05)
    assert statuses(run(dispatch, sent_on(workers, jobs(ses, mail_ids(20))), clock)) == {
        "sent": 20}

    def alive() -> set[int]:
        return workers & {thread.native_id for thread in threading.enumerate()}

    assert alive() == workers  # kept between runs
    del dispatch
    gc.collect()
    for _ in range(100):  # each worker ends at its next task, the end sentinel
        if not alive():
            break
        time.sleep(0.05)
    assert not alive()


def test_a_finished_run_is_freed_without_the_garbage_collector(ledger, clock):
    """A run that referred to itself was a cycle: its jobs and outcomes stayed until a full
    collection, which in a busy instance stopped every send thread (heap.py)."""
    ses = FakeSes(clock=clock, sleep=clock.sleep)
    dispatch = dispatcher(ledger, clock, workers=4)
    job_list = jobs(ses, mail_ids(10))
    first = weakref.ref(job_list[0])
    gc.disable()
    try:
        assert statuses(run(dispatch, job_list, clock)) == {"sent": 10}
        del job_list
        # A worker drops its task (which refers to the jobs) just after handing back its
        # result: give it a moment.
        deadline = time.monotonic() + 5
        while first() is not None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert first() is None
    finally:
        gc.enable()


def test_a_run_leases_no_more_shared_tokens_than_it_sends(ledger, clock):
    """The shared limiter told how many sends each run still has: 7 mails, leases of 25,
    7 tokens of the account's second taken, so the others are left to other instances."""
    client = ledger._client
    shared = SharedRateLimiter(client, SETTINGS.ledger_table, SETTINGS.idempotency_namespace,
                               100, 1.0, clock=clock, sleep=clock.sleep, lease=25)
    dispatch = Dispatcher(ledger, shared, RetryPolicy(sleep=clock.sleep), workers=4, clock=clock,
                          sleep=clock.sleep)
    ses = FakeSes(clock=clock, sleep=clock.sleep)
    assert statuses(run(dispatch, jobs(ses, mail_ids(7)), clock)) == {"sent": 7}
    assert leased_tokens(client, SETTINGS.ledger_table) == 7
