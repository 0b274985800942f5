"""When a batch or a job may go out: ``send_at``, ``send_between`` and reschedule requests.

Pure functions and values, no I/O: ``hold.py`` keeps held items, ``drain.py``
releases them, ``split.py`` paces a windowed job with ``WindowPlan``
(docs/scheduling.md). Every time is converted to UTC on the way in: a
``+01:00`` offset (a site's time zone, summer or winter) is one instant.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from chalicelib.errors import BatchFormatError
from chalicelib.formats import v1
from chalicelib.formats.document import Document, compile_schema, validated

# The furthest ahead a send may be asked for; both the plugin and the sender refuse beyond.
MAX_AHEAD = timedelta(days=90)
RESCHEDULE_NAME = "schedule.json"
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

_validate_reschedule = compile_schema("schedule-v1.schema.json")


def iso(moment: datetime) -> str:
    """``moment`` in UTC, to the second, as the sender writes times."""
    return moment.astimezone(UTC).strftime(_TIME_FORMAT)


def from_iso(text: str) -> datetime:
    """A time ``iso`` wrote."""
    return datetime.strptime(text, _TIME_FORMAT).replace(tzinfo=UTC)


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()

    def document(self) -> dict[str, str]:
        return {"start": iso(self.start), "end": iso(self.end)}


@dataclass(frozen=True)
class When:
    """A send time or a send window, in UTC; neither means now."""

    send_at: datetime | None = None
    window: Window | None = None

    @property
    def due(self) -> datetime | None:
        """When sending may begin; ``None``: now."""
        return self.window.start if self.window else self.send_at

    def document(self) -> dict[str, Any]:
        """As a job's status shows it."""
        return {"send_at": iso(self.send_at) if self.send_at else None,
                "send_between": self.window.document() if self.window else None}

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> When:
        """What ``document`` wrote."""
        window = doc.get("send_between")
        return cls(from_iso(doc["send_at"]) if doc.get("send_at") else None,
                   Window(from_iso(window["start"]), from_iso(window["end"])) if window else None)


def _not_too_far(moment: datetime, now: datetime, label: str, field: str) -> None:
    if moment > now + MAX_AHEAD:
        raise BatchFormatError(field, label, f"{iso(moment)} is more than {MAX_AHEAD.days} days "
                               f"ahead (the most a send may be held)")


def checked(send_at: datetime | None, between: tuple[datetime, datetime] | None,
            label: str, now: datetime) -> When:
    """Parsed times as a ``When`` in UTC; ``BatchFormatError`` naming the field for both at
    once, an empty or reversed window, or a time more than ``MAX_AHEAD`` after ``now``."""
    if send_at is not None and between is not None:
        raise BatchFormatError("send_between", label, "send_at and send_between exclude each other")
    if between is not None:
        start, end = (moment.astimezone(UTC) for moment in between)
        if end <= start:
            raise BatchFormatError("send_between.end", label, f"{iso(end)} is not after the "
                                   f"start, {iso(start)}")
        _not_too_far(end, now, label, "send_between.end")
        return When(window=Window(start, end))
    if send_at is not None:
        _not_too_far(send_at, now, label, "send_at")
        return When(send_at=send_at.astimezone(UTC))
    return When()


def parse_when(doc: Document, label: str, now: datetime) -> When:
    """A document's ``send_at`` / ``send_between`` (already through its schema), checked."""
    send_at, between = doc.get("send_at"), doc.get("send_between")
    return checked(
        None if send_at is None else v1.parse_time(send_at, label, "send_at"),
        None if between is None else (v1.parse_time(between["start"], label, "send_between.start"),
                                      v1.parse_time(between["end"], label, "send_between.end")),
        label, now)


def parse_reschedule(data: bytes, key: str, now: datetime) -> tuple[When, datetime]:
    """A reschedule request's bytes (``schedule-v1.schema.json``): the new ``When``, and
    when it was asked for (of two requests, the later asked wins, whatever their order
    of arrival)."""
    doc = validated(data, key, _validate_reschedule, whole="(request)")
    requested = v1.parse_time(doc["requested_at"], key, "requested_at").astimezone(UTC)
    return parse_when(doc, key, now), requested


@dataclass(frozen=True)
class WindowPlan:
    """How a windowed job is paced: ``chunks`` work items of at most ``chunk_rows`` rows,
    shared out evenly over ``slots`` minutes from ``start`` (the window's, or when it was
    planned if later): the drainer runs once a minute, and each run queues the chunks of
    the minutes begun. ``fits`` says whether the window holds the job at the rate and
    quota available when it was planned; one slot when it does not (all at once)."""

    start: datetime
    chunk_rows: int
    chunks: int
    slots: int
    fits: bool
    needed_rate: float
    available_rate: float

    def due_chunks(self, now: datetime) -> int:
        """How many chunks may be on the queue at ``now``."""
        if now < self.start:
            return 0
        slot = math.floor((now - self.start).total_seconds() / 60)
        return min(self.chunks, math.ceil((slot + 1) * self.chunks / self.slots))

    def document(self) -> dict[str, Any]:
        return {"start": iso(self.start), "fits": self.fits,
                "needed_rate": round(self.needed_rate, 3),
                "available_rate": round(self.available_rate, 3),
                "chunk_rows": self.chunk_rows, "chunks": self.chunks, "minutes": self.slots}

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> WindowPlan:
        return cls(from_iso(doc["start"]), doc["chunk_rows"], doc["chunks"], doc["minutes"],
                   doc["fits"], doc["needed_rate"], doc["available_rate"])


def plan_window(recipients: int, window: Window, now: datetime, rate: float,
                quota_left: float | None, max_chunk_rows: int,
                chunk_count: Callable[[int], int] | None = None) -> WindowPlan:
    """Chunks small enough that every minute of what is left of the window gets its share,
    the last minute's early enough to be sent at the rate before the end.

    ``rate``: the account's mails a second; ``quota_left``: what the 24-hour quota still
    takes (``None``: unknown or unlimited); ``chunk_count(rows)``: how many work items
    chunks of ``rows`` make (parts end in short chunks). A window that cannot hold the job
    at that rate sends as fast as allowed: every chunk due at once, the limiter pacing them."""
    start = max(window.start, now).replace(microsecond=0)
    count = chunk_count or (lambda rows: math.ceil(recipients / rows))
    seconds = max((window.end - start).total_seconds(), 1.0)
    available = rate if quota_left is None else min(rate, max(quota_left, 0.0) / seconds)
    needed = recipients / seconds
    fits = recipients == 0 or needed <= available
    if not fits or recipients == 0:
        rows = max(1, min(max_chunk_rows, recipients))
        return WindowPlan(start, rows, count(rows), 1, fits, needed, available)
    minutes = max(1, math.floor(seconds / 60))
    # A minute's share, cut into equal chunks no larger than the cap: 556 a minute with a
    # cap of 500 is two chunks of 278, not 500 then 56 (one minute twice another).
    share = math.ceil(recipients / minutes)
    rows = max(1, math.ceil(share / math.ceil(share / max_chunk_rows)))
    # The last minute used begins early enough for its share to go at the rate by the end.
    sending = share / rate if rate > 0 else 0.0
    slots = max(1, min(minutes, math.floor((seconds - sending) / 60) + 1))
    return WindowPlan(start, rows, count(rows), slots, fits, needed, available)
