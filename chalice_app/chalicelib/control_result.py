"""How a cancel or reschedule request ended, told to the site (docs/scheduling.md).

``status/control/<batches|jobs>/<id>.json`` holds the result of the latest request
applied to that batch or job:

    {"version": 1, "kind": "batch"|"job", "id": .., "request": "cancel"|"reschedule",
     "outcome": "cancelled"|"rescheduled"|"too_late"|"superseded",
     "send_at": <RFC 3339 or null>, "requested_at": .., "applied_at": ..}

``send_at`` is to the second (as the sender holds times), ``requested_at`` and
``applied_at`` to the millisecond.

A request is applied when it arrives, or, when it came before its batch or job was held,
when the upload's event does (hold.py keeps it meanwhile). Writes are conditional on the
stored result's ``requested_at`` (in the object's metadata, to the millisecond): an older
request's result never replaces a newer one's, whatever order they are applied in.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from chalicelib.errors import StorageUnavailable
from chalicelib.schedule import iso
from chalicelib.store import put_unless

RESULTS_PREFIX = "status/control/"
_FOLDERS = {"batch": "batches", "job": "jobs"}
ATTEMPTS = 5


class Result(StrEnum):
    CANCELLED = "cancelled"
    RESCHEDULED = "rescheduled"
    TOO_LATE = "too_late"
    SUPERSEDED = "superseded"


def iso_ms(moment: datetime) -> str:
    """``moment`` in UTC to the millisecond, as control and inbox documents write times."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def to_ms(moment: datetime) -> datetime:
    """``moment`` cut to the millisecond: the precision requests are compared at."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def result_key(kind: str, ident: str) -> str:
    return f"{RESULTS_PREFIX}{_FOLDERS[kind]}/{ident}.json"


class Results:
    """Writes results; ``clock`` gives epoch seconds (the stand-in and tests inject theirs)."""

    def __init__(self, s3_client: Any, bucket: str, clock: Callable[[], float]):
        self._s3, self._bucket, self._clock = s3_client, bucket, clock

    def write(self, kind: str, ident: str, request: str, outcome: Result,
              send_at: datetime | None, requested_at: datetime) -> None:
        """Record ``outcome`` unless a later request's result is stored already. Raises
        ``StorageUnavailable`` (the request's event is retried; applying it again changes
        nothing)."""
        asked = iso_ms(requested_at)
        doc = {"version": 1, "kind": kind, "id": ident, "request": request,
               "outcome": outcome.value, "send_at": iso(send_at) if send_at else None,
               "requested_at": asked,
               "applied_at": iso_ms(datetime.fromtimestamp(self._clock(), UTC))}
        body = json.dumps(doc, separators=(",", ":")).encode()

        def keep(metadata: dict[str, str]) -> bool:
            return metadata.get("requested-at", "") > asked  # same format: ordered as text

        key = result_key(kind, ident)
        for _ in range(ATTEMPTS):
            if put_unless(self._s3, self._bucket, key, body, {"requested-at": asked}, keep):
                return
        raise StorageUnavailable(f"{key} kept changing while it was written")
