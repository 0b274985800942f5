"""The per-mail ledger on DynamoDB (moto): chunk claims, batched writes, releases, takeovers."""

from __future__ import annotations

import time

import boto3
import pytest
from conftest import LEDGER_TABLE
from support.clock import FakeClock
from support.fakes import client_error
from support.sending import AnswerLost, Calls, DynamoDown

from chalicelib.config import Settings
from chalicelib.errors import LedgerUnavailable
from chalicelib.ledger import (
    CLAIMED,
    IN_PROGRESS,
    REPLAYED,
    Entry,
    Ledger,
    Result,
    record_id,
)
from chalicelib.retry import RetryPolicy

TABLE = LEDGER_TABLE
SETTINGS = Settings(idempotency_namespace="postbag-test")
MINUTE_MS = 60_000


@pytest.fixture
def clock():
    return FakeClock(start=time.time())


def new_ledger(clock: FakeClock, client=None, random=None, **kwargs) -> Ledger:
    """A ledger as one Lambda instance has it: its own client and buffer, a shared clock.

    Abandoned claims are taken over right at their expiry unless a test gives
    an evidence window (the window has tests of its own below).
    """
    client = client or boto3.client("dynamodb", region_name="us-east-1")
    jitter = {"random": random} if random else {}
    retry = RetryPolicy(base_delay=0.05, max_delay=1.0, sleep=clock.sleep, **jitter)
    kwargs.setdefault("evidence_window", 0.0)
    return Ledger.from_settings(SETTINGS, client, clock=clock, retry=retry, **kwargs)


def keys(count: int, batch: str = "b1") -> list[str]:
    return [f"{batch}:m{n:03d}:0" for n in range(count)]


def items(dynamodb) -> dict[str, dict]:
    return {i["id"]["S"]: i for i in dynamodb.scan(TableName=TABLE, ConsistentRead=True)["Items"]}


def status(dynamodb, key: str) -> str | None:
    item = items(dynamodb).get(record_id(SETTINGS.idempotency_namespace, key))
    return None if item is None else item["status"]["S"]


# -- claim ----------------------------------------------------------------------------


def test_a_claimed_and_completed_key_replays_its_message_id_in_another_instance(dynamodb, clock):
    ledger = new_ledger(clock)
    assert ledger.claim(["b1:m1:0"], MINUTE_MS) == [Entry(CLAIMED)]
    ledger.complete("b1:m1:0", Result(message_id="ses-1"))
    ledger.flush()
    other = new_ledger(clock)
    assert other.claim(["b1:m1:0"], MINUTE_MS) == [Entry(REPLAYED, Result(message_id="ses-1"))]


def test_a_permanent_failure_is_completed_with_its_reason_and_never_claimed_again(dynamodb, clock):
    ledger = new_ledger(clock)
    ledger.claim(["b1:bad:0"], MINUTE_MS)
    ledger.complete("b1:bad:0", Result(reason="MessageRejected: nope"))
    ledger.flush()
    replay = Entry(REPLAYED, Result(reason="MessageRejected: nope"))
    assert ledger.claim(["b1:bad:0"], MINUTE_MS) == [replay]
    assert ledger.claim(["b1:bad:0"], MINUTE_MS) == [replay]
    # The re-drive number makes a new key: an operator's re-drive does send again.
    assert ledger.claim(["b1:bad:1"], MINUTE_MS) == [Entry(CLAIMED)]


def test_a_chunk_claims_the_free_keys_and_reports_the_rest_in_key_order(dynamodb, clock):
    done, held, crashed, *free = keys(8)
    elsewhere = new_ledger(clock)
    elsewhere.claim([done, held], MINUTE_MS)
    elsewhere.complete(done, Result(message_id="ses-done"))
    elsewhere.flush()
    new_ledger(clock).claim([crashed], 500)  # an instance that dies: its claim ends in 0.5 s
    clock.sleep(0.6)
    client = boto3.client("dynamodb", region_name="us-east-1")
    calls = Calls(client)
    entries = new_ledger(clock, client).claim([*free[:2], done, held, crashed, *free[2:]],
                                              MINUTE_MS)
    assert entries == [
        Entry(CLAIMED), Entry(CLAIMED), Entry(REPLAYED, Result(message_id="ses-done")),
        Entry(IN_PROGRESS), Entry(CLAIMED), Entry(CLAIMED), Entry(CLAIMED), Entry(CLAIMED),
    ]
    # One cancelled transaction, one read of the two it met, one that claims the rest.
    assert calls.names == ["TransactWriteItems", "BatchGetItem", "TransactWriteItems"]
    assert [status(dynamodb, k) for k in (done, held, crashed, free[0])] == [
        "COMPLETED", "INPROGRESS", "INPROGRESS", "INPROGRESS"
    ]


