"""A notify job's progress: counters in the ledger's table, status.json in the bucket (moto)."""

from __future__ import annotations

import dataclasses
import json

import boto3
import pytest
from conftest import fixture_bytes
from moto import mock_aws
from support.bad_jobs import JOB_ID, MANIFEST_KEY
from support.clock import FakeClock

from chalicelib.formats.v2 import parse_manifest
from chalicelib.ledger import create_table
from chalicelib.progress import JobProgress, cancel_key, status_key

BUCKET, TABLE = "postbag-test", "postbag-ledger"
START = 1_795_000_000.0  # 2026-11-18T11:06:40Z


@pytest.fixture
def aws():
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        create_table(dynamodb, TABLE)
        yield s3, dynamodb


@pytest.fixture
def job(settings):
    return parse_manifest(fixture_bytes("jobs/new-post/" + MANIFEST_KEY), MANIFEST_KEY, settings)


@pytest.fixture
def clock():
    return FakeClock(START)


def _progress(aws, clock):
    s3, dynamodb = aws
    return JobProgress(dynamodb, TABLE, "postbag-test", s3, clock=clock)


def record(aws, progress, job_id, counts, chunks_done=1):
    """A chunk's counts added (as the tally's transaction adds them) and published."""
    aws[1].transact_write_items(TransactItems=[progress.counting(job_id, counts, chunks_done)])
    return progress.publish(BUCKET, job_id)


def _published(s3, job_id=JOB_ID):
    return json.loads(s3.get_object(Bucket=BUCKET, Key=status_key(job_id))["Body"].read())


def test_begin_counts_the_job_and_publishes_it_queued(aws, job, clock):
    progress = _progress(aws, clock)
    assert progress.begin(BUCKET, job, chunks=2) == 0
    published = _published(aws[0])
    assert published == {
        "job_id": JOB_ID, "state": "queued", "recipients": 5, "sent": 0, "duplicate": 0,
        "failed": 0, "suppressed": 0, "cancelled": 0, "remaining": 5, "rate": 0.0,
        "started_at": "2026-11-18T11:06:40Z", "updated_at": "2026-11-18T11:06:40Z",
        "estimated_end": None,
    }
    item = aws[1].get_item(TableName=TABLE, Key={"id": {"S": f"postbag-test#job#{JOB_ID}"}})
    assert item["Item"]["expiration"]["N"] == str(int(START) + 30 * 24 * 3600), "TTL'd"


def test_a_replayed_begin_says_how_many_chunks_are_enqueued(aws, job, clock):
    progress = _progress(aws, clock)
    progress.begin(BUCKET, job, chunks=30)
    progress.enqueued(JOB_ID, 10)
    progress.enqueued(JOB_ID, 20)
    progress.enqueued(JOB_ID, 20)  # a retry of a write whose answer was lost
    progress.enqueued(JOB_ID, 10)  # a late retry of the first
    clock.sleep(60)
    again = _progress(aws, clock)  # another instance
    assert again.begin(BUCKET, job, chunks=30) == 20
    assert _published(aws[0])["started_at"] == "2026-11-18T11:06:40Z", "started once"


def test_chunks_add_up_to_done(aws, job, clock):
    progress = _progress(aws, clock)
    progress.begin(BUCKET, job, chunks=2)
    clock.sleep(10)
    first = record(aws, progress, JOB_ID, {"sent": 2, "failed": 1})
    assert first["state"] == "sending"
    assert (first["sent"], first["failed"], first["remaining"]) == (2, 1, 2)
    assert first["rate"] == 0.3
    assert first["estimated_end"] == "2026-11-18T11:06:56Z", "2 left at 0.3/s: 6.7 s on"
    assert "finished_at" not in first
    assert _published(aws[0]) == first
    clock.sleep(10)
    done = record(aws, progress, JOB_ID, {"duplicate": 1, "suppressed": 1, "sent": 0})
    assert done["state"] == "done"
    assert (done["duplicate"], done["suppressed"], done["remaining"]) == (1, 1, 0)
    assert done["finished_at"] == "2026-11-18T11:07:00Z"
    assert done["estimated_end"] is None


def test_the_first_chunk_to_finish_the_job_dates_it(aws, job, clock):
    progress = _progress(aws, clock)
    progress.begin(BUCKET, job, chunks=1)
    clock.sleep(5)
    assert record(aws, progress, JOB_ID, {"sent": 5})["finished_at"] == "2026-11-18T11:06:45Z"
    clock.sleep(100)
    # Counts after the job finished (a re-drive's): finished when it was.
    replay = record(aws, progress, JOB_ID, {"duplicate": 5})
    assert replay["finished_at"] == "2026-11-18T11:06:45Z"
    assert replay["remaining"] == 0 and replay["state"] == "done"


