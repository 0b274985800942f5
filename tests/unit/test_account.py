"""status/account.json: what the sender writes from its quota readings, how rarely,
and that trouble writing it never reaches a send (botocore's Stubber: the exact requests)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import boto3
import pytest
from botocore.stub import ANY, Stubber
from support.clock import FakeClock

from chalicelib.account import AccountReport
from chalicelib.quota import QuotaWatch

QUOTA = {"Max24HourSend": 50000.0, "MaxSendRate": 14.0, "SentLast24Hours": 1234.0}
AT = datetime(2026, 11, 30, 1, 2, 3, tzinfo=UTC)
EXPECTED = {"version": 1, "checked_at": "2026-11-30T01:02:03Z", "max_send_rate": 14.0,
            "max_24_hour_send": 50000.0, "sent_last_24_hours": 1234.0,
            "production_access": True, "sending_enabled": True}


@pytest.fixture
def clients():
    s3 = boto3.client("s3", region_name="us-east-1")
    sesv2 = boto3.client("sesv2", region_name="us-east-1")
    with Stubber(s3) as s3_stub, Stubber(sesv2) as ses_stub:
        yield s3, s3_stub, sesv2, ses_stub
        s3_stub.assert_no_pending_responses()
        ses_stub.assert_no_pending_responses()


def expect_put(s3_stub: Stubber, written: list[dict]) -> None:
    def capture(body: bytes) -> bool:
        written.append(json.loads(body))
        return True

    class Body:
        def __eq__(self, other: object) -> bool:
            return isinstance(other, bytes) and capture(other)

    s3_stub.add_response("put_object", {}, {"Bucket": "site-mail", "Key": "status/account.json",
                                            "Body": Body(), "ContentType": "application/json"})


def account_answer(production: bool | None = True) -> dict:
    return {"ProductionAccessEnabled": production, "SendingEnabled": True,
            "DedicatedIpAutoWarmupEnabled": False}


def test_a_reading_is_written_at_most_once_a_minute(clients):
    s3, s3_stub, sesv2, ses_stub = clients
    clock, written = FakeClock(), []
    report = AccountReport(s3, sesv2, "site-mail", clock=clock, now=lambda: AT)
    ses_stub.add_response("get_account", account_answer(), {})
    expect_put(s3_stub, written)
    report.publish(QUOTA)
    clock.sleep(59)
    report.publish(QUOTA)  # nothing asked, nothing written
    assert written == [EXPECTED]
    clock.sleep(1)
    ses_stub.add_response("get_account", account_answer(), {})
    expect_put(s3_stub, written)
    report.publish({**QUOTA, "SentLast24Hours": 1300.0})
    assert [w["sent_last_24_hours"] for w in written] == [1234.0, 1300.0]


def test_an_account_that_cannot_be_read_is_null_and_the_quota_still_written(clients):
    s3, s3_stub, sesv2, ses_stub = clients
    written: list[dict] = []
    ses_stub.add_client_error("get_account", "AccessDeniedException")
    expect_put(s3_stub, written)
    AccountReport(s3, sesv2, "site-mail", now=lambda: AT).publish(QUOTA)
    assert written == [{**EXPECTED, "production_access": None, "sending_enabled": None}]


def test_a_failed_write_is_logged_not_raised_and_never_stops_the_quota_watch(clients):
    s3, s3_stub, sesv2, ses_stub = clients
    ses = boto3.client("ses", region_name="us-east-1")
    ses_stub.add_response("get_account", account_answer(False), {})
    s3_stub.add_client_error("put_object", "AccessDenied", http_status_code=403,
                             expected_params={"Bucket": "site-mail", "Key": ANY, "Body": ANY,
                                              "ContentType": ANY})
    report = AccountReport(s3, sesv2, "site-mail", now=lambda: AT)
    with Stubber(ses) as quota_stub:
        quota_stub.add_response("get_send_quota", QUOTA, {})
        # The watch reads the quota, hands it to the report, and answers as before.
        assert QuotaWatch(ses, clock=FakeClock(), on_quota=report.publish).allows(100) is True