def test_a_crashed_claim_is_taken_over_only_after_its_deadline(dynamodb, clock):
    new_ledger(clock).claim(["b1:m1:0"], 600)  # the instance dies: no release, no completion
    retry = new_ledger(clock)
    assert retry.claim(["b1:m1:0"], MINUTE_MS) == [Entry(IN_PROGRESS)]
    clock.sleep(0.65)
    assert retry.claim(["b1:m1:0"], MINUTE_MS) == [Entry(CLAIMED)]


def test_a_hundred_keys_are_one_transaction_and_more_are_refused(dynamodb, clock):
    client = boto3.client("dynamodb", region_name="us-east-1")
    calls = Calls(client)
    assert new_ledger(clock, client).claim(keys(100), MINUTE_MS) == [Entry(CLAIMED)] * 100
    assert calls.names == ["TransactWriteItems"]
    with pytest.raises(ValueError):
        new_ledger(clock).claim(keys(101, batch="b2"), MINUTE_MS)


class ConflictOnce:
    """A client whose first transaction is cancelled by another one touching the same item."""

    def __init__(self, client):
        self._client = client
        self.conflicts = 0

    def __getattr__(self, name):
        return getattr(self._client, name)

    def transact_write_items(self, TransactItems):  # noqa: N803 (botocore's name)
        if self.conflicts:
            return self._client.transact_write_items(TransactItems=TransactItems)
        self.conflicts += 1
        error = client_error("TransactionCanceledException", "cancelled", "TransactWriteItems")
        reasons = [{"Code": "None"}] * len(TransactItems)
        error.response["CancellationReasons"] = [*reasons[:-1], {"Code": "TransactionConflict"}]
        raise error


def test_a_transaction_conflict_is_tried_again_after_a_pause(dynamodb, clock):
    client = ConflictOnce(boto3.client("dynamodb", region_name="us-east-1"))
    ledger = new_ledger(clock, client, random=lambda: 1.0)
    assert ledger.claim(keys(3), MINUTE_MS) == [Entry(CLAIMED)] * 3
    assert client.conflicts == 1 and clock.slept == pytest.approx(0.05)


def test_records_are_keyed_by_namespace_and_expire_by_ttl(dynamodb, clock):
    ledger = new_ledger(clock, record_ttl_seconds=3600)
    ledger.claim(["b1:m1:0"], MINUTE_MS)
    ledger.complete("b1:m1:0", Result(message_id="ses-1"))
    ledger.flush()
    (item,) = items(dynamodb).values()
    assert item["id"]["S"] == record_id("postbag-test", "b1:m1:0")
    assert item["id"]["S"].startswith("postbag-test#")
    assert item["status"]["S"] == "COMPLETED"
    assert int(item["expiration"]["N"]) == int(clock()) + 3600
    ttl = dynamodb.describe_time_to_live(TableName=TABLE)["TimeToLiveDescription"]
    assert ttl["AttributeName"] == "expiration"


def test_a_record_past_its_ttl_but_not_yet_deleted_counts_as_absent(dynamodb, clock):
    ledger = new_ledger(clock, record_ttl_seconds=60)
    ledger.claim(["b1:m1:0"], MINUTE_MS)
    ledger.complete("b1:m1:0", Result(message_id="ses-1"))
    ledger.flush()
    clock.sleep(61)  # moto, like DynamoDB for up to days, keeps expired items
    assert ledger.claim(["b1:m1:0"], MINUTE_MS) == [Entry(CLAIMED)]


def test_records_written_by_the_powertools_ledger_are_honoured(dynamodb, clock):
    """An upgrade must not resend what the previous ledger (powertools) recorded."""
    from aws_lambda_powertools.utilities.idempotency import (
        DynamoDBPersistenceLayer,
        IdempotencyConfig,
    )

    layer = DynamoDBPersistenceLayer(TABLE, boto3_client=dynamodb)
    layer.configure(IdempotencyConfig(event_key_jmespath="key"), key_prefix="postbag-test")
    layer.save_success({"key": "b1:m1:0"}, {"message_id": "ses-old", "reason": None})
    entries = new_ledger(clock).claim(["b1:m1:0"], MINUTE_MS)
    assert entries == [Entry(REPLAYED, Result(message_id="ses-old"))]


# -- complete and release -----------------------------------------------------------------