def test_part_of_a_chunk_counts_without_finishing_it(aws, job, clock):
    progress = _progress(aws, clock)
    progress.begin(BUCKET, job, chunks=1)
    assert record(aws, progress, JOB_ID, {"sent": 3}, chunks_done=0)["state"] == "sending"
    assert record(aws, progress, JOB_ID, {"sent": 2})["state"] == "done"


def test_a_cancelled_job_ends_cancelled(aws, job, clock):
    progress = _progress(aws, clock)
    progress.begin(BUCKET, job, chunks=2)
    record(aws, progress, JOB_ID, {"sent": 3})
    last = record(aws, progress, JOB_ID, {"cancelled": 2})
    assert (last["state"], last["cancelled"], last["remaining"]) == ("cancelled", 2, 0)
    assert "finished_at" in last


def test_a_job_cancelled_before_its_split_is_all_cancelled(aws, job, clock):
    progress = _progress(aws, clock)
    assert progress.begin(BUCKET, job, chunks=2, cancelled=True) == 0
    published = _published(aws[0])
    assert (published["state"], published["cancelled"], published["remaining"]) == (
        "cancelled", 5, 0)
    assert progress.begin(BUCKET, job, chunks=2, cancelled=True) == 0
    assert _published(aws[0])["cancelled"] == 5, "a replay counts nothing twice"


def test_a_job_without_recipients_is_done_at_once(aws, job, clock):
    empty = dataclasses.replace(job, parts=(), recipients=0)
    _progress(aws, clock).begin(BUCKET, empty, chunks=0)
    published = _published(aws[0])
    assert (published["state"], published["remaining"]) == ("done", 0)
    assert published["finished_at"] == published["started_at"]


def test_unknown_statuses_are_a_programming_error(aws, job, clock):
    with pytest.raises(ValueError, match="in_progress"):
        _progress(aws, clock).counting(JOB_ID, {"in_progress": 1})


def test_status_reads_the_item_then_the_last_published_document(aws, job, clock):
    progress = _progress(aws, clock)
    assert progress.status(BUCKET, JOB_ID) is None
    progress.begin(BUCKET, job, chunks=1)
    record(aws, progress, JOB_ID, {"sent": 5})
    assert progress.status(BUCKET, JOB_ID)["sent"] == 5
    aws[1].delete_item(TableName=TABLE, Key={"id": {"S": f"postbag-test#job#{JOB_ID}"}})
    assert progress.status(BUCKET, JOB_ID)["state"] == "done", "expired item: status.json"


def test_cancel_is_looked_up_every_few_seconds_and_then_kept(aws, clock):
    s3 = aws[0]
    progress = _progress(aws, clock)
    assert progress.cancelled(BUCKET, JOB_ID) is False
    s3.put_object(Bucket=BUCKET, Key=cancel_key(JOB_ID), Body=b"")
    assert progress.cancelled(BUCKET, JOB_ID) is False, "within the check interval"
    clock.sleep(5)
    assert progress.cancelled(BUCKET, JOB_ID) is True
    s3.delete_object(Bucket=BUCKET, Key=cancel_key(JOB_ID))
    clock.sleep(60)
    assert progress.cancelled(BUCKET, JOB_ID) is True, "a cancel is for good"
    assert progress.cancelled(BUCKET, "another-job") is False


def test_a_chunk_of_a_job_never_begun_makes_an_item_that_expires(aws, clock):
    progress = _progress(aws, clock)
    document = record(aws, progress, "lost-job", {"sent": 2})
    assert (document["sent"], document["started_at"]) == (2, "2026-11-18T11:06:40Z")
    item = aws[1].get_item(TableName=TABLE, Key={"id": {"S": "postbag-test#job#lost-job"}})
    assert item["Item"]["expiration"]["N"] == str(int(START) + 30 * 24 * 3600)


class Stale:
    """A DynamoDB client whose GetItem answers what it read earlier: a chunk whose publish
    is overtaken by a later chunk's."""

    def __init__(self, client, answer):
        self._client, self._answer = client, answer

    def __getattr__(self, name):
        if name == "get_item":
            return lambda **_: self._answer
        return getattr(self._client, name)


def test_a_late_publish_of_older_counts_never_takes_the_status_back(aws, job, clock):
    s3, dynamodb = aws
    progress = _progress(aws, clock)
    progress.begin(BUCKET, job, chunks=2)
    record(aws, progress, JOB_ID, {"sent": 3})
    seen_by_a = dynamodb.get_item(TableName=TABLE,
                                  Key={"id": {"S": f"postbag-test#job#{JOB_ID}"}})
    assert record(aws, progress, JOB_ID, {"sent": 2})["state"] == "done"  # chunk B
    late = JobProgress(Stale(dynamodb, seen_by_a), TABLE, "postbag-test", s3, clock=clock)
    assert late.publish(BUCKET, JOB_ID)["state"] == "sending"  # what chunk A saw
    published = _published(s3)
    assert (published["state"], published["sent"], published["remaining"]) == ("done", 5, 0)
