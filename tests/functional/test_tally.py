"""Each row of a notify job counted once, however its work item is delivered (moto)."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest
from conftest import LEDGER_TABLE
from support.sending import AnswerLost, DynamoDown, SerialClient

from chalicelib.errors import LedgerUnavailable
from chalicelib.model import WorkItem
from chalicelib.tally import Tally, chunk_name

TABLE = LEDGER_TABLE
ITEM = WorkItem(bucket="b", job_id="job-1", manifest_key="jobs/job-1/manifest.json", part=2,
                start=0, end=10)


def tally(client) -> Tally:
    return Tally(client, TABLE, "postbag-test")


def test_settled_rows_are_counted_once_and_the_rest_from_where_they_stopped(dynamodb):
    counter = tally(dynamodb)
    assert counter.claim(ITEM, 4) == 0  # rows 0..4 are this caller's to count
    assert counter.claim(ITEM, 4) is None  # the same delivery again
    assert counter.claim(ITEM, 10) == 4  # a redelivery that got further: rows 4..10
    rest = replace(ITEM, start=4, attempt=1)  # the handed-back rest shares the chunk
    assert counter.claim(rest, 10) is None


COUNTER = {"id": {"S": "counter"}}


def counting(low: int) -> dict:
    """A stand-in for the job's counts: rows low..10 added to one number."""
    return {"Update": {"TableName": TABLE, "Key": COUNTER, "UpdateExpression": "ADD n :n",
                       "ExpressionAttributeValues": {":n": {"N": str(10 - low)}}}}


def counted(client) -> int:
    item = client.get_item(TableName=TABLE, Key=COUNTER).get("Item")
    return int(item["n"]["N"]) if item else 0


def test_rows_whose_counts_could_not_be_written_are_counted_by_the_next_delivery(dynamodb):
    with pytest.raises(LedgerUnavailable):
        tally(DynamoDown(dynamodb, {"transact_write_items"})).claim(ITEM, 10, counting)
    assert counted(dynamodb) == 0
    assert tally(dynamodb).claim(ITEM, 10, counting) == 0, "the mark did not move either"
    assert counted(dynamodb) == 10


@pytest.mark.parametrize("retried", [True, False], ids=["botocore-retried", "raised"])
def test_a_count_whose_answer_was_lost_is_counted_once(dynamodb, retried):
    lossy = AnswerLost(dynamodb, "transact_write_items", retried=retried)
    try:
        tally(lossy).claim(ITEM, 10, counting)
    except LedgerUnavailable:
        assert not retried  # the message is delivered again
    assert tally(dynamodb).claim(ITEM, 10, counting) is None  # the redelivery
    assert lossy.lost == 1 and counted(dynamodb) == 10


def test_chunks_are_told_apart_by_part_end_and_inline_rows():
    names = {chunk_name(ITEM), chunk_name(replace(ITEM, start=5)),
             chunk_name(replace(ITEM, end=20)), chunk_name(replace(ITEM, part=3)),
             chunk_name(replace(ITEM, rows=('{"email":"a@example.net"}',))),
             chunk_name(replace(ITEM, rows=('{"email":"b@example.net"}',)))}
    assert len(names) == 5  # the rest of a chunk (start=5) is the chunk itself


def test_deliveries_at_once_count_every_row_exactly_once(dynamodb):
    counted: list[range] = []
    lock = threading.Lock()

    def deliver(cut: int) -> None:
        low = tally(SerialClient(dynamodb)).claim(ITEM, cut)
        if low is not None:
            with lock:
                counted.append(range(low, cut))

    threads = [threading.Thread(target=deliver, args=(cut,)) for cut in (3, 10, 7, 10, 5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    rows = sorted(row for span in counted for row in span)
    assert rows == list(range(10))


def test_dynamodb_failing_is_transient(dynamodb):
    with pytest.raises(LedgerUnavailable):
        tally(DynamoDown(dynamodb)).claim(ITEM, 5)
