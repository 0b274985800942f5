"""The splitter with S3, SQS and DynamoDB (moto): every row in exactly one work item, replays
that add nothing, and manifests that do not match their parts quarantined with the reason."""

from __future__ import annotations

import copy
import gzip
import hashlib
import json
from datetime import UTC, datetime, timedelta
from urllib.parse import quote_plus

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError
from chalice.test import Client
from conftest import load_fixture
from moto import mock_aws
from support.bad_jobs import MANIFEST_KEY
from support.safe_env import prepare_sender_aws

from chalicelib.config import Settings
from chalicelib.errors import LedgerUnavailable, QueueUnavailable
from chalicelib.ledger import create_table
from chalicelib.outcome import Recorder
from chalicelib.progress import JobProgress, cancel_key
from chalicelib.retry import RetryPolicy
from chalicelib.split import Splitter
from chalicelib.store import BatchStore
from chalicelib.workqueue import WorkQueue, decode

BUCKET, TABLE, QUEUE = "postbag-test", "postbag-ledger", "postbag-test-work"
SETTINGS = Settings(allowed_senders=("example.org",), idempotency_namespace="postbag-test",
                    chunk_rows=100)
EXAMPLE = load_fixture("jobs/new-post/" + MANIFEST_KEY)


class Failing:
    """A boto3 client whose ``method`` fails (no connection) after ``calls`` good calls:
    an outage in the middle of a split."""

    def __init__(self, client, method: str, calls: int):
        self._client, self._method, self._left = client, method, calls

    def __getattr__(self, name):
        attribute = getattr(self._client, name)
        if name != self._method:
            return attribute

        def call(**params):
            if self._left <= 0:
                raise EndpointConnectionError(endpoint_url="https://unreachable.invalid")
            self._left -= 1
            return attribute(**params)

        return call


@pytest.fixture
def aws():
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName=QUEUE)["QueueUrl"]
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        create_table(dynamodb, TABLE)
        yield s3, sqs, url, dynamodb


def _progress(aws):
    s3, _, _, dynamodb = aws
    return JobProgress(dynamodb, TABLE, SETTINGS.idempotency_namespace, s3)


def _splitter(aws, sqs=None, dynamodb=None, settings=SETTINGS):
    s3, real_sqs, url, real_dynamodb = aws
    queue = WorkQueue(sqs or real_sqs, url, retry=RetryPolicy(attempts=1))
    progress = JobProgress(dynamodb or real_dynamodb, TABLE, settings.idempotency_namespace, s3)
    return Splitter(BatchStore(s3), queue, progress, Recorder(s3), settings)


def _part_bytes(rows: int, first: int = 0) -> bytes:
    lines = (json.dumps({"email": f"r{first + i}@example.net"}) + "\n" for i in range(rows))
    return gzip.compress("".join(lines).encode())


def upload_job(s3, rows: list[int], job_id: str = "job-1", stored=None, **changes) -> str:
    """A job whose parts hold ``rows`` rows each; ``stored`` replaces what is stored for a
    part (index → bytes, or None for a part never uploaded); ``changes`` edit the manifest."""
    manifest = copy.deepcopy(EXAMPLE)
    manifest["job_id"], manifest["parts"] = job_id, []
    for index, count in enumerate(rows):
        key = f"jobs/{job_id}/part-{index + 1:05d}.ndjson.gz"
        data = _part_bytes(count, first=sum(rows[:index]))
        manifest["parts"].append({"key": key, "rows": count, "bytes": len(data),
                                  "sha256": hashlib.sha256(data).hexdigest()})
        data = (stored or {}).get(index, data)
        if data is not None:
            s3.put_object(Bucket=BUCKET, Key=key, Body=data)
    manifest["recipients"] = sum(rows)
    manifest.update(changes)
    key = f"jobs/{job_id}/manifest.json"
    s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(manifest).encode())
    return key


