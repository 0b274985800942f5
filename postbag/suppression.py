"""``postbag suppression list|add|remove``: the operator's view of the suppression list.

Reads and writes the stage's suppression table through the sender's own
``SuppressionStore``; a change is the operator's (``source: operator``,
``reason: manual``), newer than anything stored for that address and scope, and
marks the export so the minute's run rewrites ``suppressions/export.json``.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from chalicelib import fields
from chalicelib.config import Settings
from chalicelib.errors import BatchFormatError
from chalicelib.publisher import Marks
from chalicelib.suppression import ADD, REMOVE, Change, Entry, SuppressionStore, normalise
from postbag.aws import CommandError

SCOPE = re.compile(r"^(all|list:[a-z0-9][a-z0-9_-]{0,63})$")


def scope(value: str) -> str:
    if not SCOPE.match(value):
        raise CommandError(f"scope {value!r}: expected all or list:NAME (a-z, 0-9, _ and -)")
    return value


def address(value: str) -> str:
    try:
        return fields.bare_address(normalise(value), "ADDRESS", "the command line")
    except BatchFormatError as exc:
        raise CommandError(f"{value!r}: {exc.reason}") from exc


def change(dynamodb: Any, settings: Settings, action: str, where: str, who: str,
           now: datetime | None = None) -> bool:
    """Add or remove ``who`` in ``where``; whether the list changed."""
    store = SuppressionStore(dynamodb, settings.suppression_table)
    done = store.apply(Change(ADD if action == "add" else REMOVE, scope(where), address(who),
                              "manual", "operator", now or datetime.now(UTC)))
    if done:
        Marks(dynamodb, settings.ledger_table, settings.idempotency_namespace).mark(export=True)
    return done


def listing(dynamodb: Any, settings: Settings, as_json: bool) -> str:
    entries = SuppressionStore(dynamodb, settings.suppression_table).entries()
    if as_json:
        return json.dumps([e.document() for e in entries], indent=1)
    return "\n".join(_line(e) for e in entries)


def _line(entry: Entry) -> str:
    return f"{entry.address:<40} {entry.scope:<24} {entry.reason:<12} {entry.source:<9} {entry.at}"
