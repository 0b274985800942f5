"""The benchmarks' fake SES (``standin.fake_ses``), through botocore as the sender calls it:
every send accepted after the latency, side by side, with its Send event and mail kept
as the stand-in's SES tap keeps them; the quota read back; anything else refused, and
a request it cannot read answered, never dropped."""

from __future__ import annotations

import http.client
import json
import os
import socket
import threading
import time
import urllib.request
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from conftest import fixture_bytes

from standin.fake_ses import FakeSesServer
from standin.job_run import sent_mails
from standin.server import EVENTS_PATH

pytestmark = pytest.mark.server

QUOTA = (50_000.0, 14.0)
# One attempt and a short read timeout: a request the fake leaves hanging fails the test.
CLIENT_CONFIG = Config(retries={"max_attempts": 1}, read_timeout=5, max_pool_connections=20)

RAW = fixture_bytes("ses/raw-hello.eml")
SIMPLE = {"Simple": {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "t"}}}}


def client(service: str, endpoint: str):
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing",
                        config=CLIENT_CONFIG)


def send_events(endpoint: str, after: int = 0) -> list[dict]:
    with urllib.request.urlopen(f"{endpoint}{EVENTS_PATH}?after={after}", timeout=5) as answer:
        return json.load(answer)


def tags(key: str) -> dict:
    return {"Tags": [{"Name": "postbag-key", "Value": key}]}


def v1_simple(endpoint: str, key: str) -> str:
    return client("ses", endpoint).send_email(
        Source="news@example.org",
        Destination={"ToAddresses": ["ana@example.net"], "BccAddresses": ["bo@example.net"]},
        Message={"Subject": {"Data": "Hello Ana"},
                 "Body": {"Text": {"Data": "Hi Ana,\nnews."}, "Html": {"Data": "<p>Hi</p>"}}},
        **tags(key))["MessageId"]


def v1_raw(endpoint: str, key: str) -> str:
    return client("ses", endpoint).send_raw_email(
        RawMessage={"Data": RAW}, Destinations=["extra@example.net"],
        **tags(key))["MessageId"]


def v2_simple(endpoint: str, key: str, to: tuple[str, ...] = ("Zoë Durand <zoe@example.net>",)
              ) -> str:
    return client("sesv2", endpoint).send_email(
        FromEmailAddress="news@example.org", Destination={"ToAddresses": list(to)},
        Content={"Simple": {"Subject": {"Data": "Hello Zoë"},
                            "Body": {"Text": {"Data": "Hi Zoë,\nthree new followers."}},
                            "Headers": [{"Name": "List-Unsubscribe",
                                         "Value": "<https://example.org/u>"}]}},
        EmailTags=tags(key)["Tags"])["MessageId"]


def v2_raw(endpoint: str, key: str) -> str:
    return client("sesv2", endpoint).send_email(
        Content={"Raw": {"Data": RAW}}, EmailTags=tags(key)["Tags"])["MessageId"]


@pytest.mark.parametrize(("send", "subject", "destination", "text"), [
    (v1_simple, "Hello Ana", ["bo@example.net", "ana@example.net"], "Hi Ana,\nnews."),
    (v1_raw, "Raw hello", ["zoe@example.net", "extra@example.net"], "Raw text body\n"),
    (v2_simple, "Hello Zoë", ["Zoë Durand <zoe@example.net>"], "Hi Zoë,\nthree new"),
    (v2_raw, "Raw hello", ["zoe@example.net"], "Raw text body\n"),
], ids=["v1-simple", "v1-raw", "v2-simple", "v2-raw"])
def test_each_send_is_accepted_with_its_send_event_and_mail(send, subject, destination, text):
    with FakeSesServer(latency_ms=10, quota=QUOTA) as ses:
        first, second = send(ses.endpoint, "d1"), send(ses.endpoint, "d2")
        events, mails = send_events(ses.endpoint), sent_mails(ses.endpoint)
    assert first != second
    assert [e["mail"]["messageId"] for e in events] == [first, second]
    assert [e["mail"]["tags"] for e in events] == [{"postbag-key": ["d1"]},
                                                   {"postbag-key": ["d2"]}]
    assert {e["eventType"] for e in events} == {"Send"}
    assert events[0]["mail"]["destination"] == destination
    assert events[0]["mail"]["commonHeaders"]["subject"] == subject
    assert [m["messageId"] for m in mails] == [first, second]
    assert mails[0]["subject"] == subject and mails[0]["text"].startswith(text)


