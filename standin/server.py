"""moto's server, with what the stand-in adds where moto falls short.

- **SES's Send events.** moto's SES accepts mail but publishes no
  configuration-set events (PITFALLS.md). ``SesEventTap`` watches every send
  the server accepts (v1 ``SendEmail`` and ``SendRawEmail``, v2
  ``SendEmail`` on ``/v2/email/outbound-emails``) and keeps the Send event
  SES would publish (its MessageId, timestamp to the millisecond,
  destinations and message tags, as if every mail went through Postbag's
  configuration set). The timestamp is when the send reached the server,
  before moto took it: SES counts its rate on arrival. The mails at
  ``/_standin/ses-mails`` keep that as ``arrived`` and moto's answer as
  ``answered`` (seconds since the epoch), as ``standin.fake_ses``'s do. They are kept in the
  server, so a sender process that dies does not take them with it, as with
  SES; the stand-in's Lambda part (``lambda_runtime``) fetches them from
  ``GET /_standin/ses-events?after=N`` and delivers them to ``on_ses_event``
  as SNS notifications. What each mail said (To, Subject, text part) is at
  ``GET /_standin/ses-mails?after=N``: moto keeps only the HTML of a mail
  that has both.
- **SES's feedback.** After each Send event the tap keeps what SES's mailbox
  simulator would bring back for each recipient, as moto's own v1 notifications
  decide it: a Permanent ``Bounce`` when the address contains ``bounce``, a
  ``Complaint`` (after its ``Delivery``) when it contains ``complaint``, a
  ``Delivery`` otherwise; with the mail's tags, so ``on_ses_event`` suppresses
  and counts them as it does SES's.
- **SES's latency** is not here: ``standin.fake_ses`` is SES as a fake
  answering after N ms, with its own Send events, for benchmarks, at a
  fraction of this server's CPU per send.
- **SES's quota.** moto's ``GetSendQuota`` answers a sandbox's 200 mails a day
  at 1/s whatever was sent; ``--ses-quota MAX24H,RATE`` makes it answer a
  production account's (``SentLast24Hours`` still counts what was sent).
- **DynamoDB one request at a time, transactions undone item by item.**
  moto 5.2's ``TransactWriteItems`` is not atomic under concurrent requests
  and deep-copies the whole table once per item of every transaction, to
  restore it if a condition fails (PITFALLS.md): with 30,000 ledger items a
  server grew past 19 GB. The server takes DynamoDB requests in turn, as real
  DynamoDB's atomicity would, and ``undo_log_transactions`` makes a cancelled
  transaction put back only the items it touched, copied before it wrote.

- **Lambda's reserved concurrency.** ``--reserved-concurrency N`` answers
  ``GetFunctionConcurrency`` with N for every function, as ``chalice deploy``
  leaves it: the sender reads it to share SES's rate, and the handlers run
  in-process here, so no function is stored in moto (whose
  ``/moto-api/data.json`` fails once one is).
- **Each REST router built once.** moto builds a service's router on its first
  request without a lock, once per request that arrives meanwhile
  (``serial_router_building``).
- **Short garbage collections.** What the server holds is frozen every few
  seconds (``standin.heap``), so that a full collection never stops it for a
  second holding a big job's records, as SES never stops.
- **Faster routing.** moto's dispatcher lists its package folder and tries
  hundreds of URL patterns for every request, under one lock, and werkzeug
  logs every request: the stand-in remembers which backend serves a host and
  logs nothing but errors, so that hundreds of requests a second get through
  (``bench/fanout.py e2e``). Connections stay open between requests
  (``keep_alive_handler``): werkzeug closes each one after one request.

Run as ``python -m standin.server HOST PORT [--ses-quota MAX24H,RATE]``;
``standin.aws.LocalAws`` does.
"""

from __future__ import annotations

import argparse
import base64
import copy
import io
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email import policy
from email.parser import BytesParser
from email.utils import parseaddr
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs

from standin.heap import freeze_long_lived

EVENTS_PATH = "/_standin/ses-events"
MAILS_PATH = "/_standin/ses-mails"
SESV2_SEND_PATH = "/v2/email/outbound-emails"
_V1_SEND_ACTIONS = (b"Action=SendEmail", b"Action=SendRawEmail")
_V1_MESSAGE_ID = re.compile(rb"<MessageId>([^<]+)</MessageId>")
# What the tap keeps of a mail's text part: enough to show it, not the whole mail.
TEXT_KEPT = 400

Wsgi = Callable[..., Iterable[bytes]]


