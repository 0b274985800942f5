"""Work items on SQS: the message body both ways, and sending with retries (botocore's
Stubber: the exact requests matter)."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.stub import ANY, Stubber

from chalicelib.errors import BatchFormatError, QueueUnavailable
from chalicelib.model import WorkItem
from chalicelib.retry import RetryPolicy
from chalicelib.workqueue import MAX_MESSAGE_BYTES, WorkQueue, decode, encode, packed

URL = "https://sqs.us-east-1.amazonaws.com/123456789012/postbag-work"
ITEM = WorkItem(bucket="postbag-test", job_id="job-1", manifest_key="jobs/job-1/manifest.json",
                part=2, start=500, end=1000)


def test_a_range_item_is_small_and_comes_back_equal():
    body = encode(ITEM)
    assert len(body) < 200 and body.isascii()
    assert decode(body) == ITEM


def test_a_redrive_item_carries_its_rows_escaped():
    item = WorkItem(bucket="b-1", job_id="job-1", manifest_key="jobs/job-1/manifest.json",
                    rows=('{"email":"zoë@example.net"}', '{"email":"\u2028@x"}'), redrive=2,
                    attempt=1)
    body = encode(item)
    assert body.isascii(), "SQS refuses some characters: every one is escaped"
    assert decode(body) == item


def test_a_redrive_item_too_large_for_sqs_is_refused():
    rows = tuple(json.dumps({"email": f"r{i}@example.net", "vars": {"x": "y" * 100}})
                 for i in range(3000))
    item = WorkItem(bucket="b-1", job_id="job-1", manifest_key="m", rows=rows)
    with pytest.raises(BatchFormatError) as caught:
        encode(item)
    assert caught.value.field == "rows" and "over SQS's 262,144" in caught.value.reason


# (id, body, field, words of the reason)
BAD_BODIES = [
    ("not-json", "{", "(file)", "not JSON"),
    ("not-an-object", "[]", "(file)", "expected a JSON object"),
    ("no-job", '{"bucket": "b-1", "manifest_key": "m"}', "(body)", "job_id"),
    ("job-id-not-an-id", '{"bucket": "b-1", "job_id": "../x", "manifest_key": "m"}',
     "job_id", "must match pattern"),
    ("part-negative", '{"bucket": "b-1", "job_id": "j", "manifest_key": "m", "part": -1}',
     "part", "bigger than or equal to 0"),
    ("start-a-string", '{"bucket": "b-1", "job_id": "j", "manifest_key": "m", "start": "0"}',
     "start", "must be integer"),
    ("end-a-boolean", '{"bucket": "b-1", "job_id": "j", "manifest_key": "m", "end": true}',
     "end", "must be integer"),
    ("end-before-start",
     '{"bucket": "b-1", "job_id": "j", "manifest_key": "m", "start": 5, "end": 4}',
     "end", "before start"),
    ("rows-not-strings", '{"bucket": "b-1", "job_id": "j", "manifest_key": "m", "rows": [1]}',
     "rows[0]", "must be string"),
    ("unknown-field", '{"bucket": "b-1", "job_id": "j", "manifest_key": "m", "x": 1}',
     "(body)", "must not contain {'x'}"),
]


@pytest.mark.parametrize("name, body, field, reason", BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
def test_a_bad_body_is_refused_naming_the_field(name, body, field, reason):
    with pytest.raises(BatchFormatError) as caught:
        decode(body)
    assert caught.value.field == field
    assert reason in caught.value.reason
    if '"job_id": "j"' in body:
        assert "work item of job j" in str(caught.value)


@pytest.fixture
def sqs():
    client = boto3.client("sqs", region_name="us-east-1")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def _queue(client, **kwargs):
    retry = RetryPolicy(attempts=3, retryable=(QueueUnavailable,), sleep=lambda _: None)
    return WorkQueue(client, kwargs.pop("url", URL), retry=retry)


def _items(n):
    return [WorkItem(bucket="b-1", job_id="job-1", manifest_key="m", part=0, start=i * 10,
                     end=i * 10 + 10) for i in range(n)]


def _batch_request(items, first=0):
    return {"QueueUrl": URL, "Entries": [
        {"Id": str(first + i), "MessageBody": encode(item)} for i, item in enumerate(items)
    ]}


def test_items_go_ten_to_a_call(sqs):
    client, stubber = sqs
    items = _items(23)
    for first in (0, 10, 20):
        batch = items[first:first + 10]
        stubber.add_response("send_message_batch", {"Successful": [
            {"Id": str(first + i), "MessageId": "m", "MD5OfMessageBody": "x"}
            for i in range(len(batch))
        ], "Failed": []}, _batch_request(batch, first))
    _queue(client).enqueue(items)


def test_entries_sqs_refused_are_sent_again_alone(sqs):
    client, stubber = sqs
    items = _items(3)
    stubber.add_response("send_message_batch", {
        "Successful": [{"Id": "0", "MessageId": "m", "MD5OfMessageBody": "x"}],
        "Failed": [{"Id": "1", "SenderFault": False, "Code": "InternalError"},
                   {"Id": "2", "SenderFault": False, "Code": "ServiceUnavailable"}],
    }, _batch_request(items))
    stubber.add_response("send_message_batch", {
        "Successful": [{"Id": "1", "MessageId": "m", "MD5OfMessageBody": "x"},
                       {"Id": "2", "MessageId": "m", "MD5OfMessageBody": "x"}], "Failed": [],
    }, {"QueueUrl": URL, "Entries": _batch_request(items)["Entries"][1:]})
    _queue(client).enqueue(items)


def test_entries_still_refused_after_the_retries_raise_a_transient_error(sqs):
    client, stubber = sqs
    items = _items(2)
    for _ in range(3):
        stubber.add_response("send_message_batch", {
            "Successful": [], "Failed": [{"Id": "0", "SenderFault": False, "Code": "InternalError"},
                                         {"Id": "1", "SenderFault": False,
                                          "Code": "InternalError"}],
        }, _batch_request(items))
    with pytest.raises(QueueUnavailable) as caught:
        _queue(client).enqueue(items)
    assert "did not take 2 work item(s): InternalError" in str(caught.value)


def test_a_call_that_fails_is_retried_then_raises_a_transient_error(sqs):
    client, stubber = sqs
    for _ in range(3):
        stubber.add_client_error("send_message_batch", "ServiceUnavailable", http_status_code=503)
    with pytest.raises(QueueUnavailable):
        _queue(client).enqueue(_items(1))


def test_large_bodies_are_grouped_under_the_batch_limit(sqs):
    client, stubber = sqs
    rows = tuple("x" * 1000 for _ in range(100))  # ~100 KB a body
    items = [WorkItem(bucket="b-1", job_id="job-1", manifest_key="m", rows=rows)
             for _ in range(5)]
    assert len(encode(items[0])) * 2 < MAX_MESSAGE_BYTES < len(encode(items[0])) * 3
    for first in (0, 2, 4):
        batch = items[first:first + 2]
        stubber.add_response("send_message_batch", {"Successful": [
            {"Id": str(first + i), "MessageId": "m", "MD5OfMessageBody": "x"}
            for i in range(len(batch))
        ], "Failed": []}, _batch_request(batch, first))
    _queue(client).enqueue(items)


def test_the_queue_url_is_looked_up_once_on_first_use(sqs):
    client, stubber = sqs
    looked_up = []

    def lookup():
        looked_up.append(1)
        return URL

    queue = _queue(client, url=lookup)
    assert looked_up == []
    for _ in range(2):
        stubber.add_response("send_message", {"MessageId": "m", "MD5OfMessageBody": "x"},
                             {"QueueUrl": URL, "MessageBody": ANY, "DelaySeconds": ANY})
        queue.hand_back(ITEM, 10)
    assert looked_up == [1]


@pytest.mark.parametrize("asked, sent", [(0, 0), (30, 30), (900, 900), (5000, 900), (-3, 0)])
def test_hand_back_delays_within_sqs_limits(sqs, asked, sent):
    client, stubber = sqs
    stubber.add_response("send_message", {"MessageId": "m", "MD5OfMessageBody": "x"},
                         {"QueueUrl": URL, "MessageBody": encode(ITEM), "DelaySeconds": sent})
    _queue(client).hand_back(ITEM, asked)


# (id, sizes, budget, most, the runs as (start, stop))
PACKED = [
    ("empty", [], 10, None, []),
    ("all-fit", [3, 3, 3], 10, None, [(0, 3)]),
    ("budget-cuts", [4, 4, 4], 10, None, [(0, 2), (2, 3)]),
    ("exactly-the-budget", [5, 5, 5], 10, None, [(0, 2), (2, 3)]),
    ("count-cuts", [1] * 5, 100, 2, [(0, 2), (2, 4), (4, 5)]),
    ("oversized-alone", [3, 20, 3], 10, None, [(0, 1), (1, 2), (2, 3)]),
]


@pytest.mark.parametrize("sizes, budget, most, runs", [row[1:] for row in PACKED],
                         ids=[row[0] for row in PACKED])
def test_packed_runs_stay_within_budget_and_count(sizes, budget, most, runs):
    assert [(r.start, r.stop) for r in packed(sizes, budget, most)] == runs