def test_kept_events_and_mails_are_read_after_an_index():
    with FakeSesServer(latency_ms=0, quota=QUOTA) as ses:
        ids = [v2_simple(ses.endpoint, f"d{n}") for n in range(3)]
        assert [e["mail"]["messageId"] for e in send_events(ses.endpoint, after=1)] == ids[1:]
        assert [m["messageId"] for m in sent_mails(ses.endpoint, after=2)] == ids[2:]


def test_only_send_events_are_kept_no_feedback():
    """The tap would add a Bounce, Deliveries and a Complaint for these addresses."""
    with FakeSesServer(latency_ms=0, quota=QUOTA) as ses:
        v2_simple(ses.endpoint, "d1", ("bounce@example.net", "complaint@example.net",
                                        "ok@example.net"))
        events = send_events(ses.endpoint)
    assert [e["eventType"] for e in events] == ["Send"]


def test_a_send_is_stamped_on_arrival_and_answered_after_the_latency():
    with FakeSesServer(latency_ms=200, quota=QUOTA) as ses:
        before = time.time()
        v2_simple(ses.endpoint, "d1")
        after = time.time()
        (event,) = send_events(ses.endpoint)
        (mail,) = sent_mails(ses.endpoint)
    # The order, not wall-clock bounds: a loaded machine can stretch every step.
    assert before <= mail["arrived"]
    assert mail["arrived"] + 0.2 <= mail["answered"] <= after
    assert event["mail"]["timestamp"] == mail["timestamp"]
    assert mail["timestamp"][:19] == time.strftime("%Y-%m-%dT%H:%M:%S",
                                                   time.gmtime(mail["arrived"]))


def test_sends_wait_side_by_side_not_in_turn():
    with FakeSesServer(latency_ms=500, quota=QUOTA) as ses:
        sesv2 = client("sesv2", ses.endpoint)
        sesv2.get_account()  # connects, and loads the client's model, before the clock starts

        def send(n: int) -> None:
            sesv2.send_email(FromEmailAddress="news@example.org",
                             Destination={"ToAddresses": [f"u{n}@example.net"]},
                             Content=SIMPLE)

        threads = [threading.Thread(target=send, args=(n,)) for n in range(20)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
        assert len(send_events(ses.endpoint)) == 20
    # In turn, 20 sends would take 10 s; half of that leaves a loaded 2-core machine room.
    assert 0.5 <= elapsed < 5.0, elapsed


def test_requests_share_one_kept_alive_connection():
    with FakeSesServer(latency_ms=0, quota=QUOTA) as ses:
        address = urlsplit(ses.endpoint)
        connection = http.client.HTTPConnection(address.hostname, address.port, timeout=5)
        connection.connect()
        sock = connection.sock
        body = json.dumps({"FromEmailAddress": "news@example.org",
                           "Destination": {"ToAddresses": ["ana@example.net"]},
                           "Content": SIMPLE})
        answers = []
        for method, path, payload in [("POST", "/v2/email/outbound-emails", body),
                                      ("GET", EVENTS_PATH + "?after=0", None),
                                      ("GET", "/v2/email/account", None),
                                      ("POST", "/v2/email/outbound-emails", body)]:
            connection.request(method, path, payload)
            answer = connection.getresponse()
            answers.append((answer.status, json.loads(answer.read())))
            assert not answer.will_close and connection.sock is sock, path
        connection.close()
    assert [status for status, _ in answers] == [200] * 4
    assert answers[1][1][0]["mail"]["messageId"] == answers[0][1]["MessageId"]


def test_quota_and_account_give_the_configured_values_and_count_recipients():
    with FakeSesServer(latency_ms=0, quota=QUOTA) as ses:
        ses_v1, sesv2 = client("ses", ses.endpoint), client("sesv2", ses.endpoint)
        before = ses_v1.get_send_quota()
        v2_simple(ses.endpoint, "d1", ("a@example.net", "b@example.net", "c@example.net"))
        v1_simple(ses.endpoint, "d2")  # two recipients
        after = ses_v1.get_send_quota()
        account = sesv2.get_account()
    assert (before["Max24HourSend"], before["MaxSendRate"], before["SentLast24Hours"]) == (
        50_000.0, 14.0, 0.0)
    assert after["SentLast24Hours"] == 5.0
    assert account["SendQuota"] == {"Max24HourSend": 50_000.0, "MaxSendRate": 14.0,
                                    "SentLast24Hours": 5.0}
    assert account["SendingEnabled"] is True and account["ProductionAccessEnabled"] is True
    assert account["EnforcementStatus"] == "HEALTHY"


@pytest.mark.parametrize(("service", "call", "code", "named"), [
    ("ses", lambda c: c.list_identities(), "InvalidAction", "ListIdentities"),
    ("sesv2", lambda c: c.get_email_identity(EmailIdentity="example.org"),
     "BadRequestException", "GET /v2/email/identities/example.org"),
], ids=["v1", "v2"])
def test_an_unsupported_operation_gets_an_error_naming_it(service, call, code, named):
    with FakeSesServer(latency_ms=0, quota=QUOTA) as ses:
        with pytest.raises(ClientError) as raised:
            call(client(service, ses.endpoint))
    error = raised.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert error["Error"]["Code"] == code and named in error["Error"]["Message"]


@pytest.mark.parametrize(("service", "call", "code", "lacking"), [
    ("sesv2", lambda c: c.send_email(FromEmailAddress="news@example.org", Content=SIMPLE),
     "BadRequestException", "no recipient"),
    ("sesv2", lambda c: c.send_email(FromEmailAddress="news@example.org",
                                     Destination={"ToAddresses": ["ana@example.net"]},
                                     Content={}),
     "BadRequestException", "no content"),
    ("ses", lambda c: c.send_email(Source="news@example.org", Destination={},
                                   Message={"Subject": {"Data": "s"},
                                            "Body": {"Text": {"Data": "t"}}}),
     "MissingParameter", "no recipient"),
    ("ses", lambda c: c.send_raw_email(RawMessage={"Data": b""},
                                       Destinations=["ana@example.net"]),
     "MissingParameter", "no content"),
], ids=["v2-no-recipient", "v2-no-content", "v1-no-recipient", "v1-no-content"])
def test_a_send_without_a_recipient_or_content_is_refused(service, call, code, lacking):
    with FakeSesServer(latency_ms=0, quota=QUOTA) as ses:
        with pytest.raises(ClientError) as raised:
            call(client(service, ses.endpoint))
        assert send_events(ses.endpoint) == [] and sent_mails(ses.endpoint) == []
        assert client("ses", ses.endpoint).get_send_quota()["SentLast24Hours"] == 0.0
    error = raised.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert error["Error"]["Code"] == code and lacking in error["Error"]["Message"]


def exchange(endpoint: str, request: bytes) -> tuple[str, dict[str, str], bytes]:
    """``request`` sent whole on a new connection; the answer's status line, headers and
    body, read until the fake closes the connection (a socket timeout if it does not)."""
    address = urlsplit(endpoint)
    with socket.create_connection((address.hostname, address.port), timeout=5) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in
               (line.partition(":") for line in lines)}
    return status, headers, body


