"""Each row of a notify job counted once, however its work item is delivered (moto)."""

from __future__ import annotations

import threading
from dataclasses import replace

import boto3
import pytest
from moto import mock_aws
from support.sending import DynamoDown, SerialClient

from chalicelib.errors import LedgerUnavailable
from chalicelib.ledger import create_table
from chalicelib.model import WorkItem
from chalicelib.tally import Tally, chunk_name

TABLE = "postbag-ledger"
ITEM = WorkItem(bucket="b", job_id="job-1", manifest_key="jobs/job-1/manifest.json", part=2,
                start=0, end=10)


@pytest.fixture
def dynamodb():
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_table(client, TABLE)
        yield client


def tally(client) -> Tally:
    return Tally(client, TABLE, "postbag-test")


def test_settled_rows_are_counted_once_and_the_rest_from_where_they_stopped(dynamodb):
    counter = tally(dynamodb)
    assert counter.claim(ITEM, 4) == 0  # rows 0..4 are this caller's to count
    assert counter.claim(ITEM, 4) is None  # the same delivery again
    assert counter.claim(ITEM, 10) == 4  # a redelivery that got further: rows 4..10
    rest = replace(ITEM, start=4, attempt=1)  # the handed-back rest shares the chunk
    assert counter.claim(rest, 10) is None


def test_a_claim_given_back_is_counted_by_the_next_delivery(dynamodb):
    counter = tally(dynamodb)
    low = counter.claim(ITEM, 6)
    counter.undo(ITEM, low, 6)
    assert counter.claim(ITEM, 6) == 0


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
