"""The per-mail ledger on DynamoDB (moto): claim, complete, release, take over, replay."""

from __future__ import annotations

import threading
import time

import boto3
import pytest
from fakes import client_error
from moto import mock_aws

from chalicelib.config import Settings
from chalicelib.errors import LedgerUnavailable, TransientError
from chalicelib.ledger import (
    DONE,
    IN_PROGRESS,
    REPLAYED,
    Ledger,
    Result,
    create_table,
)

TABLE = "postbag-ledger"


class Context:
    """The part of a Lambda context the ledger reads."""

    def __init__(self, remaining_ms: int):
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


class Crash(BaseException):
    """Stands for the process dying mid-send: nothing after it runs, not even a release."""


@pytest.fixture
def dynamodb():
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_table(client, TABLE)
        yield client


def new_ledger(remaining_ms: int = 60_000, **kwargs) -> Ledger:
    ledger = Ledger.from_settings(Settings(idempotency_namespace="postbag-test"), **kwargs)
    ledger.register_lambda_context(Context(remaining_ms))
    return ledger


def sent(message_id: str):
    calls = []

    def action() -> Result:
        calls.append(message_id)
        return Result(message_id=message_id)

    action.calls = calls
    return action


def test_first_call_runs_and_a_replay_returns_the_saved_message_id(dynamodb):
    ledger = new_ledger()
    first, again = sent("ses-1"), sent("ses-2")
    assert ledger.once("b1:m1:0", first).state == DONE
    replay = ledger.once("b1:m1:0", again)
    assert replay.state == REPLAYED
    assert replay.result == Result(message_id="ses-1")
    assert again.calls == []


def test_a_replay_from_another_instance_sees_the_record(dynamodb):
    new_ledger().once("b1:m1:0", sent("ses-1"))
    other = new_ledger()  # a second Lambda instance: its own layer and client
    assert other.once("b1:m1:0", sent("ses-2")).result == Result(message_id="ses-1")


def test_a_permanent_failure_is_completed_with_its_reason_and_never_rerun(dynamodb):
    ledger = new_ledger()
    assert ledger.once("b1:bad:0", lambda: Result(reason="MessageRejected: nope")).state == DONE
    retry = sent("ses-9")
    replay = ledger.once("b1:bad:0", retry)
    assert replay == ledger.once("b1:bad:0", retry)
    assert replay.state == REPLAYED and replay.result.reason == "MessageRejected: nope"
    assert retry.calls == []


def test_an_error_releases_the_claim_so_the_next_attempt_runs(dynamodb):
    ledger = new_ledger()

    def fails() -> Result:
        raise TransientError("SES 503")

    with pytest.raises(TransientError):
        ledger.once("b1:m1:0", fails)
    second = sent("ses-2")
    assert ledger.once("b1:m1:0", second).state == DONE
    assert second.calls == ["ses-2"]


def test_a_claim_held_by_a_running_invocation_is_reported_not_raised(dynamodb):
    holder, other = new_ledger(), new_ledger()
    inside, release = threading.Event(), threading.Event()

    def slow() -> Result:
        inside.set()
        release.wait(5)
        return Result(message_id="ses-1")

    thread = threading.Thread(target=holder.once, args=("b1:m1:0", slow))
    thread.start()
    assert inside.wait(5)
    second = sent("ses-2")
    assert other.once("b1:m1:0", second).state == IN_PROGRESS
    release.set()
    thread.join()
    assert second.calls == []
    assert other.once("b1:m1:0", second).result == Result(message_id="ses-1")


def test_a_crashed_attempt_is_taken_over_after_its_deadline(dynamodb):
    crashed, retry = new_ledger(), new_ledger()
    retry.once("warm-up", sent("ses-0"))  # its client is made: the checks below are quick
    crashed.register_lambda_context(Context(remaining_ms=600))

    def crash() -> Result:
        raise Crash

    with pytest.raises(Crash):
        crashed.once("b1:m1:0", crash)
    assert retry.once("b1:m1:0", sent("too-early")).state == IN_PROGRESS
    time.sleep(0.65)  # powertools compares the claim with the wall clock: let it pass
    takeover = sent("ses-2")
    assert retry.once("b1:m1:0", takeover).state == DONE
    assert takeover.calls == ["ses-2"]


def test_records_are_keyed_by_namespace_and_expire_by_ttl(dynamodb, monkeypatch):
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "renamed-function")
    ledger = Ledger(TABLE, "postbag-test", record_ttl_seconds=3600)
    ledger.register_lambda_context(Context(60_000))
    before = int(time.time())
    ledger.once("b1:m1:0", sent("ses-1"))
    (item,) = dynamodb.scan(TableName=TABLE)["Items"]
    assert item["id"]["S"].startswith("postbag-test#")
    assert item["status"]["S"] == "COMPLETED"
    assert before + 3600 <= int(item["expiration"]["N"]) <= int(time.time()) + 3600
    ttl = dynamodb.describe_time_to_live(TableName=TABLE)["TimeToLiveDescription"]
    assert ttl["AttributeName"] == "expiration"


def test_the_redrive_number_makes_a_new_key(dynamodb):
    ledger = new_ledger()
    ledger.once("b1:m1:0", lambda: Result(reason="MessageRejected"))
    assert ledger.once("b1:m1:1", sent("ses-after-fix")).state == DONE


def test_the_client_is_made_on_first_use_not_at_construction():
    ledger = Ledger(TABLE, "postbag-test")  # before moto starts: must not make a client yet
    ledger.register_lambda_context(Context(60_000))
    with mock_aws():
        create_table(boto3.client("dynamodb", region_name="us-east-1"), TABLE)
        assert ledger.once("b1:m1:0", sent("ses-1")).state == DONE


def test_dynamodb_trouble_before_sending_is_transient_and_sends_nothing(dynamodb):
    ledger = Ledger("no-such-table", "postbag-test")
    ledger.register_lambda_context(Context(60_000))
    action = sent("ses-1")
    with pytest.raises(LedgerUnavailable):
        ledger.once("b1:m1:0", action)
    assert action.calls == []


def test_at_most_two_writes_per_new_mail_and_one_per_replay(dynamodb):
    client = boto3.client("dynamodb", region_name="us-east-1")
    calls: list[str] = []
    client.meta.events.register(
        "before-call.dynamodb.*", lambda model, **_: calls.append(model.name)
    )
    ledger = new_ledger(dynamodb_client=client)
    ledger.once("b1:m1:0", sent("ses-1"))
    assert calls == ["PutItem", "UpdateItem"]
    calls.clear()
    ledger.once("b1:m1:0", sent("ses-2"))
    assert calls == ["PutItem"]  # the failed condition returns the old record: no read


class UpdatesFail:
    """A DynamoDB client whose UpdateItem (the completion) fails: DynamoDB went away mid-send."""

    def __init__(self, client):
        self._client = client

    def __getattr__(self, name):
        return getattr(self._client, name)

    def update_item(self, **_):
        raise client_error("InternalServerError", "DynamoDB is having a bad day", "UpdateItem")


def test_a_completion_lost_after_sending_keeps_the_message_id_and_the_claim(dynamodb):
    ledger = new_ledger(dynamodb_client=UpdatesFail(boto3.client("dynamodb")))
    entry = ledger.once("b1:m1:0", sent("ses-1"))
    assert entry.state == DONE and entry.result == Result(message_id="ses-1")
    again = sent("ses-2")
    assert new_ledger().once("b1:m1:0", again).state == IN_PROGRESS  # not resent meanwhile
    assert again.calls == []
