"""SES's events through the real ``on_ses_event`` handler, against moto: no input crashes
it, one bad record never stops the others, redelivered notifications change nothing twice.

The hostile table is data (fixtures/events/ses-hostile.json); each of its records comes
between two sound complaints in the same notification. The first record is a sound one:
Chalice's ``SNSEvent`` reads the first record's envelope (``Sns.Subject``) before the
handler runs, and SNS, not the sender of the mail, writes envelopes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from chalice.test import Client
from conftest import load_fixture
from moto import mock_aws
from support.safe_env import prepare_sender_aws

import app
from chalicelib.publisher import Marks
from chalicelib.suppression import SuppressionStore

TABLE = load_fixture("events/ses-hostile.json")
CASES = TABLE["cases"]
SOUND = ("sound@example.net", "sound2@example.net")
EVENT_DATE = "2026-11-30"  # the fixture's mail.timestamp


def _clear_builders() -> None:
    """The handler's clients are made on first use: made afresh inside each mock."""
    for built in vars(app).values():
        if callable(getattr(built, "cache_clear", None)):
            built.cache_clear()


@pytest.fixture
def aws():
    with mock_aws():
        _clear_builders()
        prepare_sender_aws(app)
        yield
        _clear_builders()


def store() -> SuppressionStore:
    return SuppressionStore(boto3.client("dynamodb"), app.SETTINGS.suppression_table)


def counted_events() -> int:
    marks = Marks(boto3.client("dynamodb"), app.SETTINGS.ledger_table,
                  app.SETTINGS.idempotency_namespace)
    days = marks.days(sorted({EVENT_DATE, datetime.now(UTC).strftime("%Y-%m-%d")}))
    return sum(n for counts in days.values() for n in counts.values())


def sns_record(message: Any) -> dict[str, Any]:
    return {"EventSource": "aws:sns", "Sns": {"Message": json.dumps(message),
                                              "MessageId": "n-1", "Subject": None,
                                              "MessageAttributes": {}}}


def complaint(address: str) -> dict[str, Any]:
    return {"eventType": "Complaint",
            "mail": {"timestamp": "2026-11-30T00:58:00.000Z", "messageId": "ses-0", "tags": {}},
            "complaint": {"feedbackId": "fb-sound",
                          "complainedRecipients": [{"emailAddress": address}]}}


def hostile_record(case: dict[str, Any]) -> Any:
    if "generate_nesting" in case:
        depth = case["generate_nesting"]
        return {"Sns": {"Message": "[" * depth + "]" * depth}}
    if "record" in case:
        return case["record"]
    message = case["message"]
    if "generate_recipients" in case:
        message["bounce"]["bouncedRecipients"] = [
            {"emailAddress": f"r{n}@example.net"} for n in range(case["generate_recipients"])]
    return sns_record(message)


def deliver(records: list[Any]) -> None:
    with Client(app.app) as client:
        client.lambda_.invoke("on_ses_event", {"Records": records})


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_no_ses_event_crashes_the_handler_or_stops_the_next_record(aws, case):
    deliver([sns_record(complaint(SOUND[0])), hostile_record(case),
             sns_record(complaint(SOUND[1]))])
    listed = {entry.address for entry in store().entries()}
    assert set(SOUND) <= listed  # the sound record after it was applied too
    hostile = listed - set(SOUND)
    if "suppressed_count" in case:
        assert len(hostile) == case["suppressed_count"]
    else:
        assert hostile == set(case.get("suppressed", []))
    assert counted_events() == 2 + bool(case.get("counted"))


def test_the_table_covers_every_part_of_an_event():
    ids = " ".join(c["id"] for c in CASES)
    for part in ("message", "record", "mail", "event-type", "bounce", "complaint",
                 "recipients", "recipient-address", "tags", "tag-value", "timestamp",
                 "nested"):
        assert part in ids, part


def soft_bounce(feedback_id: str, minute: int) -> dict[str, Any]:
    return sns_record({
        "eventType": "Bounce",
        "mail": {"timestamp": f"2026-11-30T00:{minute:02d}:00.000Z", "messageId": "ses-s",
                 "tags": {}},
        "bounce": {"bounceType": "Transient", "feedbackId": feedback_id,
                   "bouncedRecipients": [{"emailAddress": "full@example.net"}]}})


def test_a_redelivered_soft_bounce_counts_once_toward_the_limit(aws):
    # The default limit is 3 within 7 days: the same bounce delivered three times is one.
    for _ in range(3):
        deliver([soft_bounce("fb-a", 10)])
    assert store().suppressed(["full@example.net"]) == set()
    deliver([soft_bounce("fb-b", 20)])
    deliver([soft_bounce("fb-c", 30)])
    assert store().suppressed(["full@example.net"]) == {"full@example.net"}


def test_soft_bounces_alone_keep_no_address_and_expire(aws):
    deliver([soft_bounce("fb-a", 10)])
    items = boto3.client("dynamodb").scan(TableName=app.SETTINGS.suppression_table)["Items"]
    [item] = items
    assert item["id"]["S"].startswith("soft#") and "address" not in item
    bounced_at = datetime(2026, 11, 30, 0, 10, tzinfo=UTC).timestamp()
    assert int(item["expiration"]["N"]) == int(bounced_at + app.SETTINGS.soft_bounce_days
                                               * 86400)
    assert store().entries() == []  # nothing to list, export or count