def test_completions_are_written_25_at_a_time(dynamodb, clock):
    client = boto3.client("dynamodb", region_name="us-east-1")
    ledger = new_ledger(clock, client)
    ledger.claim(keys(30), MINUTE_MS)
    calls = Calls(client)
    for n, key in enumerate(keys(30)):
        ledger.complete(key, Result(message_id=f"ses-{n}"))
    assert calls.names == ["BatchWriteItem"]  # at the 25th
    assert [status(dynamodb, k) for k in keys(30)] == ["COMPLETED"] * 25 + ["INPROGRESS"] * 5
    ledger.flush()
    assert calls.names == ["BatchWriteItem"] * 2
    assert {status(dynamodb, k) for k in keys(30)} == {"COMPLETED"}
    ledger.flush()  # nothing left: no call
    assert calls.names == ["BatchWriteItem"] * 2


def test_completions_are_written_a_second_after_the_oldest_was_buffered(dynamodb, clock):
    client = boto3.client("dynamodb", region_name="us-east-1")
    ledger = new_ledger(clock, client)
    ledger.claim(keys(3), MINUTE_MS)
    calls = Calls(client)
    ledger.complete(keys(3)[0], Result(message_id="ses-0"))
    clock.sleep(0.6)
    ledger.complete(keys(3)[1], Result(message_id="ses-1"))
    assert calls.names == []
    clock.sleep(0.4)  # a second after the first
    ledger.complete(keys(3)[2], Result(message_id="ses-2"))
    assert calls.names == ["BatchWriteItem"]
    assert {status(dynamodb, k) for k in keys(3)} == {"COMPLETED"}


def test_a_released_key_is_claimed_at_once_by_the_next_attempt(dynamodb, clock):
    ledger = new_ledger(clock)
    ledger.claim(keys(2), MINUTE_MS)
    ledger.release(keys(2))
    ledger.flush()
    assert new_ledger(clock).claim(keys(2), MINUTE_MS) == [Entry(CLAIMED)] * 2


class Unprocessed:
    """A client whose BatchWriteItem leaves the last ``left`` writes unprocessed ``times`` times."""

    def __init__(self, client, left: int, times: int):
        self._client, self.left, self.times = client, left, times
        self.sizes: list[int] = []

    def __getattr__(self, name):
        return getattr(self._client, name)

    def batch_write_item(self, RequestItems):  # noqa: N803 (botocore's name)
        ((table, writes),) = RequestItems.items()
        self.sizes.append(len(writes))
        if not self.times:
            return self._client.batch_write_item(RequestItems=RequestItems)
        self.times -= 1
        done, rest = writes[: -self.left], writes[-self.left:]
        if done:
            self._client.batch_write_item(RequestItems={table: done})
        return {"UnprocessedItems": {table: rest}}


def test_unprocessed_writes_are_retried_with_backoff(dynamodb, clock):
    client = Unprocessed(boto3.client("dynamodb", region_name="us-east-1"), left=3, times=2)
    ledger = new_ledger(clock, client, random=lambda: 1.0)
    ledger.claim(keys(10), MINUTE_MS)
    for key in keys(10):
        ledger.complete(key, Result(message_id="ses"))
    ledger.flush()
    assert client.sizes == [10, 3, 3]
    assert clock.slept == pytest.approx(0.05 + 0.1)
    assert {status(dynamodb, k) for k in keys(10)} == {"COMPLETED"}


def test_writes_unprocessed_every_time_raise_and_leave_the_claims(dynamodb, clock):
    client = Unprocessed(boto3.client("dynamodb", region_name="us-east-1"), left=2, times=99)
    ledger = new_ledger(clock, client)
    ledger.claim(keys(4), MINUTE_MS)
    for key in keys(4):
        ledger.complete(key, Result(message_id="ses"))
    with pytest.raises(LedgerUnavailable, match="unprocessed"):
        ledger.flush()
    assert len(client.sizes) == 5  # bounded attempts
    assert [status(dynamodb, k) for k in keys(4)] == ["COMPLETED"] * 2 + ["INPROGRESS"] * 2
    # Not resent meanwhile: the claims hold until the deadline.
    assert new_ledger(clock).claim(keys(4)[2:], MINUTE_MS) == [Entry(IN_PROGRESS)] * 2


# -- DynamoDB trouble -------------------------------------------------------------------------


def test_a_missing_table_is_ledger_unavailable(dynamodb, clock):
    ledger = Ledger(dynamodb, "no-such-table", "postbag-test", clock=clock)
    with pytest.raises(LedgerUnavailable):
        ledger.claim(keys(3), MINUTE_MS)


def test_dynamodb_down_is_ledger_unavailable_for_claims_and_writes(clock):
    ledger = new_ledger(clock, DynamoDown(boto3.client("dynamodb", region_name="us-east-1")))
    with pytest.raises(LedgerUnavailable, match="bad day"):
        ledger.claim(keys(2), MINUTE_MS)
    ledger.complete("b1:m1:0", Result(message_id="ses-1"))
    with pytest.raises(LedgerUnavailable, match="bad day"):
        ledger.flush()