@dataclass
class Send:
    """What a send request asked SES for, whichever API it came through."""

    source: str
    destinations: list[str]
    subject: str
    tags: dict[str, list[str]] = field(default_factory=dict)
    text: str = ""


def v1_send(form: dict[str, list[str]]) -> Send:
    """A v1 ``SendEmail`` or ``SendRawEmail`` request, from its form fields."""
    tags: dict[str, list[str]] = {}
    for name, values in form.items():
        match = re.fullmatch(r"Tags\.member\.(\d+)\.Name", name)
        if match:
            value = form.get(f"Tags.member.{match.group(1)}.Value", [""])[0]
            tags.setdefault(values[0], []).append(value)
    destinations = [
        values[0] for name, values in sorted(form.items())
        if re.fullmatch(r"(Destination\.(To|Cc|Bcc)Addresses|Destinations)\.member\.\d+", name)
    ]
    source = form.get("Source", [""])[0]
    if "Message.Subject.Data" in form:
        text = form.get("Message.Body.Text.Data", [""])[0]
        return Send(source, destinations, form["Message.Subject.Data"][0], tags, text)
    return _raw(source, destinations, base64.b64decode(form.get("RawMessage.Data", [""])[0]), tags)


def v2_send(body: dict[str, Any]) -> Send:
    """A v2 ``SendEmail`` request, from its JSON body."""
    tags: dict[str, list[str]] = {}
    for tag in body.get("EmailTags", []):
        tags.setdefault(tag["Name"], []).append(tag["Value"])
    destination = body.get("Destination", {})
    destinations = [a for kind in ("ToAddresses", "CcAddresses", "BccAddresses")
                    for a in destination.get(kind, [])]
    source = body.get("FromEmailAddress", "")
    content = body.get("Content", {})
    if "Raw" in content:
        return _raw(source, destinations, base64.b64decode(content["Raw"]["Data"]), tags)
    simple = content.get("Simple", {})
    text = simple.get("Body", {}).get("Text", {}).get("Data", "")
    return Send(source, destinations, simple.get("Subject", {}).get("Data", ""), tags, text)


def _raw(source: str, destinations: list[str], raw: bytes, tags: dict[str, list[str]]) -> Send:
    """A raw MIME send: SES reads the subject and recipients from the headers."""
    message = BytesParser(policy=policy.default).parsebytes(raw)
    listed = [str(a.addr_spec) for name in ("To", "Cc", "Bcc")
              for header in message.get_all(name, []) for a in header.addresses]
    part = message.get_body(("plain",))
    text = part.get_content() if part is not None else ""
    return Send(source or str(message["From"]), listed + destinations,
                str(message["Subject"] or ""), tags, text)


def _stamp(when: float) -> str:
    """SES's timestamps: ISO 8601, UTC, to the millisecond."""
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(when))
    return f"{seconds}.{int(when * 1000) % 1000:03d}Z"


def send_event(message_id: str, send: Send, when: float) -> dict[str, Any]:
    """The Send event SES publishes for an accepted mail."""
    return {"eventType": "Send",
            "mail": {"messageId": message_id, "timestamp": _stamp(when),
                     "source": send.source, "destination": send.destinations,
                     "tags": send.tags, "commonHeaders": {"subject": send.subject}},
            "send": {}}


def feedback_events(message_id: str, send: Send, when: float) -> list[dict[str, Any]]:
    """What SES's mailbox simulator brings back after a Send, recipient by recipient."""
    mail = {"messageId": message_id, "timestamp": _stamp(when), "source": send.source,
            "destination": send.destinations, "tags": send.tags}
    events: list[dict[str, Any]] = []
    for destination in send.destinations:
        address = parseaddr(destination)[1]
        if "bounce" in address.lower():
            events.append({"eventType": "Bounce", "mail": mail, "bounce": {
                "bounceType": "Permanent", "bounceSubType": "General", "timestamp": _stamp(when),
                "bouncedRecipients": [{"emailAddress": address}]}})
            continue
        events.append({"eventType": "Delivery", "mail": mail, "delivery": {
            "timestamp": _stamp(when), "recipients": [address]}})
        if "complaint" in address.lower():
            events.append({"eventType": "Complaint", "mail": mail, "complaint": {
                "timestamp": _stamp(when), "complainedRecipients": [{"emailAddress": address}]}})
    return events


def sent_mail(message_id: str, send: Send, arrived: float, answered: float) -> dict[str, Any]:
    """What the stand-in shows of a mail: To, Subject and the start of its text part, and
    when the send arrived and was answered."""
    return {"messageId": message_id, "timestamp": _stamp(arrived), "arrived": arrived,
            "answered": answered, "destination": send.destinations,
            "subject": send.subject, "text": send.text[:TEXT_KEPT]}


