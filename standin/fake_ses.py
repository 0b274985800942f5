"""SES as a fake in a process of its own, accepting every send after a latency.

``bench/fanout.py e2e`` wants SES answering after 50 ms at R = 500 mails a
second, on a 2-core machine that also runs moto and the sender's workers.
moto's server, even accepting sends in its SES tap, spent ~0.5 ms of CPU a
send (werkzeug, a thread per connection, a sleeping thread per send), ~0.6
in the e2e run. This is one asyncio loop: connections kept alive, each
send's latency an ``asyncio.sleep``, so that sends wait side by side.

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
- anything else: 400, naming what it does not support.

Run as ``python -m standin.fake_ses --latency-ms N --quota MAX24H,RATE
[--host 127.0.0.1] [--port 0]``: prints ``<endpoint> <pid>`` once it listens
and serves until SIGTERM or SIGINT. ``FakeSesServer`` does.
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

from standin.aws import HOST
from standin.child import ChildServer
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


def _unsupported_v1(action: str) -> Answer:
    """SES's error (query API) for an action the fake does not take."""
    return Answer("400 Bad Request", "text/xml", (
        f'<ErrorResponse xmlns="{V1_XMLNS}"><Error><Type>Sender</Type><Code>InvalidAction</Code>'
        f"<Message>the fake SES does not support {action or 'a request without an Action'}"
        f"</Message></Error><RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>").encode())


def _unsupported_v2(method: str, path: str) -> Answer:
    """SES's error (REST API) for an operation the fake does not take."""
    return _json({"__type": "BadRequestException",
                  "message": f"the fake SES does not support {method} {path}"}, "400 Bad Request")


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
            message_id = await self._accept(v2_send(json.loads(body)), arrived)
            return _json({"MessageId": message_id})
        if method != "POST" or path != "/":
            return _unsupported_v2(method, path)
        form = parse_qs(body.decode("utf-8"))
        action = form.get("Action", [""])[0]
        if action in ("SendEmail", "SendRawEmail"):
            message_id = await self._accept(v1_send(form), arrived)
            return _xml(action, f"<MessageId>{message_id}</MessageId>")
        if action == "GetSendQuota":
            return _xml(action, "".join(f"<{name}>{value}</{name}>"
                                        for name, value in self._quota().items()))
        return _unsupported_v1(action)

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
        """One connection's requests, answered in turn until the client closes it."""
        try:
            while True:
                request_line, *lines = (await reader.readuntil(b"\r\n\r\n")).decode(
                    "latin-1").split("\r\n")
                method, target, version = request_line.split(" ", 2)
                headers = {name.strip().lower(): value.strip() for name, _, value in
                           (line.partition(":") for line in lines if line)}
                if "transfer-encoding" in headers:  # botocore sends SES a Content-Length
                    break
                body = await reader.readexactly(int(headers.get("content-length") or 0))
                answer = await self.answer(method, target, body, time.time())
                close = version == "HTTP/1.0" or headers.get("connection", "").lower() == "close"
                head = [f"HTTP/1.1 {answer.status}", f"Content-Type: {answer.content_type}",
                        f"Content-Length: {len(answer.body)}", *(["Connection: close"] * close)]
                writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + answer.body)
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client went away (between requests, as keep-alive clients do)
        except asyncio.CancelledError:
            pass  # the server stops; Python 3.11's asyncio logs a cancelled one as an error
        finally:
            writer.close()


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
    asyncio.run(serve(Ses(args.latency_ms / 1000, max_24_hours, max_rate), args.host, args.port))


if __name__ == "__main__":
    main()
