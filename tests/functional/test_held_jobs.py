"""Held notify jobs and send windows: the splitter holds, the drainer releases (or paces a
window chunk by chunk), the job's status says ``scheduled`` and whether its window fits.

S3, SQS and DynamoDB are moto; the clock is a ``FakeClock`` (minutes pass at once).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import boto3
import pytest
from functional.test_split import BUCKET, QUEUE, SETTINGS, TABLE, received, upload_job
from moto import mock_aws
from support.clock import FakeClock

from chalicelib.config import Settings
from chalicelib.control import Control
from chalicelib.control_result import result_key
from chalicelib.drain import Drainer
from chalicelib.hold import JOB, HoldBook, State
from chalicelib.ledger import create_table
from chalicelib.outcome import Recorder
from chalicelib.progress import JobProgress, cancel_key, status_key
from chalicelib.retry import RetryPolicy
from chalicelib.split import Splitter
from chalicelib.store import BatchStore
from chalicelib.workqueue import WorkQueue

START = datetime(2026, 12, 1, 7, 0, tzinfo=UTC).timestamp()
MINUTE = 60.0


class Jobs:
    def __init__(self, rate: float = 14.0, quota_left: float | None = None,
                 settings: Settings = SETTINGS):
        self.s3 = boto3.client("s3", region_name="us-east-1")
        self.s3.create_bucket(Bucket=BUCKET)
        self.sqs = boto3.client("sqs", region_name="us-east-1")
        url = self.sqs.create_queue(QueueName=QUEUE)["QueueUrl"]
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        create_table(dynamodb, TABLE)
        self.clock = FakeClock(START)
        self.book = HoldBook(dynamodb, TABLE, settings.idempotency_namespace, self.s3, BUCKET,
                             self.clock)
        self.progress = JobProgress(dynamodb, TABLE, settings.idempotency_namespace, self.s3,
                                    clock=self.clock)
        self.splitter = Splitter(
            BatchStore(self.s3), WorkQueue(self.sqs, url, retry=RetryPolicy(attempts=1)),
            self.progress, Recorder(self.s3), settings, hold=self.book,
            capacity=lambda: (rate, quota_left), clock=self.clock)
        self.aws = (self.s3, self.sqs, url, dynamodb)

    def control(self) -> Control:
        return Control(self.book, BatchStore(self.s3), Recorder(self.s3), SETTINGS,
                       rescheduled=self.splitter.rescheduled, job_cancelled=self.splitter.cancelled)

    def drain(self):
        return Drainer(self.book, {JOB: self.splitter.release}).run()

    def status(self, job_id: str = "job-1") -> dict:
        body = self.s3.get_object(Bucket=BUCKET, Key=status_key(job_id))["Body"].read()
        return json.loads(body)

    def queued_rows(self) -> int:
        return sum(item.end - item.start for item in received(self.aws))


@pytest.fixture
def moto():
    with mock_aws():
        yield


@pytest.fixture
def jobs(moto):
    return Jobs()


def test_a_held_job_says_scheduled_and_is_split_when_due(jobs):
    key = upload_job(jobs.s3, [10, 5], send_at="2026-12-01T09:00:00+01:00")
    assert jobs.splitter.split(BUCKET, key) == 0
    assert received(jobs.aws) == []
    status = jobs.status()
    assert (status["state"], status["send_at"], status["send_between"]) == (
        "scheduled", "2026-12-01T08:00:00Z", None)
    jobs.clock.now = START + 59 * MINUTE
    jobs.drain()
    assert received(jobs.aws) == []
    jobs.clock.now = START + 60 * MINUTE
    assert jobs.drain().released == ["job/job-1"]
    assert jobs.queued_rows() == 15
    assert jobs.status()["state"] == "queued"
    assert jobs.splitter.split(BUCKET, key) == 0, "a replayed upload event enqueues nothing"
    jobs.drain()
    assert received(jobs.aws) == []


def test_a_held_job_cancelled_is_counted_cancelled_at_once_and_never_queued(jobs):
    key = upload_job(jobs.s3, [10], send_at="2026-12-01T08:00:00Z")
    jobs.splitter.split(BUCKET, key)
    jobs.s3.put_object(Bucket=BUCKET, Key=cancel_key("job-1"), Body=b"")
    assert jobs.control().apply(BUCKET, cancel_key("job-1")) == "cancelled"
    status = jobs.status()
    assert (status["state"], status["cancelled"]) == ("cancelled", 10)
    assert jobs.control().apply(BUCKET, cancel_key("job-1")) == "cancelled", "a replay: as it was"
    jobs.clock.now = START + 60 * MINUTE
    jobs.drain()
    assert received(jobs.aws) == []
    assert jobs.splitter.split(BUCKET, key) == 0, "a replayed upload event queues nothing"
    assert received(jobs.aws) == []


def test_a_held_job_whose_cancel_event_was_lost_is_cancelled_when_due(jobs):
    key = upload_job(jobs.s3, [10], send_at="2026-12-01T08:00:00Z")
    jobs.splitter.split(BUCKET, key)
    jobs.s3.put_object(Bucket=BUCKET, Key=cancel_key("job-1"), Body=b"")
    jobs.clock.now = START + 60 * MINUTE
    assert jobs.drain().released == ["job/job-1"]
    assert received(jobs.aws) == []
    status = jobs.status()
    assert (status["state"], status["cancelled"]) == ("cancelled", 10)


def test_a_rescheduled_job_shows_its_new_time_and_goes_then(jobs):
    key = upload_job(jobs.s3, [10], send_at="2026-12-01T08:00:00Z")
    jobs.splitter.split(BUCKET, key)
    request = "jobs/job-1/schedule.json"
    jobs.s3.put_object(Bucket=BUCKET, Key=request, Body=json.dumps({
        "version": 1, "send_at": "2026-12-01T10:00:00+01:00", "send_between": None,
        "requested_at": "2026-12-01T07:00:00Z"}).encode())
    assert jobs.control().apply(BUCKET, request) == "rescheduled"
    assert jobs.status()["send_at"] == "2026-12-01T09:00:00Z"
    jobs.clock.now = START + 60 * MINUTE
    jobs.drain()
    assert received(jobs.aws) == []
    jobs.clock.now = START + 120 * MINUTE
    jobs.drain()
    assert jobs.queued_rows() == 10


def _window_minutes(jobs: Jobs, minutes: int, recipients: list[int]) -> list[int]:
    """Upload a job windowed over ``minutes`` from 08:00; run the drainer each minute from
    07:59 to the end and a minute more; the rows enqueued at each run."""
    key = upload_job(jobs.s3, recipients, send_between={
        "start": "2026-12-01T08:00:00Z",
        "end": datetime.fromtimestamp(START + (60 + minutes) * MINUTE, UTC).isoformat()})
    jobs.splitter.split(BUCKET, key)
    per_run = []
    for minute in range(59, 60 + minutes + 2):
        jobs.clock.now = START + minute * MINUTE
        jobs.drain()
        per_run.append(jobs.queued_rows())
    return per_run


def test_a_window_that_fits_spreads_the_job_evenly_and_ends_in_time(jobs):
    per_run = _window_minutes(jobs, 10, [600, 400])
    assert per_run[0] == 0, "nothing before the window"
    inside = per_run[1:11]
    assert sum(per_run) == 1000 and per_run[-1] == 0, "every row once, all before the end"
    assert max(inside) - min(inside) <= 100, inside  # 100 a minute, one chunk each
    window = jobs.status()["window"]
    assert window["fits"] is True and window["needed_rate"] == pytest.approx(1000 / 600, 0.01)
    assert jobs.book.get(JOB, "job-1").state.value == "released"


def test_a_window_too_short_for_the_rate_says_so_and_sends_as_fast_as_allowed(moto):
    jobs = Jobs(rate=1.0)  # 1 mail a second: 1,000 mails need 1,000 s, the window has 600
    per_run = _window_minutes(jobs, 10, [1000])
    assert per_run[1] == 1000, "everything on the queue at once, the limiter paces it"
    window = jobs.status()["window"]
    assert (window["fits"], window["available_rate"]) == (False, 1.0)
    assert window["needed_rate"] == pytest.approx(1000 / 600, 0.01)


def test_a_window_beyond_the_quota_left_says_so(moto):
    jobs = Jobs(rate=100.0, quota_left=500.0)
    key = upload_job(jobs.s3, [1000], send_between={"start": "2026-12-01T08:00:00Z",
                                                    "end": "2026-12-01T09:00:00Z"})
    jobs.splitter.split(BUCKET, key)
    status = jobs.status()
    assert status["state"] == "scheduled"
    assert status["window"]["fits"] is False, "told at upload, before the window opens"
    assert status["send_between"] == {"start": "2026-12-01T08:00:00Z",
                                      "end": "2026-12-01T09:00:00Z"}


def test_a_window_cancelled_under_way_queues_the_rest_for_the_fanout_to_count_cancelled(jobs):
    key = upload_job(jobs.s3, [1000], send_between={"start": "2026-12-01T08:00:00Z",
                                                    "end": "2026-12-01T08:10:00Z"})
    jobs.splitter.split(BUCKET, key)
    for minute in (60, 61, 62):
        jobs.clock.now = START + minute * MINUTE
        jobs.drain()
    assert jobs.queued_rows() == 300, "three minutes' share"
    jobs.s3.put_object(Bucket=BUCKET, Key=cancel_key("job-1"), Body=b"")
    jobs.clock.now = START + 63 * MINUTE
    assert jobs.drain().released == ["job/job-1"]
    items = received(jobs.aws)
    assert sum(item.end - item.start for item in items) == 700, \
        "the rest at once: the fan-out finds the cancel and counts them"
    assert jobs.book.get(JOB, "job-1").state.value == "released"


def test_a_replayed_upload_event_during_a_window_queues_nothing_the_drainer_paces_on(jobs):
    key = upload_job(jobs.s3, [1000], send_between={"start": "2026-12-01T08:00:00Z",
                                                    "end": "2026-12-01T08:10:00Z"})
    jobs.splitter.split(BUCKET, key)
    jobs.clock.now = START + 60 * MINUTE
    jobs.drain()
    items = received(jobs.aws)  # taken off the queue
    assert sum(item.end - item.start for item in items) == 100
    assert jobs.splitter.split(BUCKET, key) == 0, "the plugin re-PUT the manifest"
    assert received(jobs.aws) == [], "the rest not sent at once"
    per_run = []
    for minute in range(61, 72):
        jobs.clock.now = START + minute * MINUTE
        jobs.drain()
        more = received(jobs.aws)
        items += more
        per_run.append(sum(item.end - item.start for item in more))
    assert per_run[:9] == [100] * 9 and sum(per_run) == 900, per_run
    rows = sorted((item.part, item.start, item.end) for item in items)
    assert all(a[2] <= b[1] for a, b in zip(rows, rows[1:], strict=False)), "no row twice"
    jobs.clock.now = START + 72 * MINUTE
    assert jobs.splitter.split(BUCKET, key) == 0, "replayed after the release: nothing"


def test_a_released_job_keeps_its_send_at_in_its_status(jobs):
    key = upload_job(jobs.s3, [10], send_at="2026-12-01T08:00:00Z")
    jobs.splitter.split(BUCKET, key)
    jobs.clock.now = START + 60 * MINUTE
    jobs.drain()
    status = jobs.status()
    assert (status["state"], status["send_at"], status["send_between"]) == (
        "queued", "2026-12-01T08:00:00Z", None)


def test_a_held_job_whose_manifest_is_gone_when_due_is_given_up_not_released(jobs):
    key = upload_job(jobs.s3, [10], send_at="2026-12-01T08:00:00Z")
    jobs.splitter.split(BUCKET, key)
    jobs.s3.delete_object(Bucket=BUCKET, Key=key)
    jobs.clock.now = START + 60 * MINUTE
    report = jobs.drain()
    assert (report.released, report.failed) == ([], ["job/job-1"])
    assert jobs.book.get(JOB, "job-1").state is State.FAILED
    assert received(jobs.aws) == []


def _result(jobs: Jobs) -> dict:
    return json.loads(jobs.s3.get_object(Bucket=BUCKET, Key=result_key(JOB, "job-1"))
                      ["Body"].read())


def test_a_job_reschedule_before_its_upload_event_is_applied_when_it_comes(jobs):
    key = upload_job(jobs.s3, [10], send_at="2026-12-01T08:00:00Z")
    request = "jobs/job-1/schedule.json"
    jobs.s3.put_object(Bucket=BUCKET, Key=request, Body=json.dumps({
        "version": 1, "send_at": None, "send_between": {
            "start": "2026-12-01T09:00:00Z", "end": "2026-12-01T09:10:00Z"},
        "requested_at": "2026-12-01T07:00:00.500Z"}).encode())
    assert jobs.control().apply(BUCKET, request) == "pending"
    assert jobs.splitter.split(BUCKET, key) == 0
    assert (_result(jobs)["outcome"], _result(jobs)["send_at"]) == (
        "rescheduled", "2026-12-01T09:00:00Z")
    assert jobs.status()["send_between"]["start"] == "2026-12-01T09:00:00Z"
    jobs.clock.now = START + 60 * MINUTE
    jobs.drain()
    assert received(jobs.aws) == [], "not at the manifest's 08:00"
    jobs.clock.now = START + 130 * MINUTE
    jobs.drain()
    assert jobs.queued_rows() == 10


def test_a_job_cancel_before_its_upload_event_is_told_when_it_comes(jobs):
    key = upload_job(jobs.s3, [10], send_at="2026-12-01T08:00:00Z")
    jobs.s3.put_object(Bucket=BUCKET, Key=cancel_key("job-1"), Body=json.dumps(
        {"requested_at": "2026-12-01T07:00:00.125Z"}).encode())
    assert jobs.control().apply(BUCKET, cancel_key("job-1")) == "pending"
    assert jobs.splitter.split(BUCKET, key) == 0
    assert (_result(jobs)["outcome"], _result(jobs)["requested_at"]) == (
        "cancelled", "2026-12-01T07:00:00.125Z")
    assert jobs.status()["state"] == "cancelled"
