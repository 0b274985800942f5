"""WordPress's re-drive requests (moto S3 and SQS): the failed mail back in the queue once,
the result where the plugin reads it, the request gone; bad requests quarantined with the
field; replays harmless."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import boto3
import pytest
from conftest import load_fixture
from moto import mock_aws

from chalicelib.errors import BatchFormatError
from chalicelib.outcome import Recorder
from chalicelib.redrive_request import RedriveRequests, parse
from chalicelib.workqueue import WorkQueue

BUCKET = "postbag-test"
KEY = "requests/redrive/6f1c2f4e-2b0a-4d7e-9b1e-0c9d8a7b6c5d.json"
RESULT = "status/redrive/6f1c2f4e-2b0a-4d7e-9b1e-0c9d8a7b6c5d.json"
NOW = datetime(2026, 11, 30, 1, 5, tzinfo=UTC)


@pytest.fixture
def aws():
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName="postbag-test-work")["QueueUrl"]
        yield s3, sqs, url


def handler(s3, sqs, url) -> RedriveRequests:
    return RedriveRequests(s3, WorkQueue(sqs, url), Recorder(s3), now=lambda: NOW)


def put(s3, key: str, doc) -> None:
    s3.put_object(Bucket=BUCKET, Key=key,
                  Body=doc if isinstance(doc, bytes) else json.dumps(doc).encode())


def read(s3, key: str):
    return json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())


def keys(s3, prefix: str) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
                  .get("Contents", []))


def failed_batch(batch_id: str, mail_ids: list[str]) -> dict:
    doc = load_fixture("batches/plain.json")
    doc["batch_id"] = batch_id
    doc["emails"] = [{**doc["emails"][0], "id": mail_id} for mail_id in mail_ids]
    return doc


def test_a_batch_request_requeues_the_failed_batch_once_and_reports(aws):
    s3, sqs, url = aws
    put(s3, "failed/b1.json", failed_batch("b1", ["m1", "m2"]))
    put(s3, "failed/b10.json", failed_batch("b10", ["m9"]))  # another batch: left alone
    put(s3, KEY, load_fixture("redrive/batch-request.json"))
    result = handler(s3, sqs, url).apply(BUCKET, KEY)
    assert read(s3, "queue/b1.redrive-1.json")["redrive"] == 1
    assert keys(s3, "failed/") == ["failed/b10.json"]
    assert keys(s3, "requests/") == []
    assert read(s3, RESULT) == result == {
        "version": 1, "request": KEY, "kind": "batch", "id": "b1", "mail_ids": ["m1"],
        "requested_at": "2026-11-30T01:00:00Z", "handled_at": "2026-11-30T01:05:00Z",
        "state": "redriven", "queued": ["queue/b1.redrive-1.json"], "not_failed": []}


def test_a_replayed_request_redrives_nothing_twice_and_keeps_the_first_result(aws):
    s3, sqs, url = aws
    put(s3, "failed/b1.json", failed_batch("b1", ["m1"]))
    request = load_fixture("redrive/batch-request.json")
    put(s3, KEY, request)
    requests = handler(s3, sqs, url)
    first = requests.apply(BUCKET, KEY)
    # The event again: the request is gone, nothing happens.
    assert requests.apply(BUCKET, KEY) is None
    # Its delete was lost (the object back): nothing failed is left, the result stays.
    put(s3, KEY, request)
    again = requests.apply(BUCKET, KEY)
    assert again is not None and again["state"] == "nothing_failed"
    assert read(s3, RESULT) == first
    assert keys(s3, "queue/") == ["queue/b1.redrive-1.json"]


def test_mails_not_failed_are_named_in_the_result(aws):
    s3, sqs, url = aws
    put(s3, KEY, {**load_fixture("redrive/batch-request.json"), "mail_ids": ["m1", "m7"]})
    put(s3, "failed/b1.json", failed_batch("b1", ["m1"]))
    assert handler(s3, sqs, url).apply(BUCKET, KEY)["not_failed"] == ["m7"]


def test_a_job_request_puts_its_failed_recipients_back_on_the_work_queue(aws):
    s3, sqs, url = aws
    request = load_fixture("redrive/job-request.json")
    job = request["id"]
    put(s3, f"failed/jobs/{job}/redrive-0/0-0.json", {
        "version": 1, "job_id": job, "manifest_key": f"jobs/{job}/manifest.json",
        "redrive": 0, "rows": ['{"email": "bob@example.net"}']})
    put(s3, KEY, request)
    result = handler(s3, sqs, url).apply(BUCKET, KEY)
    assert (result["state"], result["queued"]) == ("redriven", [f"{job} redrive 1: 1 recipient(s)"])
    [message] = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert "bob@example.net" in message["Body"]
    assert keys(s3, "failed/") == [] and keys(s3, "requests/") == []


BAD = [
    (b"{", "(file)", "not JSON"),
    (b"[]", "(file)", "object"),
    ({"kind": "batch", "id": "b1", "mail_ids": [], "requested_at": "2026-11-30T01:00:00Z"},
     "(document)", "version"),
    ({"version": 2}, "version", ""),
    ({"kind": "mail"}, "kind", ""),
    ({"id": "../b1"}, "id", ""),
    ({"id": ""}, "id", ""),
    ({"mail_ids": "m1"}, "mail_ids", ""),
    ({"mail_ids": ["m 1"]}, "mail_ids[0]", ""),
    ({"requested_at": "yesterday"}, "requested_at", ""),
    ({"requested_at": "2026-02-30T01:00:00Z"}, "requested_at", "date-time"),
    ({"kind": "job", "mail_ids": ["m1"]}, "mail_ids", "leave mail_ids empty"),
    ({"extra": True}, "(document)", ""),
]


def _bad_body(change) -> bytes:
    if isinstance(change, bytes):
        return change
    if "version" not in change and "kind" in change and "id" in change:
        return json.dumps(change).encode()  # a whole document missing a field
    return json.dumps({**load_fixture("redrive/batch-request.json"), **change}).encode()


@pytest.mark.parametrize("change,field,reason", BAD, ids=[
    "truncated", "not-an-object", "no-version", "version-2", "unknown-kind", "path-in-id",
    "empty-id", "mail-ids-not-a-list", "bad-mail-id", "not-a-time", "no-such-day",
    "job-with-mail-ids", "unknown-field"])
def test_a_bad_request_names_its_field(change, field, reason):
    with pytest.raises(BatchFormatError) as caught:
        parse(_bad_body(change), KEY)
    assert (caught.value.field, caught.value.batch) == (field, KEY)
    assert reason in caught.value.reason


def test_a_bad_request_is_quarantined_with_its_field_and_nothing_redriven(aws):
    s3, sqs, url = aws
    put(s3, "failed/b1.json", failed_batch("b1", ["m1"]))
    put(s3, KEY, {**load_fixture("redrive/batch-request.json"), "kind": "mail"})
    assert handler(s3, sqs, url).apply(BUCKET, KEY) is None
    error = read(s3, "quarantine/" + KEY + ".error.json")
    assert (error["batch"], error["field"]) == (KEY, "kind")
    assert keys(s3, "failed/") == ["failed/b1.json"] and keys(s3, "requests/") == []