def received(aws) -> list:
    _, sqs, url, _ = aws
    items = []
    while True:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            return items
        for message in messages:
            items.append(decode(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def assert_every_row_once(items, rows: list[int]) -> None:
    covered = sorted((item.part, row) for item in items for row in range(item.start, item.end))
    assert covered == [(part, row) for part, count in enumerate(rows) for row in range(count)]


def test_every_row_is_in_exactly_one_work_item(aws):
    rows = [1234, 100, 1]
    key = upload_job(aws[0], rows)
    assert _splitter(aws).split(BUCKET, key) == 13 + 1 + 1
    items = received(aws)
    assert_every_row_once(items, rows)
    assert all(item.end - item.start <= 100 for item in items)
    assert {(i.bucket, i.job_id, i.manifest_key, i.redrive, i.rows) for i in items} == {
        (BUCKET, "job-1", key, 0, ())}
    status = _progress(aws).status(BUCKET, "job-1")
    assert (status["state"], status["recipients"], status["remaining"]) == ("queued", 1335, 1335)


def test_a_replayed_split_enqueues_nothing_new(aws):
    key = upload_job(aws[0], [250])
    assert _splitter(aws).split(BUCKET, key) == 3
    assert _splitter(aws).split(BUCKET, key) == 0
    assert_every_row_once(received(aws), [250])


def test_a_split_cut_short_by_sqs_goes_on_without_loss_or_duplicate(aws):
    rows = [3000, 450]  # 35 items: four batches of ten
    key = upload_job(aws[0], rows)
    with pytest.raises(QueueUnavailable):
        _splitter(aws, sqs=Failing(aws[1], "send_message_batch", calls=2)).split(BUCKET, key)
    assert _splitter(aws).split(BUCKET, key) == 15
    assert_every_row_once(received(aws), rows)


def test_a_count_lost_after_its_batch_resends_at_most_that_batch(aws):
    rows = [3000, 450]
    key = upload_job(aws[0], rows)
    # DynamoDB fails after the job's put and one count: the second batch is on SQS, uncounted.
    with pytest.raises(LedgerUnavailable):
        _splitter(aws, dynamodb=Failing(aws[3], "update_item", calls=1)).split(BUCKET, key)
    assert _splitter(aws).split(BUCKET, key) == 25
    items = received(aws)
    assert len(items) == 35 + 10, "the uncounted ten again: the ledger sends no mail twice"
    assert_every_row_once(list({(i.part, i.start): i for i in items}.values()), rows)


def test_a_job_without_recipients_is_done_and_enqueues_nothing(aws):
    key = upload_job(aws[0], [])
    assert _splitter(aws).split(BUCKET, key) == 0
    assert received(aws) == []
    assert _progress(aws).status(BUCKET, "job-1")["state"] == "done"


def test_a_cancelled_job_is_not_split(aws):
    key = upload_job(aws[0], [300])
    aws[0].put_object(Bucket=BUCKET, Key=cancel_key("job-1"), Body=b"")
    assert _splitter(aws).split(BUCKET, key) == 0
    assert received(aws) == []
    status = _progress(aws).status(BUCKET, "job-1")
    assert (status["state"], status["cancelled"]) == ("cancelled", 300)


def test_a_manifest_already_gone_is_nothing_to_do(aws):
    assert _splitter(aws).split(BUCKET, "jobs/job-1/manifest.json") == 0


def _flipped(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 1]) + data[middle + 1:]


def _corrupt_with_its_checksum(s3, job_id="job-1"):
    """A part that is no gzip, listed with its true size and SHA-256."""
    data = b"this was never compressed\n"
    key = upload_job(s3, [3], job_id, stored={0: data})
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    manifest["parts"][0].update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(manifest).encode())
    return key


# (id, makes the job and returns its manifest key, field, words of the reason)
BAD_JOBS = [
    ("part-missing", lambda s3: upload_job(s3, [10, 5], stored={1: None}),
     "parts[1]", "jobs/job-1/part-00002.ndjson.gz does not exist"),
    ("checksum-mismatch", lambda s3: upload_job(s3, [10], stored={0: _flipped(_part_bytes(10))}),
     "parts[0]", "has another SHA-256 than the manifest's"),
    ("part-cut-short", lambda s3: upload_job(s3, [10], stored={0: _part_bytes(10)[:-9]}),
     "parts[0]", "the manifest says"),
    ("part-larger", lambda s3: upload_job(s3, [10], stored={0: _part_bytes(10) + b"x" * 99}),
     "parts[0]", "is larger than the"),
    ("another-part-stored", lambda s3: upload_job(s3, [10], stored={0: _part_bytes(9)}),
     "parts[0]", "bytes, the manifest says"),
    ("rows-miscounted", lambda s3: _miscounted(s3), "parts[0]", "holds 10 rows, the manifest "
     "says 11"),
    ("not-gzip", _corrupt_with_its_checksum, "parts[0]", "not gzip"),
    ("bad-template", lambda s3: upload_job(s3, [10], template={"subject": "{{", "html": "x"}),
     "template.subject", "not a jinja2 template"),
    ("send-at-too-far", lambda s3: upload_job(s3, [10], send_at="2999-01-01T00:00:00Z"),
     "send_at", "is more than 90 days ahead"),
    ("window-too-far", lambda s3: upload_job(s3, [10], send_between={
        "start": "2026-12-01T08:00:00Z", "end": "2999-01-01T00:00:00Z"}),
     "send_between.end", "is more than 90 days ahead"),
    ("window-reversed", lambda s3: upload_job(s3, [10], send_between={
        "start": "2026-12-01T09:00:00+01:00", "end": "2026-12-01T08:00:00Z"}),
     "send_between.end", "2026-12-01T08:00:00Z is not after the start, 2026-12-01T08:00:00Z"),
    ("send-at-and-window", lambda s3: upload_job(s3, [10], send_at="2026-12-01T08:00:00Z",
                                                 send_between={"start": "2026-12-01T08:00:00Z",
                                                               "end": "2026-12-01T09:00:00Z"}),
     "send_between", "send_at and send_between exclude each other"),
    ("held-by-no-sender", lambda s3: upload_job(s3, [10], send_at=_TOMORROW),
     "send_at", "this sender holds no scheduled sends"),
]