def after_index(query: str) -> int:
    """The ``after=N`` of a request for kept events or mails: how many the caller has."""
    return int(parse_qs(query).get("after", ["0"])[0])


class SesEventTap:
    """WSGI middleware keeping the Send event of every mail moto's SES accepted."""

    def __init__(self, app: Wsgi):
        self.app = app
        self.events: list[dict[str, Any]] = []
        self.mails: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO")
        if path in (EVENTS_PATH, MAILS_PATH):
            with self._lock:
                kept = self.events if path == EVENTS_PATH else self.mails
                body = json.dumps(kept[after_index(environ.get("QUERY_STRING", "")):]).encode()
            start_response("200 OK", [("Content-Type", "application/json")])
            return [body]
        if environ.get("REQUEST_METHOD") != "POST":
            return self.app(environ, start_response)
        arrived = time.time()
        length = int(environ.get("CONTENT_LENGTH") or 0)
        request = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(request)
        v2 = path == SESV2_SEND_PATH
        if not v2 and not any(action in request for action in _V1_SEND_ACTIONS):
            return self.app(environ, start_response)
        status: list[str] = []

        def remember(code: str, headers: list, exc_info: Any = None) -> Any:
            status.append(code)
            return start_response(code, headers, exc_info)

        body = b"".join(self.app(environ, remember))
        if status and status[0].startswith("200"):
            self._keep(request, body, v2, arrived)
        return [body]

    def _keep(self, request: bytes, answer: bytes, v2: bool, arrived: float) -> None:
        answered = time.time()
        if v2:
            message_id = json.loads(answer).get("MessageId")
            send = v2_send(json.loads(request))
        else:
            match = _V1_MESSAGE_ID.search(answer)
            message_id = match.group(1).decode() if match else None
            send = v1_send(parse_qs(request.decode("utf-8")))
        if not message_id:
            return
        with self._lock:
            self.events.append(send_event(message_id, send, arrived))
            self.events += feedback_events(message_id, send, arrived)
            self.mails.append(sent_mail(message_id, send, arrived, answered))


_CONCURRENCY_PATH = re.compile(r"^/2019-09-30/functions/[^/]+/concurrency$")


class ReservedConcurrency:
    """WSGI middleware: every function's ``GetFunctionConcurrency`` answers ``reserved``."""

    def __init__(self, app: Wsgi, reserved: int):
        self.app = app
        self.reserved = reserved

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") == "GET" and _CONCURRENCY_PATH.match(
                environ.get("PATH_INFO", "")):
            start_response("200 OK", [("Content-Type", "application/json")])
            return [json.dumps({"ReservedConcurrentExecutions": self.reserved}).encode()]
        return self.app(environ, start_response)


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


class _UndoLog:
    """The items one transaction touches, each copied before it writes: what a
    cancelled transaction puts back (nothing else in the table is touched)."""

    def __init__(self, backend: Any, transact_items: list[dict[str, Any]]):
        from moto.dynamodb.models.dynamo_type import DynamoType

        self._saved: list[tuple[Any, Any, Any, Any]] = []  # (table, hash, range, item or None)
        for entry in transact_items:
            op: dict[str, Any] = next(iter(entry.values()), {})
            table = backend.tables.get(op.get("TableName", ""))
            if table is None:
                continue  # moto refuses the transaction before it writes anything
            attrs: dict[str, Any] = op["Item"] if "Item" in op else op.get("Key", {})
            if table.hash_key_attr not in attrs:
                continue  # refused too: nothing written for this entry
            hash_key = DynamoType(attrs[table.hash_key_attr])
            range_key = None
            if table.range_key_attr is not None:
                if table.range_key_attr not in attrs:
                    continue
                range_key = DynamoType(attrs[table.range_key_attr])
            current = table.get_item(hash_key, range_key)
            self._saved.append((table, hash_key, range_key, copy.deepcopy(current)))

    def restore(self) -> None:
        for table, hash_key, range_key, item in reversed(self._saved):
            items = table.items[hash_key] if range_key is not None else table.items
            key = range_key if range_key is not None else hash_key
            if item is None:
                items.pop(key, None)
            else:
                items[key] = item
            if range_key is not None and not table.items[hash_key]:
                del table.items[hash_key]


