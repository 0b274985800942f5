"""moto's server, with what the stand-in adds where moto falls short.

- **SES's Send events.** moto's SES accepts mail but publishes no
  configuration-set events (PITFALLS.md). ``SesEventTap`` watches every
  ``SendEmail`` and ``SendRawEmail`` the server accepts and keeps the Send
  event SES would publish (its MessageId and message tags, as if every mail
  went through Postbag's configuration set). They are kept in the server, so
  a sender process that dies does not take them with it, as with SES; the
  stand-in's Lambda part (``lambda_runtime``) fetches them from
  ``GET /_standin/ses-events?after=N`` and delivers them to ``on_ses_event``
  as SNS notifications.
- **DynamoDB one request at a time.** moto 5.2's ``TransactWriteItems`` is not
  atomic under concurrent requests (PITFALLS.md): the server takes them in turn,
  as real DynamoDB's atomicity would, so that tests racing two senders test
  Postbag rather than that gap.

Run as ``python -m standin.server HOST PORT``; ``standin.aws.LocalAws`` does.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable
from email import policy
from email.parser import BytesParser
from typing import Any
from urllib.parse import parse_qs

EVENTS_PATH = "/_standin/ses-events"
_SEND_ACTIONS = (b"Action=SendEmail", b"Action=SendRawEmail")
_MESSAGE_ID = re.compile(rb"<MessageId>([^<]+)</MessageId>")

Wsgi = Callable[..., Iterable[bytes]]


def send_event(message_id: str, form: dict[str, list[str]]) -> dict[str, Any]:
    """The Send event SES publishes for an accepted mail, from the request's form fields."""
    tags: dict[str, list[str]] = {}
    for field, values in form.items():
        match = re.fullmatch(r"Tags\.member\.(\d+)\.Name", field)
        if match:
            value = form.get(f"Tags.member.{match.group(1)}.Value", [""])[0]
            tags.setdefault(values[0], []).append(value)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    return {"eventType": "Send",
            "mail": {"messageId": message_id, "timestamp": stamp,
                     "source": form.get("Source", [""])[0], "tags": tags,
                     "commonHeaders": {"subject": _subject(form)}},
            "send": {}}


def _subject(form: dict[str, list[str]]) -> str:
    """The Subject, as SES's events carry it in ``mail.commonHeaders``."""
    if "Message.Subject.Data" in form:
        return form["Message.Subject.Data"][0]
    raw = base64.b64decode(form.get("RawMessage.Data", [""])[0])
    return str(BytesParser(policy=policy.default).parsebytes(raw, headersonly=True)["Subject"])


class SesEventTap:
    """WSGI middleware keeping the Send event of every mail moto's SES accepted."""

    def __init__(self, app: Wsgi):
        self.app = app
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == EVENTS_PATH:
            after = int(parse_qs(environ.get("QUERY_STRING", "")).get("after", ["0"])[0])
            with self._lock:
                body = json.dumps(self.events[after:]).encode()
            start_response("200 OK", [("Content-Type", "application/json")])
            return [body]
        if environ.get("REQUEST_METHOD") != "POST":
            return self.app(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        request = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(request)
        if not any(action in request for action in _SEND_ACTIONS):
            return self.app(environ, start_response)
        status: list[str] = []

        def remember(code: str, headers: list, exc_info: Any = None) -> Any:
            status.append(code)
            return start_response(code, headers, exc_info)

        body = b"".join(self.app(environ, remember))
        match = _MESSAGE_ID.search(body)
        if status and status[0].startswith("200") and match:
            event = send_event(match.group(1).decode(), parse_qs(request.decode("utf-8")))
            with self._lock:
                self.events.append(event)
        return [body]


class SerialDynamoDb:
    """WSGI middleware letting one DynamoDB request at a time through."""

    def __init__(self, app: Wsgi):
        self.app = app
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        if not environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
            return self.app(environ, start_response)
        with self._lock:
            return [b"".join(self.app(environ, start_response))]


def application() -> Wsgi:
    """moto's server application with the stand-in's additions."""
    from moto.server import DomainDispatcherApplication, create_backend_app

    return SesEventTap(SerialDynamoDb(DomainDispatcherApplication(create_backend_app)))


def serve(host: str, port: int, app: Wsgi) -> None:
    from moto.server import MotoRequestHandler
    from werkzeug.serving import run_simple

    os.environ.setdefault("MOTO_PORT", str(port))
    run_simple(host, port, app, threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]), application())