V2_SEND = b"POST /v2/email/outbound-emails HTTP/1.1\r\nHost: ses\r\n"


@pytest.mark.parametrize(("request_", "status", "named"), [
    (V2_SEND + b"Content-Length: 9\r\n\r\nnot json!", "400", "JSONDecodeError"),
    (b"HELLO\r\n\r\n", "400", "not an HTTP/1 request line"),
    (b"GET /_standin/ses-events?after=abc HTTP/1.1\r\n\r\n", "400", "'abc'"),
    (V2_SEND + b"Content-Length: nine\r\n\r\nnot json!", "400", "'nine'"),
    (V2_SEND + b"Content-Length: -9\r\n\r\n", "400", "negative Content-Length"),
    (V2_SEND + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
     "411 Length Required", "Transfer-Encoding: chunked"),
    (b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\n\xff\xfe", "400", "UnicodeDecodeError"),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
     "411 Length Required", "Transfer-Encoding: chunked"),
], ids=["v2-body-not-json", "bad-request-line", "after-not-a-number",
        "content-length-not-a-number", "negative-content-length", "v2-chunked",
        "v1-form-not-utf-8", "v1-chunked"])
def test_a_request_it_cannot_read_is_answered_then_closed(request_, status, named, capfd):
    with FakeSesServer(latency_ms=0, quota=QUOTA) as ses:
        answered, headers, body = exchange(ses.endpoint, request_)
        v2_simple(ses.endpoint, "d1")  # still serving
    assert answered.startswith(f"HTTP/1.1 {status}")
    assert headers["connection"] == "close"
    if request_.startswith(b"POST / "):  # a v1 (query API) form: SES's XML error
        assert b"<Code>InvalidQueryParameter</Code>" in body and named.encode() in body
    else:
        error = json.loads(body)
        assert error["__type"] == "BadRequestException" and named in error["message"]
    assert "Traceback" not in capfd.readouterr().err  # asyncio's, for a dropped connection


def test_the_server_is_its_own_process_stopped_by_its_pid():
    with FakeSesServer(latency_ms=0, quota=QUOTA) as ses:
        assert ses.pid != os.getpid() and ses.endpoint.startswith("http://127.0.0.1:")
        os.kill(ses.pid, 0)  # running
    with pytest.raises(ProcessLookupError):
        os.kill(ses.pid, 0)  # stopped and waited for