def undo_log_transactions() -> None:
    """Make moto's ``TransactWriteItems`` undo a cancelled transaction from an undo log
    of the items it touched, instead of from a deep copy of the whole table per item.

    moto's own rollback then puts back the same table object (its "copy" is
    the table itself), and the undo log puts back the items. Safe only with one
    DynamoDB request at a time (``SerialDynamoDb``), which the stand-in ensures.
    """
    from moto.dynamodb import models
    from moto.dynamodb.models.table import Table

    if getattr(models.DynamoDBBackend.transact_write_items, "undo_logged", False):
        return
    original = models.DynamoDBBackend.transact_write_items

    def deepcopy(value: Any, memo: dict[int, Any] | None = None) -> Any:
        return value if isinstance(value, Table) else copy.deepcopy(value, memo)

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        undo = _UndoLog(self, transact_items)
        try:
            original(self, transact_items)
        except Exception:
            undo.restore()
            raise

    transact_write_items.undo_logged = True  # type: ignore[attr-defined]
    # moto's module copies tables through its ``copy`` name; an item is still copied.
    models.copy = SimpleNamespace(deepcopy=deepcopy)  # type: ignore[assignment]
    models.DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]


def cached_condition_parsing(size: int = 4096) -> None:
    """Make moto parse each distinct DynamoDB condition expression once.

    moto lexes a condition with dozens of regular expressions each time it
    meets one, three times per item of a transaction: two thirds of the
    ledger's 80-item claim. The same expression, names and values give the
    same tree (its nodes are not changed when evaluated), so the tree is kept,
    with the names and values the parser noted as used (moto checks them).
    """
    from moto.dynamodb.comparisons import ConditionExpressionParser

    if getattr(ConditionExpressionParser.parse, "cached", False):
        return
    original = ConditionExpressionParser.parse
    trees: dict[str, tuple[Any, list[str], list[str]]] = {}
    lock = threading.Lock()

    def parse(self: Any) -> Any:
        key = json.dumps([self.condition_expression, self.expression_attribute_names,
                          self.expression_attribute_values], sort_keys=True)
        with lock:
            kept = trees.get(key)
        if kept is None:
            tree = original(self)  # an invalid expression raises, and is not kept
            kept = (tree, list(self.expr_attr_names_found), list(self.expr_attr_values_found))
            with lock:
                if len(trees) >= size:
                    trees.clear()
                trees[key] = kept
        self.expr_attr_names_found = list(kept[1])
        self.expr_attr_values_found = list(kept[2])
        return kept[0]

    parse.cached = True  # type: ignore[attr-defined]
    ConditionExpressionParser.parse = parse  # type: ignore[method-assign]


# moto.core.utils' functools caches of botocore's files, reached by requests.
MOTO_MODEL_CACHES = ("get_service_model", "get_pagination_model",
                     "service_name_from_moto_package_name")


def _built_once(build: Callable[[str], Any], lock: threading.RLock) -> Callable[[str], Any]:
    """``build``, each name built under ``lock`` by the first caller, then read without it
    (a dict's lookup and store are atomic)."""
    built: dict[str, Any] = {}

    def get(name: str) -> Any:
        if name not in built:
            with lock:
                if name not in built:
                    built[name] = build(name)
        return built[name]

    return get


def serial_router_building() -> None:
    """Make moto load each service's model, and build each REST service's request
    router, once, whichever request asks first.

    On a service's first request moto loads its botocore model, and for a REST
    service compiles its URL map (~75 ms of CPU for SES v2 in all), cached by
    ``functools.cache``, which does not lock: every request that arrives before
    the first build ends builds its own. A notify job's first sends arrive
    together (4 workers of 32 threads in ``make demo``), and 128 builds at once
    held the server for over a minute: the sends timed out, and those whose
    Send event came later than the evidence window were sent again
    (docs/exactly-once.md), as SES never holds a send.

    Builds take one reentrant lock (a router's build loads its model); what is
    built is read without it, so later requests take no lock. The same goes
    for each of ``MOTO_MODEL_CACHES``, which also holds a paged list's
    pagination model and an error answer's service (~20 ms each; a burst of
    rejected sends reaches the latter), replaced under the names requests call
    it by in ``moto.core.responses``, ``routing`` and ``utils`` (backends,
    imported later, take the replacement).
    """
    from moto.core import responses, routing, utils

    if getattr(responses.get_service_router, "serial", False):
        return
    lock = threading.RLock()
    for name in MOTO_MODEL_CACHES:
        once = _built_once(getattr(utils, name), lock)
        for module in (responses, routing, utils):
            if hasattr(module, name):
                setattr(module, name, once)
    get_service_router = _built_once(routing.get_service_router, lock)
    protocol_router = routing.ServiceOperationRouter._get_router

    def _get_router(self: Any, protocol: str) -> Any:
        routers = self._routers
        if protocol in routers:
            return routers[protocol]
        with lock:
            return protocol_router(self, protocol)

    get_service_router.serial = True  # type: ignore[attr-defined]
    responses.get_service_router = get_service_router  # type: ignore[assignment]
    routing.ServiceOperationRouter._get_router = _get_router  # type: ignore[method-assign]


