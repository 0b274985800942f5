"""``postbag schedule list``, ``postbag reschedule`` and ``postbag cancel --batch``: held
batches and jobs seen and moved from the command line, through the same requests the
plugin writes (docs/scheduling.md). The sender applies them; this module only writes.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from chalicelib.config import Settings
from chalicelib.control import CONTROL_PREFIX, Request
from chalicelib.control_result import iso_ms
from chalicelib.errors import BatchFormatError
from chalicelib.hold import BATCH, HoldBook
from chalicelib.schedule import RESCHEDULE_NAME, iso, parse_reschedule
from postbag.aws import CommandError


def request_key(kind: str, ident: str, action: str) -> str:
    """Where a cancel or reschedule request for a held item goes (the shared contract)."""
    name = RESCHEDULE_NAME if action == "schedule" else "cancel"
    key = (f"{CONTROL_PREFIX}{ident}/{name}" if kind == BATCH else f"jobs/{ident}/{name}")
    if Request.parse(key) is None:
        raise CommandError(f"{ident!r} is not a batch or job id")
    return key


def listing(dynamodb: Any, s3: Any, settings: Settings, bucket: str, as_json: bool) -> str:
    """Every held item, earliest due first."""
    book = HoldBook(dynamodb, settings.ledger_table, settings.idempotency_namespace, s3, bucket)
    rows = [{"due": iso(held.due), "kind": held.kind, "id": held.ident,
             "state": held.state.value, **held.when.document()} for held in book.pending()]
    if as_json:
        return json.dumps(rows, indent=2)
    lines = []
    for row in rows:
        window = row["send_between"]
        when = f"between {window['start']} and {window['end']}" if window else "at send_at"
        lines.append(f"{row['due']}  {row['kind']:5}  {row['id']}  {row['state']}  {when}")
    return "\n".join(lines) or "nothing held"


def reschedule(s3: Any, bucket: str, kind: str, ident: str, send_at: str | None,
               between: tuple[str, str] | None, now: datetime | None = None) -> str:
    """Write a reschedule request, checked as the sender will check it; its key. Asked to
    the millisecond: of two requests in one second, the later still wins."""
    if kind == BATCH and between:
        raise CommandError("--between paces a notify job over a window: a batch is sent at a "
                           "time (--at)")
    now = now or datetime.now(UTC)
    document = {"version": 1, "send_at": send_at,
                "send_between": {"start": between[0], "end": between[1]} if between else None,
                "requested_at": iso_ms(now)}
    key = request_key(kind, ident, "schedule")
    body = json.dumps(document).encode()
    try:
        parse_reschedule(body, key, now)
    except BatchFormatError as exc:
        raise CommandError(str(exc)) from exc
    s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")
    return key


def cancel_batch(s3: Any, bucket: str, batch_id: str, now: datetime | None = None) -> str:
    """Write a held batch's cancel request; its key."""
    key = request_key(BATCH, batch_id, "cancel")
    marker = {"requested_at": iso_ms(now or datetime.now(UTC)), "by": "postbag cancel"}
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(marker).encode(),
                  ContentType="application/json")
    return key