# --- SES's evidence: abandoned claims and the window ----------------------------------


def test_an_abandoned_claim_waits_out_the_evidence_window(dynamodb, clock):
    new_ledger(clock).claim(["b1:m1:0"], 600)  # dies: no release, no completion
    retry = new_ledger(clock, evidence_window=30.0)
    clock.sleep(0.65)
    assert retry.claim(["b1:m1:0"], MINUTE_MS) == [Entry(IN_PROGRESS)]  # a Send event may come
    clock.sleep(30)
    assert retry.claim(["b1:m1:0"], MINUTE_MS) == [Entry(CLAIMED)]  # none came: send it


def test_an_abandoned_claim_that_ses_sent_is_settled_by_its_send_event(dynamodb, clock):
    from chalicelib.ledger import key_digest

    new_ledger(clock).claim(["b1:m1:0", "b1:m2:0"], 600)  # dies after SES took m1
    new_ledger(clock).record_sent([(key_digest("b1:m1:0"), "ses-m1")])  # on_ses_event
    clock.sleep(31)
    retry = new_ledger(clock, evidence_window=30.0)
    assert retry.claim(["b1:m1:0", "b1:m2:0"], MINUTE_MS) == [
        Entry(REPLAYED, Result(message_id="ses-m1")), Entry(CLAIMED),
    ]
    retry.flush()  # the evidence is written down as the mail's completion
    assert status(dynamodb, "b1:m1:0") == "COMPLETED"
    assert new_ledger(clock).claim(["b1:m1:0"], MINUTE_MS) == [
        Entry(REPLAYED, Result(message_id="ses-m1"))
    ]


def test_evidence_is_read_back_per_key(dynamodb, clock):
    from chalicelib.ledger import key_digest

    ledger = new_ledger(clock)
    ledger.record_sent([(key_digest(k), f"ses-{n}") for n, k in enumerate(keys(3))])
    assert ledger.sent_by_ses([*keys(3), "b9:m0:0"]) == {
        "b1:m000:0": "ses-0", "b1:m001:0": "ses-1", "b1:m002:0": "ses-2",
    }


def test_a_failed_flush_keeps_its_writes_for_the_next_one(dynamodb, clock):
    broken = DynamoDown(boto3.client("dynamodb", region_name="us-east-1"), {"batch_write_item"})
    ledger = new_ledger(clock, broken)
    ledger.claim(keys(3), MINUTE_MS)
    for key in keys(3):
        ledger.complete(key, Result(message_id=f"ses-{key}"))
    with pytest.raises(LedgerUnavailable):
        ledger.flush()
    assert ledger.unwritten == 3  # nothing dropped
    broken._failing = set()  # DynamoDB is back
    ledger.flush()
    assert ledger.unwritten == 0
    assert {status(dynamodb, k) for k in keys(3)} == {"COMPLETED"}


class SecondBatchWriteFails:
    """A DynamoDB client whose second BatchWriteItem call fails; the rest passes through."""

    def __init__(self, client):
        self._client, self.batch_writes = client, 0

    def __getattr__(self, name):
        if name != "batch_write_item":
            return getattr(self._client, name)

        def write(**params):
            self.batch_writes += 1
            if self.batch_writes == 2:
                raise client_error("InternalServerError", "down", "BatchWriteItem", 500)
            return self._client.batch_write_item(**params)

        return write


def test_a_flush_failing_half_way_keeps_only_what_was_not_written(dynamodb, clock):
    client = SecondBatchWriteFails(boto3.client("dynamodb", region_name="us-east-1"))
    ledger = new_ledger(clock, client)
    ledger.claim(keys(30)[:25], MINUTE_MS)
    ledger.claim(keys(30)[25:], MINUTE_MS)
    with pytest.raises(LedgerUnavailable):
        ledger.release(keys(30))  # one flush of 30 writes: two BatchWriteItem calls
    # The first 25 were written; only the 5 after them wait for the next flush (writing
    # the first ones again could undo what another invocation did meanwhile).
    assert ledger.unwritten == 5
    assert [status(dynamodb, k) for k in keys(30)] == [None] * 25 + ["INPROGRESS"] * 5


def test_a_claim_whose_answer_was_lost_is_recognised_as_ours(dynamodb, clock):
    client = AnswerLost(boto3.client("dynamodb", region_name="us-east-1"), "transact_write_items")
    assert new_ledger(clock, client).claim(keys(3), MINUTE_MS) == [Entry(CLAIMED)] * 3
    # Another invocation still sees them held.
    assert new_ledger(clock).claim(keys(3), MINUTE_MS) == [Entry(IN_PROGRESS)] * 3
