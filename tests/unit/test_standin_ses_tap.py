"""The stand-in's SES tap: the Send event SES would publish for each accepted send,
v1 and v2 alike."""

from __future__ import annotations

import base64
import io
import json
import time
from urllib.parse import urlencode

import pytest
from conftest import fixture_bytes

from standin.server import EVENTS_PATH, MAILS_PATH, SESV2_SEND_PATH, SesEventTap

RAW = fixture_bytes("ses/raw-hello.eml")

V1_SIMPLE = ("/", urlencode({
    "Action": "SendEmail", "Source": "news@example.org",
    "Destination.ToAddresses.member.1": "ana@example.net",
    "Destination.BccAddresses.member.1": "bo@example.net",
    "Message.Subject.Data": "Hello Ana", "Message.Body.Text.Data": "Hi Ana,\nnews.",
    "Message.Body.Html.Data": "<p>Hi Ana,</p>",
    "Tags.member.1.Name": "postbag-key", "Tags.member.1.Value": "d1",
}).encode())
V1_RAW = ("/", urlencode({
    "Action": "SendRawEmail", "Destinations.member.1": "extra@example.net",
    "RawMessage.Data": base64.b64encode(RAW).decode(),
    "Tags.member.1.Name": "postbag-key", "Tags.member.1.Value": "d2",
}).encode())
V2_SIMPLE = (SESV2_SEND_PATH, json.dumps({
    "FromEmailAddress": "news@example.org",
    "Destination": {"ToAddresses": ["Zoë Durand <zoe@example.net>"]},
    "Content": {"Simple": {"Subject": {"Data": "Hello Zoë"},
                           "Body": {"Html": {"Data": "<p>Hi</p>"},
                                    "Text": {"Data": "Hi Zoë,\nthree new followers."}}}},
    "EmailTags": [{"Name": "postbag-key", "Value": "d3"}],
}).encode())
V2_RAW = (SESV2_SEND_PATH, json.dumps({
    "Content": {"Raw": {"Data": base64.b64encode(RAW).decode()}},
    "EmailTags": [{"Name": "postbag-key", "Value": "d4"}],
}).encode())


class FakeSes:
    """moto's answer to a send: v1 XML or v2 JSON with a MessageId, or an error."""

    def __init__(self, status: str = "200 OK"):
        self.status = status
        self.calls = 0

    def __call__(self, environ, start_response):
        self.calls += 1
        start_response(self.status, [])
        if environ["PATH_INFO"] == SESV2_SEND_PATH:
            return [json.dumps({"MessageId": f"m-{self.calls}"}).encode()]
        return [f"<Result><MessageId>m-{self.calls}</MessageId></Result>".encode()]


def post(tap: SesEventTap, path: str, body: bytes) -> bytes:
    environ = {"PATH_INFO": path, "REQUEST_METHOD": "POST", "CONTENT_LENGTH": str(len(body)),
               "wsgi.input": io.BytesIO(body), "QUERY_STRING": ""}
    return b"".join(tap(environ, lambda *_: None))


def kept(tap: SesEventTap, path: str) -> list[dict]:
    environ = {"PATH_INFO": path, "REQUEST_METHOD": "GET", "QUERY_STRING": "after=0"}
    return json.loads(b"".join(tap(environ, lambda *_: None)))


def sends(tap: SesEventTap) -> list[dict]:
    """The Send events kept (each followed by its recipients' feedback events)."""
    return [e for e in kept(tap, EVENTS_PATH) if e["eventType"] == "Send"]


@pytest.mark.parametrize(("request_", "subject", "destination", "digest", "text"), [
    (V1_SIMPLE, "Hello Ana", ["bo@example.net", "ana@example.net"], "d1", "Hi Ana,\nnews."),
    (V1_RAW, "Raw hello", ["zoe@example.net", "extra@example.net"], "d2", "Raw text body\n"),
    (V2_SIMPLE, "Hello Zoë", ["Zoë Durand <zoe@example.net>"], "d3", "Hi Zoë,\nthree new"),
    (V2_RAW, "Raw hello", ["zoe@example.net"], "d4", "Raw text body\n"),
], ids=["v1-simple", "v1-raw", "v2-simple", "v2-raw"])
def test_each_accepted_send_gets_its_send_event(request_, subject, destination, digest, text):
    tap = SesEventTap(FakeSes())
    post(tap, *request_)
    (event,) = sends(tap)
    assert event["eventType"] == "Send" and event["mail"]["messageId"] == "m-1"
    assert event["mail"]["commonHeaders"]["subject"] == subject
    assert event["mail"]["destination"] == destination
    assert event["mail"]["tags"] == {"postbag-key": [digest]}
    assert len(event["mail"]["timestamp"]) == len("2026-11-29T23:59:59.123Z")
    (mail,) = kept(tap, MAILS_PATH)
    assert mail["text"].startswith(text) and mail["subject"] == subject


def test_a_refused_send_publishes_nothing():
    tap = SesEventTap(FakeSes("400 Bad Request"))
    post(tap, *V2_SIMPLE)
    assert kept(tap, EVENTS_PATH) == [] and kept(tap, MAILS_PATH) == []


def test_other_requests_pass_untouched():
    ses = FakeSes()
    tap = SesEventTap(ses)
    post(tap, "/", b"Action=ListIdentities")
    assert ses.calls == 1 and kept(tap, EVENTS_PATH) == []


def test_a_send_is_stamped_when_it_arrives_and_when_answered():
    tap = SesEventTap(FakeSes())
    before = time.time()
    post(tap, *V2_SIMPLE)
    after = time.time()
    (mail,) = kept(tap, MAILS_PATH)
    (event,) = sends(tap)
    assert before <= mail["arrived"] <= mail["answered"] <= after
    assert event["mail"]["timestamp"] == mail["timestamp"]
    assert mail["timestamp"][:19] == time.strftime("%Y-%m-%dT%H:%M:%S",
                                                   time.gmtime(mail["arrived"]))


def test_each_recipient_gets_what_the_mailbox_simulator_brings_back():
    """Delivered, bounced (Permanent) or delivered then complained about, by the address,
    as moto decides for its own notifications; each event with the mail's tags."""
    tap = SesEventTap(FakeSes())
    post(tap, SESV2_SEND_PATH, json.dumps({
        "FromEmailAddress": "news@example.org",
        "Destination": {"ToAddresses": ["ok@example.net", "Bo <bounce+1@example.net>",
                                        "complaint@example.net"]},
        "Content": {"Simple": {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "t"}}}},
        "EmailTags": [{"Name": "postbag-job", "Value": "j1"}],
    }).encode())
    events = kept(tap, EVENTS_PATH)
    assert [e["eventType"] for e in events] == ["Send", "Delivery", "Bounce", "Delivery",
                                                "Complaint"]
    assert all(e["mail"]["tags"] == {"postbag-job": ["j1"]} for e in events)
    assert events[2]["bounce"]["bounceType"] == "Permanent"
    assert events[2]["bounce"]["bouncedRecipients"] == [{"emailAddress": "bounce+1@example.net"}]
    assert events[4]["complaint"]["complainedRecipients"] == [
        {"emailAddress": "complaint@example.net"}]