_TOMORROW = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _miscounted(s3):
    key = upload_job(s3, [10])
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    manifest["parts"][0]["rows"], manifest["recipients"] = 11, 11
    s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(manifest).encode())
    return key


@pytest.mark.parametrize("name, make, field, reason", BAD_JOBS, ids=[b[0] for b in BAD_JOBS])
def test_a_job_that_does_not_match_is_quarantined_with_the_reason(aws, name, make, field, reason):
    s3 = aws[0]
    key = make(s3)
    assert _splitter(aws).split(BUCKET, key) == 0
    assert received(aws) == []
    target = "quarantine/" + key
    error = json.loads(s3.get_object(Bucket=BUCKET, Key=target + ".error.json")["Body"].read())
    assert error["field"] == field
    assert reason in error["reason"]
    assert "job-1" in error["error"]
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix=key)
    assert _progress(aws).status(BUCKET, "job-1") is None, "never begun"


def test_chunk_rows_must_be_positive(aws):
    from chalicelib.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="POSTBAG_CHUNK_ROWS"):
        _splitter(aws, settings=Settings(chunk_rows=0))


# --- the handler ---------------------------------------------------------------------


@pytest.fixture
def app_aws():
    import app

    with mock_aws():
        for built in (app.splitter, app.work_queue, app.job_progress):
            built.cache_clear()
        s3 = prepare_sender_aws(app)
        sqs = boto3.client("sqs")
        url = sqs.create_queue(QueueName=app.SETTINGS.work_queue)["QueueUrl"]
        yield app, s3, sqs, url
        for built in (app.splitter, app.work_queue, app.job_progress):
            built.cache_clear()


def _event(client, bucket, keys):
    event = client.events.generate_s3_event(bucket, quote_plus(keys[0]))
    record = event["Records"][0]
    event["Records"] = [
        {**record, "s3": {**record["s3"], "object": {"key": quote_plus(key), "size": 1}}}
        for key in keys
    ]
    return event


def test_on_job_uploaded_splits_each_record_whatever_the_others_do(app_aws):
    app, s3, sqs, url = app_aws
    bucket = app.os.environ["POSTBAG_BUCKET"]
    good = "jobs/job-2/manifest.json"
    manifest = copy.deepcopy(EXAMPLE)
    part = manifest["parts"][0]
    data = _part_bytes(3)
    part.update(key="jobs/job-2/part-00001.ndjson.gz", bytes=len(data), rows=3,
                sha256=hashlib.sha256(data).hexdigest())
    manifest.update(job_id="job-2", parts=[part], recipients=3)
    s3.put_object(Bucket=bucket, Key=part["key"], Body=data)
    s3.put_object(Bucket=bucket, Key=good, Body=json.dumps(manifest).encode())
    bad = "jobs/job-3/manifest.json"
    s3.put_object(Bucket=bucket, Key=bad, Body=b"{not json")
    with Client(app.app) as client:
        response = client.lambda_.invoke("on_job_uploaded", _event(client, bucket, [bad, good]))
    assert response.payload is None
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert [decode(m["Body"]).job_id for m in messages] == ["job-2"]
    assert "Contents" in s3.list_objects_v2(Bucket=bucket, Prefix="quarantine/" + bad)


def test_on_job_uploaded_raises_for_a_retry_when_sqs_is_missing(app_aws):
    app, s3, sqs, url = app_aws
    bucket = app.os.environ["POSTBAG_BUCKET"]
    assert bucket == BUCKET
    key = upload_job(s3, [3], job_id="job-4")
    sqs.delete_queue(QueueUrl=url)
    with Client(app.app) as client, pytest.raises(QueueUnavailable):
        client.lambda_.invoke("on_job_uploaded", _event(client, bucket, [key]))
    assert "Contents" in s3.list_objects_v2(Bucket=bucket, Prefix=key), "left for the retry"
