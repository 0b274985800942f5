"""SES v2's SendEmail with Simple content: the exact request (botocore's Stubber, as moto's
sesv2 drops ``Headers``), when it is chosen over MIME, and its errors."""

from __future__ import annotations

from datetime import UTC, datetime

import boto3
import pytest
from botocore.stub import Stubber
from support.fakes import FakeSes

from chalicelib.config import Settings
from chalicelib.errors import (
    RejectedBySes,
    SendAmbiguous,
    SendingPaused,
    SesUnavailable,
    Throttled,
)
from chalicelib.ledger import key_digest
from chalicelib.model import Attachment, Mail, Meta
from chalicelib.pipeline import Stages, send_mail
from chalicelib.send import SesSender
from chalicelib.store import BatchStore

META = Meta(
    sender=("Blog Ünïcode", "news@example.org"),
    reply_to=(("Editors", "editors@example.org"),),
    headers=(("List-Unsubscribe", "<https://blog.example.org/u?t=abc>"),
             ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")),
    configuration_set="postbag",
    tags=(("source", "new-post"),),
)
MAIL = Mail(id="0:7", to=(("Zoë", "zoe@example.net"),), subject="Café ☕",
            html="<p>Hi</p>", text="Hi")
FILE = Attachment(filename="a.txt", content_type="text/plain", content_base64="aGk=", size=2)


@pytest.fixture
def sesv2():
    client = boto3.client("sesv2", region_name="us-east-1")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def test_a_mail_with_custom_headers_is_one_simple_v2_request(sesv2):
    client, stubber = sesv2
    stubber.add_response("send_email", {"MessageId": "v2-1"}, {
        "FromEmailAddress": "=?utf-8?b?QmxvZyDDnG7Dr2NvZGU=?= <news@example.org>",
        "Destination": {"ToAddresses": ["=?utf-8?q?Zo=C3=AB?= <zoe@example.net>"]},
        "ReplyToAddresses": ["Editors <editors@example.org>"],
        "Content": {"Simple": {
            "Subject": {"Data": "Café ☕", "Charset": "UTF-8"},
            "Body": {"Text": {"Data": "Hi", "Charset": "UTF-8"},
                     "Html": {"Data": "<p>Hi</p>", "Charset": "UTF-8"}},
            "Headers": [
                {"Name": "List-Unsubscribe", "Value": "<https://blog.example.org/u?t=abc>"},
                {"Name": "List-Unsubscribe-Post", "Value": "List-Unsubscribe=One-Click"},
            ],
        }},
        "ConfigurationSetName": "postbag",
        "EmailTags": [{"Name": "source", "Value": "new-post"},
                      {"Name": "postbag-key", "Value": key_digest("job:zoe@example.net:0")}],
    })
    sender = SesSender(FakeSes(), client)
    assert sender.send_simple(MAIL, META, ledger_key="job:zoe@example.net:0") == "v2-1"


def header(value: str, count: int = 1) -> Meta:
    return Meta(sender=("", "news@example.org"), headers=(("X-Note", value),) * count)


@pytest.mark.parametrize(("meta", "mail", "v2", "fits"), [
    (Meta(sender=("", "news@example.org")), MAIL, False, True),
    (header("plain ascii"), MAIL, True, True),
    (header("plain ascii"), MAIL, False, False),
    (header("Grüße"), MAIL, True, False),
    (header("x" * 995), MAIL, True, True),
    (header("x" * 996), MAIL, True, False),
    (header("a", 15), MAIL, True, True),
    (header("a", 16), MAIL, True, False),
    (header("a"), Mail(id="m", to=MAIL.to, subject="s", text="t", attachments=(FILE,)), True,
     False),
], ids=["no-headers-v1", "ascii-header", "no-v2-client", "non-ascii-value", "995-chars",
        "996-chars", "15-headers", "16-headers", "attachment"])
def test_what_goes_without_mime(meta, mail, v2, fits):
    assert SesSender(FakeSes(), FakeSes() if v2 else None).simple_fits(mail, meta) is fits


@pytest.mark.parametrize(("code", "message", "status", "error"), [
    ("SendingPausedException", "Sending is paused", 400, SendingPaused),
    ("AccountSuspendedException", "Suspended", 400, SendingPaused),
    ("LimitExceededException", "Daily message quota exceeded.", 400, SendingPaused),
    ("TooManyRequestsException", "Maximum sending rate exceeded.", 429, Throttled),
    ("MessageRejected", "Email address is not verified.", 400, RejectedBySes),
    ("InternalFailure", "oops", 500, SesUnavailable),
], ids=["paused", "suspended", "daily-quota", "rate", "rejected", "server-error"])
def test_v2_errors_are_translated_at_the_boundary(sesv2, code, message, status, error):
    client, stubber = sesv2
    stubber.add_client_error("send_email", code, message, status)
    with pytest.raises(error):
        SesSender(FakeSes(), client).send_simple(MAIL, META)


def test_a_v2_answer_that_never_came_is_ambiguous():
    lost = FakeSes(lose_answer_share=1.0)
    with pytest.raises(SendAmbiguous):
        SesSender(FakeSes(), lost).send_simple(MAIL, META, ledger_key="k")
    assert len(lost.accepted) == 1  # SES took it: only its Send event can say so


@pytest.mark.parametrize(("meta", "mail", "operation"), [
    (META, MAIL, "SendEmailV2"),
    (Meta(sender=("", "news@example.org")), MAIL, "SendEmail"),
    (header("Grüße"), MAIL, "SendRawEmail"),
    (META, Mail(id="m", to=MAIL.to, subject="s", text="t", attachments=(FILE,)),
     "SendRawEmail"),
], ids=["headers-v2", "plain-v1", "non-ascii-header-mime", "attachment-mime"])
def test_both_paths_choose_the_same_way(meta, mail, operation):
    ses = FakeSes()
    stages = Stages(Settings(), store=BatchStore(None), sender=SesSender(ses, ses), dispatcher=None,
                    recorder=None)
    send_mail(stages, "bucket", meta, datetime(2026, 11, 29, tzinfo=UTC), "job", mail, "k")
    assert [a.operation for a in ses.accepted] == [operation]
