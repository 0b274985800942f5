"""The SES boundary: exact requests (botocore's Stubber) and error translation."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from botocore.stub import Stubber
from conftest import parse_fixture
from support.fakes import ENDPOINT
from support.fakes import client_error as fake_client_error

from chalicelib.errors import RejectedBySes, SendingPaused, SesUnavailable, Throttled
from chalicelib.send import SesSender, translate


@pytest.fixture
def ses():
    client = boto3.client("ses", region_name="us-east-1")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def test_plain_mail_goes_out_through_send_email(ses, settings):
    client, stubber = ses
    batch = parse_fixture("batches/plain.json", settings)
    mail = batch.mails[0]
    stubber.add_response(
        "send_email",
        {"MessageId": "ses-1"},
        {
            "Source": "=?utf-8?b?QmxvZyDDnG7Dr2NvZGU=?= <news@example.org>",
            "Destination": {
                "ToAddresses": ["=?utf-8?q?Zo=C3=AB_Follower?= <zoe@example.net>"],
                "BccAddresses": ["archive@example.org"],
            },
            "Message": {
                "Subject": {"Data": "New post: Café culture ☕", "Charset": "UTF-8"},
                "Body": {
                    "Text": {"Data": mail.text, "Charset": "UTF-8"},
                    "Html": {"Data": mail.html, "Charset": "UTF-8"},
                },
            },
            "ReplyToAddresses": ["Editors <editors@example.org>"],
            "ConfigurationSetName": "postbag",
            "Tags": [{"Name": "site", "Value": "blog"}, {"Name": "source", "Value": "new-post"}],
        },
    )
    assert SesSender(client).send_simple(mail, batch.meta) == "ses-1"


def test_html_only_mail_gets_a_text_part(ses, settings):
    client, stubber = ses
    batch = parse_fixture("batches/plain.json", settings)
    mail = batch.mails[1]
    expected = stub_any_send_email(stubber)
    SesSender(client).send_simple(mail, batch.meta)
    body = expected["Message"]["Body"]
    assert body["Text"]["Data"] == "Hello,\n\nA new post is up.\n"


def stub_any_send_email(stubber):
    """Records the parameters of the next send_email call."""
    seen = {}

    def capture(params, **_):
        seen.update(params)

    stubber.client.meta.events.register("provide-client-params.ses.SendEmail", capture)
    stubber.add_response("send_email", {"MessageId": "ses-2"})
    return seen


def test_raw_mail_lists_every_recipient_bcc_included(ses, settings):
    client, stubber = ses
    batch = parse_fixture("batches/plain.json", settings)
    stubber.add_response(
        "send_raw_email",
        {"MessageId": "ses-3"},
        {
            "Source": "=?utf-8?b?QmxvZyDDnG7Dr2NvZGU=?= <news@example.org>",
            "Destinations": ["bob@example.net", "carol@example.net", "archive@example.org"],
            "RawMessage": {"Data": b"raw"},
            "ConfigurationSetName": "postbag",
            "Tags": [{"Name": "site", "Value": "blog"}, {"Name": "source", "Value": "new-post"}],
        },
    )
    assert SesSender(client).send_raw(batch.mails[1], batch.meta, b"raw") == "ses-3"


def client_error(code, message="", status=400):
    return fake_client_error(code, message, "SendEmail", status)


TRANSLATIONS = [
    ("throttling", client_error("Throttling", "Maximum sending rate exceeded."), Throttled),
    ("daily-quota", client_error("Throttling", "Daily message quota exceeded."), SendingPaused),
    ("account-paused", client_error("AccountSendingPausedException"), SendingPaused),
    ("rejected", client_error("MessageRejected", "Email address is not verified."), RejectedBySes),
    (
        "invalid-param",
        client_error("InvalidParameterValue", "Missing final '@domain'"),
        RejectedBySes,
    ),
    ("unavailable", client_error("ServiceUnavailable", "", 503), SesUnavailable),
    ("internal-500", client_error("InternalFailure", "", 500), SesUnavailable),
    (
        "network",
        EndpointConnectionError(endpoint_url=ENDPOINT),
        SesUnavailable,
    ),
]


@pytest.mark.parametrize(
    "error, expected", [t[1:] for t in TRANSLATIONS], ids=[t[0] for t in TRANSLATIONS]
)
def test_errors_are_translated_by_code(error, expected):
    translated = translate(error)
    assert type(translated) is expected
    assert translated.retryable is expected.retryable


def test_a_refusal_surfaces_as_a_typed_error(ses, settings):
    client, stubber = ses
    batch = parse_fixture("batches/plain.json", settings)
    stubber.add_client_error("send_email", "MessageRejected", "Email address is not verified.")
    with pytest.raises(RejectedBySes, match="not verified") as caught:
        SesSender(client).send_simple(batch.mails[0], batch.meta)
    assert isinstance(caught.value.__cause__, ClientError)
