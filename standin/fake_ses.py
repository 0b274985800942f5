"""SES as a fake in a process of its own, accepting every send after a latency.

``bench/fanout.py e2e`` wants SES answering after 50 ms at R = 500 mails a
second, on a 2-core machine that also runs moto and the sender's workers.
moto's server with its SES tap answering sends itself (the removed
``--answer-ses-sends``) spent 0.47 to 0.49 ms of CPU a send, 0.6 in the e2e
run (werkzeug, a thread per connection, a sleeping thread per send). This is
one asyncio loop: connections kept alive, each send's latency an
``asyncio.sleep``, so that sends wait side by side; 0.32 to 0.35 ms a send
(both measured alone, bench/README.md: "SES is a fake").

What it answers, in the shapes botocore parses:

- v2 ``SendEmail`` (``POST /v2/email/outbound-emails``, Simple or Raw) and
  v1 ``SendEmail`` / ``SendRawEmail`` (``POST /``): a fresh MessageId after the
  latency, with no identity or quota check. Each accepted send keeps its Send
  event (no feedback events: the benchmarks count Send events alone) and its
  mail as ``standin.server``'s SES tap does, stamped ``arrived`` when its
  request was read and ``answered`` after the latency, at
  ``GET /_standin/ses-events?after=N`` and ``GET /_standin/ses-mails?after=N``.
- v1 ``GetSendQuota`` and v2 ``GetAccount`` (``GET /v2/email/account``): the
  ``--quota``, with the recipients accepted so far as ``SentLast24Hours``.
- a send without content or without a recipient: 400, as SES refuses it;
  anything else: 400, naming what it does not support.
- a request it cannot read (not HTTP/1, a bad ``Content-Length``, a body that
  is not JSON, ``after=abc``): 400, and a body without a ``Content-Length``
  (``Transfer-Encoding: chunked``): 411, each answered before the connection
  is closed. A dropped connection would tell botocore to send again, as if SES
  had not got the send.

Run as ``python -m standin.fake_ses --latency-ms N --quota MAX24H,RATE
[--host 127.0.0.1] [--port 0]``: prints ``<endpoint> <pid>`` once it listens
and serves until SIGTERM or SIGINT. ``FakeSesServer`` runs it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
import uuid
from typing import Any, NamedTuple
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

from standin.aws import HOST
from standin.child import ChildServer
from standin.heap import freeze_long_lived
from standin.server import (
    EVENTS_PATH,
    MAILS_PATH,
    SESV2_SEND_PATH,
    Send,
    after_index,
    send_event,
    sent_mail,
    v1_send,
    v2_send,
)

ACCOUNT_PATH = "/v2/email/account"
V1_XMLNS = "http://ses.amazonaws.com/doc/2010-12-01/"


class Answer(NamedTuple):
    status: str
    content_type: str
    body: bytes


def _json(value: Any, status: str = "200 OK") -> Answer:
    return Answer(status, "application/json", json.dumps(value).encode())


def _xml(action: str, result: str) -> Answer:
    """A v1 (query API) answer: ``result`` inside ``<{action}Result>``."""
    return Answer("200 OK", "text/xml", (
        f'<{action}Response xmlns="{V1_XMLNS}"><{action}Result>{result}</{action}Result>'
        f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata>"
        f"</{action}Response>").encode())


def _error_v1(code: str, message: str, status: str = "400 Bad Request") -> Answer:
    """SES's error in the query API's (v1) shape."""
    return Answer(status, "text/xml", (
        f'<ErrorResponse xmlns="{V1_XMLNS}"><Error><Type>Sender</Type><Code>{code}</Code>'
        f"<Message>{escape(message)}</Message></Error>"
        f"<RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>").encode())


def _error_v2(message: str, status: str = "400 Bad Request") -> Answer:
    """SES's error in the REST API's (v2) shape."""
    return _json({"__type": "BadRequestException", "message": message}, status)


def _unreadable(method: str, target: str, message: str, status: str) -> Answer:
    """A request the fake cannot read, refused in its API's shape: a form posted to ``/``
    is the query API's (v1), anything else (a bad request line too) the REST API's."""
    if method == "POST" and target.partition("?")[0] == "/":
        return _error_v1("InvalidQueryParameter", message, status)
    return _error_v2(message, status)


def _missing(has_content: bool, send: Send) -> str:
    """What a send lacks that SES requires ('' if nothing)."""
    if not has_content:
        return "the send has no content"
    return "" if send.destinations else "the send has no recipient"


class LengthRequired(ValueError):
    """A request body of no stated length (``Transfer-Encoding``)."""


def _request_line(line: str) -> tuple[str, str, str]:
    """Method, target and version of an HTTP/1 request line."""
    parts = line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise ValueError(f"not an HTTP/1 request line: {line[:100]!r}")
    return parts[0], parts[1], parts[2]


def _content_length(headers: dict[str, str]) -> int:
    if "transfer-encoding" in headers:  # botocore sends SES a Content-Length
        raise LengthRequired(f"the fake SES reads a Content-Length, not Transfer-Encoding: "
                             f"{headers['transfer-encoding']}")
    length = int(headers.get("content-length") or 0)
    if length < 0:
        raise ValueError(f"a negative Content-Length: {length}")
    return length


class Ses:
    """What the fake keeps and answers. One asyncio loop touches it: no lock."""

    def __init__(self, latency_s: float, max_24_hours: float, max_rate: float):
        self.latency_s = latency_s
        self.max_24_hours = max_24_hours
        self.max_rate = max_rate
        self.events: list[dict[str, Any]] = []
        self.mails: list[dict[str, Any]] = []
        self.sent = 0  # recipients accepted, GetSendQuota's SentLast24Hours

    async def answer(self, method: str, target: str, body: bytes, arrived: float) -> Answer:
        path, _, query = target.partition("?")
        if method == "GET" and path in (EVENTS_PATH, MAILS_PATH):
            return _json((self.events if path == EVENTS_PATH else self.mails)[after_index(query):])
        if method == "GET" and path == ACCOUNT_PATH:
            return _json({"SendQuota": self._quota(), "SendingEnabled": True,
                          "ProductionAccessEnabled": True, "EnforcementStatus": "HEALTHY"})
        if method == "POST" and path == SESV2_SEND_PATH:
            return await self._send_v2(json.loads(body), arrived)
        if method != "POST" or path != "/":
            return _error_v2(f"the fake SES does not support {method} {path}")
        form = parse_qs(body.decode("utf-8"))
        action = form.get("Action", [""])[0]
        if action in ("SendEmail", "SendRawEmail"):
            return await self._send_v1(action, form, arrived)
        if action == "GetSendQuota":
            return _xml(action, "".join(f"<{name}>{value}</{name}>"
                                        for name, value in self._quota().items()))
        return _error_v1("InvalidAction", "the fake SES does not support "
                         f"{action or 'a request without an Action'}")

    async def _send_v2(self, request: dict[str, Any], arrived: float) -> Answer:
        content = request.get("Content", {})
        send = v2_send(request)
        # Simple or Raw: a Template, which SES also takes, is refused here as no content.
        missing = _missing(bool(content.get("Simple") or content.get("Raw", {}).get("Data")),
                           send)
        if missing:
            return _error_v2(missing)
        return _json({"MessageId": await self._accept(send, arrived)})

    async def _send_v1(self, action: str, form: dict[str, list[str]], arrived: float) -> Answer:
        has_content = (bool(form.get("RawMessage.Data")) if action == "SendRawEmail" else
                       "Message.Body.Text.Data" in form or "Message.Body.Html.Data" in form)
        send = v1_send(form)
        missing = _missing(has_content, send)
        if missing:
            return _error_v1("MissingParameter", missing)
        return _xml(action, f"<MessageId>{await self._accept(send, arrived)}</MessageId>")

    def _quota(self) -> dict[str, float]:
        return {"Max24HourSend": self.max_24_hours, "MaxSendRate": self.max_rate,
                "SentLast24Hours": float(self.sent)}

    async def _accept(self, send: Send, arrived: float) -> str:
        """Wait the latency, then keep the send's event and mail; its MessageId."""
        message_id = f"{uuid.uuid4()}-000000"
        await asyncio.sleep(self.latency_s)
        self.events.append(send_event(message_id, send, arrived))
        self.mails.append(sent_mail(message_id, send, arrived, time.time()))
        self.sent += len(send.destinations)
        return message_id

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One connection's requests, answered in turn until the client closes it, or
        until a request the fake cannot read (answered, then the connection closed)."""
        try:
            while await self._exchange(reader, writer):
                pass
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client went away (between requests, as keep-alive clients do)
        except asyncio.CancelledError:
            pass  # the server stops; Python 3.11's asyncio logs a cancelled one as an error
        finally:
            writer.close()

    async def _exchange(self, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> bool:
        """Read one request and write its answer; whether the connection stays open."""
        method = target = ""
        try:
            request_line, *lines = (await reader.readuntil(b"\r\n\r\n")).decode(
                "latin-1").split("\r\n")
            method, target, version = _request_line(request_line)
            headers = {name.strip().lower(): value.strip() for name, _, value in
                       (line.partition(":") for line in lines if line)}
            body = await reader.readexactly(_content_length(headers))
            answer = await self.answer(method, target, body, time.time())
            keep_open = version != "HTTP/1.0" and headers.get("connection", "").lower() != "close"
        except (asyncio.IncompleteReadError, ConnectionError):
            raise  # the client went away: nothing to answer
        except LengthRequired as exc:
            answer, keep_open = _unreadable(method, target, str(exc), "411 Length Required"), False
        except Exception as exc:
            # Answered, not dropped (see the module's docstring); where the next request
            # would start is unknown, so the connection is closed after it.
            answer, keep_open = _unreadable(
                method, target, f"the fake SES could not read the request: "
                f"{type(exc).__name__}: {exc}", "400 Bad Request"), False
        head = [f"HTTP/1.1 {answer.status}", f"Content-Type: {answer.content_type}",
                f"Content-Length: {len(answer.body)}", *(["Connection: close"] * (not keep_open))]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + answer.body)
        await writer.drain()
        return keep_open


async def serve(ses: Ses, host: str, port: int) -> None:
    """Listen on ``host:port``, print ``<endpoint> <pid>``, serve until SIGTERM or SIGINT."""
    # A job's senders open their connections together (4 workers of 32 threads).
    server = await asyncio.start_server(ses.handle, host, port, backlog=1024)
    stopped = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stopped.set)
    bound_host, bound_port = server.sockets[0].getsockname()[:2]
    print(f"http://{bound_host}:{bound_port} {os.getpid()}", flush=True)
    await stopped.wait()
    # Not wait_closed(): it waits for the kept-alive connections, which asyncio.run cancels.
    server.close()


class FakeSesServer(ChildServer):
    """The fake in a child process on 127.0.0.1; a context manager that always stops it
    (by its PID). ``quota`` is (mails a day, mails a second)."""

    def __init__(self, latency_ms: float, quota: tuple[float, float],
                 startup_timeout: float = 30.0):
        super().__init__([sys.executable, "-m", "standin.fake_ses", "--host", HOST,
                          "--latency-ms", str(latency_ms), "--quota", ",".join(map(str, quota))],
                         startup_timeout)


def main() -> None:
    parser = argparse.ArgumentParser(description="SES as a fake, accepting every send")
    parser.add_argument("--latency-ms", type=float, default=0.0,
                        help="answer every send this long after it arrived")
    parser.add_argument("--quota", required=True,
                        help="MAX24H,RATE: what GetSendQuota and GetAccount answer")
    parser.add_argument("--host", default=HOST)
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    args = parser.parse_args()
    max_24_hours, max_rate = (float(n) for n in args.quota.split(","))
    freeze_long_lived()
    asyncio.run(serve(Ses(args.latency_ms / 1000, max_24_hours, max_rate), args.host, args.port))


if __name__ == "__main__":
    main()