def send_quota(max_24_hours: float, max_rate: float) -> None:
    """Make moto's ``GetSendQuota`` answer this quota (moto fixes 200 a day at 1/s)."""
    from moto.ses import models

    def quota(self: Any, sent: int) -> None:
        self.sent_last24_hours = sent
        self.max24_hour_send = max_24_hours
        self.max_send_rate = max_rate

    models.SESQuota.__init__ = quota  # type: ignore[method-assign]


def dispatcher() -> Wsgi:
    """moto's dispatcher, remembering which backend serves each host it has seen."""
    from moto.server import DomainDispatcherApplication, create_backend_app

    class Remembering(DomainDispatcherApplication):
        def __init__(self) -> None:
            super().__init__(create_backend_app)
            self._backends: dict[str | None, Any] = {}

        def get_backend_for_host(self, host: str | None) -> Any:
            # Called under the dispatcher's lock: the dict needs none of its own.
            if host not in self._backends:
                self._backends[host] = super().get_backend_for_host(host)
            return self._backends[host]

    return Remembering()


def application(reserved_concurrency: int = 0) -> Wsgi:
    """moto's server application with the stand-in's additions."""
    undo_log_transactions()
    cached_condition_parsing()
    serial_router_building()
    app = SesEventTap(SerialDynamoDb(dispatcher()))
    return ReservedConcurrency(app, reserved_concurrency) if reserved_concurrency else app


def keep_alive_handler() -> type:
    """moto's request handler, keeping connections open between requests.

    werkzeug answers every request ``Connection: close``, as its server cannot
    tell where an unread request body ends, and after each answer reads the
    socket dry; so every botocore call paid a new connection and a new server
    thread. This handler reads each body whole before the application sees
    it, shows werkzeug's after-answer read an empty stream, and keeps the
    connection open when it could (a body with a length, no error half-way);
    else it closes, as before.
    """
    from moto.server import MotoRequestHandler

    class KeepAlive(MotoRequestHandler):
        # An answer's headers and body are two writes: with Nagle's algorithm the body
        # waits for the client's delayed ACK of the headers, 40 ms a request.
        disable_nagle_algorithm = True
        _socket_rfile: Any = None

        def make_environ(self) -> dict[str, Any]:
            environ: dict[str, Any] = super().make_environ()
            self._drained = "chunked" not in self.headers.get("Transfer-Encoding", "").lower()
            if self._drained:
                length = int(self.headers.get("Content-Length") or 0)
                environ["wsgi.input"] = io.BytesIO(self.rfile.read(length) if length else b"")
                self._socket_rfile, self.rfile = self.rfile, io.BytesIO()
            return environ

        def run_wsgi(self) -> None:
            try:
                super().run_wsgi()
            finally:
                if self._socket_rfile is not None:
                    self.rfile, self._socket_rfile = self._socket_rfile, None

        def send_header(self, keyword: str, value: str) -> None:
            drained = getattr(self, "_drained", False)  # False: refused before a request
            if keyword.lower() == "connection" and value == "close" and drained:
                return  # http.server's own rules decide (HTTP/1.1: open unless asked)
            super().send_header(keyword, value)

    return KeepAlive


def serve(host: str, port: int, app: Wsgi) -> None:
    import logging

    from werkzeug.serving import run_simple

    os.environ.setdefault("MOTO_PORT", str(port))
    # A log line per request costs more than some requests.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    freeze_long_lived()
    run_simple(host, port, app, threaded=True, request_handler=keep_alive_handler())


def main() -> None:
    parser = argparse.ArgumentParser(description="moto's server with the stand-in's additions")
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--ses-quota", help="MAX24H,RATE: what GetSendQuota answers")
    parser.add_argument("--reserved-concurrency", type=int, default=0,
                        help="what GetFunctionConcurrency answers for every function")
    args = parser.parse_args()
    if args.ses_quota:
        max_24_hours, max_rate = (float(n) for n in args.ses_quota.split(","))
        send_quota(max_24_hours, max_rate)
    serve(args.host, args.port, application(args.reserved_concurrency))


if __name__ == "__main__":
    main()
