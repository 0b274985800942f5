"""Held batches and jobs: one DynamoDB item each for their state, one S3 marker each as
the index of what falls due (docs/scheduling.md).

The item (ledger table, key ``<namespace>#held#<kind>#<id>``) says where the object is,
when it is due, its ``version`` (raised by each reschedule) and its state:

    held ──claim──▶ releasing ──finish──▶ released
      │  ╲reschedule (held again, version + 1)
      └──cancel──▶ cancelled

Every change is a conditional write on the state (and the version), so a drainer's
claim, a reschedule and a cancel arriving together have exactly one winner. A claim
takes a lease: a second drainer skips the item until the lease ends, and a drainer that
crashed after its claim is replaced once it ends (release is idempotent: the ledger's
keys, not this item, make each mail go once; docs/exactly-once.md).

The marker ``held/<due, UTC, to the second>/<kind>/<id>`` exists for the item's
current due time; S3 lists keys in order, so the drainer lists ``held/`` and stops at
the first key not yet due: it reads only what is due (and markers a drainer has yet to
remove). A reschedule writes its new marker before it changes the item, so the item's
due time always has one; a marker that no longer matches its item is stale and removed.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.errors import LedgerUnavailable
from chalicelib.ledger import KEY_ATTRIBUTE, TTL_ATTRIBUTE
from chalicelib.schedule import MAX_AHEAD, When, from_iso, iso
from chalicelib.store import s3_call

MARKER_PREFIX = "held/"
BATCH, JOB = "batch", "job"
# A claim's lease: longer than the drainer's Lambda timeout, so a live drainer's claim
# is never taken over; a crashed one's is, this long after.
LEASE_SECONDS = 300.0
# Items outlive their due time by this much (re-drives and late replays still find them).
ITEM_TTL_SECONDS = int(MAX_AHEAD.total_seconds()) + 30 * 24 * 3600
_CONFLICT = "ConditionalCheckFailedException"


class State(StrEnum):
    HELD = "held"
    RELEASING = "releasing"
    RELEASED = "released"
    CANCELLED = "cancelled"


class Verdict(StrEnum):
    """What an upload's handler does with a batch or job it has just read."""

    SEND = "send"  # not held (no time, a time past), or released by the drainer
    HOLD = "hold"  # held until due: nothing more now
    CANCELLED = "cancelled"  # record every mail cancelled, send none


@dataclass(frozen=True)
class Marker:
    key: str
    due: datetime
    kind: str
    ident: str

    @classmethod
    def parse(cls, key: str) -> Marker | None:
        """The marker named ``key``; ``None`` for a key that is not one."""
        parts = key.removeprefix(MARKER_PREFIX).split("/")
        if not key.startswith(MARKER_PREFIX) or len(parts) != 3 or parts[1] not in (BATCH, JOB):
            return None
        try:
            return cls(key, from_iso(parts[0]), parts[1], parts[2])
        except ValueError:
            return None


def marker_key(due: datetime, kind: str, ident: str) -> str:
    return f"{MARKER_PREFIX}{iso(due)}/{kind}/{ident}"


@dataclass(frozen=True)
class Held:
    """A held item as read."""

    kind: str
    ident: str
    bucket: str
    key: str  # the batch object or the job's manifest
    due: datetime
    state: State
    version: int
    when: When
    lease_until: float = 0.0
    requested_at: str = ""  # the last reschedule applied: its requested_at (iso)

    @property
    def marker(self) -> str:
        return marker_key(self.due, self.kind, self.ident)


class HoldBook:
    """Held items and their markers; one per Lambda instance. ``clock`` returns epoch
    seconds (tests and the stand-in inject theirs)."""

    def __init__(self, dynamodb_client: Any, table: str, namespace: str, s3_client: Any,
                 bucket: str, clock: Callable[[], float] = time.time):
        self._dynamodb, self._table, self._namespace = dynamodb_client, table, namespace
        self._s3, self.bucket, self.clock = s3_client, bucket, clock

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    # --- DynamoDB ------------------------------------------------------------------

    def _key(self, kind: str, ident: str) -> dict[str, Any]:
        return {KEY_ATTRIBUTE: {"S": f"{self._namespace}#held#{kind}#{ident}"}}

    def _call(self, what: str, method: str, **params: Any) -> Any:
        """``None`` when a condition failed; ``LedgerUnavailable`` for anything else."""
        try:
            return getattr(self._dynamodb, method)(TableName=self._table, **params)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == _CONFLICT:
                return None
            raise LedgerUnavailable(f"held items: {what}: {exc}") from exc
        except BotoCoreError as exc:
            raise LedgerUnavailable(f"held items: {what}: {exc}") from exc

    def get(self, kind: str, ident: str) -> Held | None:
        found = self._call(f"reading {kind} {ident}", "get_item", Key=self._key(kind, ident),
                           ConsistentRead=True) or {}
        return _held(kind, ident, found.get("Item"))

    def _transition(self, held: Held, to: State, extra: str = "",
                    values: dict[str, Any] | None = None) -> Held | None:
        """``held`` → ``to`` if nobody changed it since it was read: the item as it is now,
        or ``None``."""
        expression = "SET held_state = :to, held_rev = :next" + extra
        changed = self._call(
            f"{held.kind} {held.ident} {held.state} → {to}", "update_item",
            Key=self._key(held.kind, held.ident), UpdateExpression=expression,
            ConditionExpression="held_state = :from AND held_rev = :v", ReturnValues="ALL_NEW",
            ExpressionAttributeValues={":to": {"S": to}, ":from": {"S": held.state},
                                       ":v": {"N": str(held.version)},
                                       ":next": {"N": str(held.version + 1)}, **(values or {})},
        )
        return None if changed is None else _held(held.kind, held.ident, changed["Attributes"])

    # --- S3 markers ----------------------------------------------------------------

    def _put_marker(self, key: str) -> None:
        s3_call(f"writing {key}", self._s3.put_object, Bucket=self.bucket, Key=key, Body=b"")

    def _delete_marker(self, key: str) -> None:
        s3_call(f"deleting {key}", self._s3.delete_object, Bucket=self.bucket, Key=key)

    def due_markers(self) -> Iterator[Marker]:
        """Markers due now, earliest first; listing stops at the first one not due."""
        now = self.now()
        params = {"Bucket": self.bucket, "Prefix": MARKER_PREFIX}
        while True:
            page = s3_call("listing held markers", self._s3.list_objects_v2, **params)
            for entry in page.get("Contents", ()):
                marker = Marker.parse(entry["Key"])
                if marker is None:
                    continue
                if marker.due > now:
                    return
                yield marker
            if not page.get("IsTruncated"):
                return
            params["ContinuationToken"] = page["NextContinuationToken"]

    def remove_marker(self, marker: Marker) -> None:
        self._delete_marker(marker.key)

    # --- what handlers call --------------------------------------------------------

    def admit(self, kind: str, ident: str, bucket: str, key: str, when: When,
              always_hold: bool = False) -> Verdict:
        """An uploaded batch or job that carries a time: hold it (recording it once,
        whatever replays come) or let it go now. ``always_hold``: a window, which only
        the drainer paces, even when it has begun already."""
        due = when.due
        if due is None:
            return Verdict.SEND
        now = self.now()
        if due <= now and not always_hold:
            state, due = State.RELEASED, now
        else:
            state, due = State.HELD, max(due, now).replace(microsecond=0)
        marker = marker_key(due, kind, ident)
        if state is State.HELD:
            self._put_marker(marker)  # first: the item's due time always has its marker
        created = self._call(f"holding {kind} {ident}", "put_item", Item={
            **self._key(kind, ident), "bucket": {"S": bucket}, "object_key": {"S": key},
            "due_at": {"S": iso(due)}, "held_state": {"S": state}, "held_rev": {"N": "1"},
            "held_when": {"S": _encode(when)},
            TTL_ATTRIBUTE: {"N": str(int(self.clock()) + ITEM_TTL_SECONDS)},
        }, ConditionExpression="attribute_not_exists(#id)",
            ExpressionAttributeNames={"#id": KEY_ATTRIBUTE})
        if created is not None:
            return Verdict.HOLD if state is State.HELD else Verdict.SEND
        return self._replayed(kind, ident, marker if state is State.HELD else None)

    def _replayed(self, kind: str, ident: str, wrote: str | None) -> Verdict:
        """An upload seen before (a replay, a continuation, a drainer's release); ``wrote``:
        the marker this call wrote first, if it did."""
        held = self.get(kind, ident)
        if held is None:  # expired between the two calls: nothing holds it any more
            return Verdict.SEND
        if held.state is State.HELD:
            self._put_marker(held.marker)  # its marker, in case the first attempt stopped short
        done = held.state in (State.RELEASED, State.CANCELLED)
        if wrote is not None and (wrote != held.marker or done):
            self._delete_marker(wrote)  # a releasing item keeps its marker for the drainer
        return {State.HELD: Verdict.HOLD, State.CANCELLED: Verdict.CANCELLED}.get(
            held.state, Verdict.SEND)

    def claim(self, marker: Marker, owner: str) -> Held | None:
        """The item ``marker`` names, claimed for release by ``owner`` (a drainer run), or
        ``None``: not due after all, released, cancelled, leased by another run, or a stale
        marker (removed)."""
        held = self.get(marker.kind, marker.ident)
        now = self.clock()
        if held is None or held.state in (State.RELEASED, State.CANCELLED):
            self._delete_marker(marker.key)
            return None
        if held.marker != marker.key:
            self._delete_marker(marker.key)  # rescheduled: its marker is the other one
            return None
        if held.state is State.RELEASING and held.lease_until > now:
            return None  # another drainer's, alive
        lease = {":lease": {"N": str(now + LEASE_SECONDS)}, ":owner": {"S": owner}}
        if held.state is State.HELD:
            return self._transition(held, State.RELEASING,
                                    ", lease_until = :lease, lease_owner = :owner", lease)
        # A lease that ended: its drainer stopped; take it over.
        taken = self._call(
            f"taking over {marker.kind} {marker.ident}", "update_item",
            Key=self._key(marker.kind, marker.ident),
            UpdateExpression="SET lease_until = :lease, lease_owner = :owner",
            ConditionExpression="held_state = :releasing AND lease_until < :now",
            ReturnValues="ALL_NEW",
            ExpressionAttributeValues={**lease, ":releasing": {"S": State.RELEASING},
                                       ":now": {"N": str(now)}},
        )
        return None if taken is None else _held(marker.kind, marker.ident, taken["Attributes"])

    def finish(self, held: Held, owner: str) -> None:
        """The claimed item is wholly released: marked so, its marker removed."""
        self._call(f"releasing {held.kind} {held.ident}", "update_item",
                   Key=self._key(held.kind, held.ident), UpdateExpression="SET held_state = :done",
                   ConditionExpression="held_state = :releasing AND lease_owner = :owner",
                   ExpressionAttributeValues={":done": {"S": State.RELEASED},
                                              ":releasing": {"S": State.RELEASING},
                                              ":owner": {"S": owner}})
        self._delete_marker(held.marker)

    def pause(self, held: Held, owner: str) -> None:
        """Give the lease back (a window with chunks still to come, or trouble): the next
        drainer run goes on at once."""
        self._call(f"pausing {held.kind} {held.ident}", "update_item",
                   Key=self._key(held.kind, held.ident), UpdateExpression="SET lease_until = :zero",
                   ConditionExpression="lease_owner = :owner",
                   ExpressionAttributeValues={":zero": {"N": "0"}, ":owner": {"S": owner}})

    def cancel(self, kind: str, ident: str) -> Held | None:
        """Cancel a held item; ``None`` when it is not held (released already: too late;
        unknown; cancelled before). Its marker goes; the handler records it cancelled."""
        held = self.get(kind, ident)
        if held is None or held.state is not State.HELD:
            return None
        if self._transition(held, State.CANCELLED) is None:
            return self.cancel(kind, ident)  # rescheduled meanwhile: still held, try again
        self._delete_marker(held.marker)
        return held

    def reschedule(self, kind: str, ident: str, when: When, requested_at: datetime
                   ) -> Held | None:
        """Move a held item to ``when`` (earlier or later; a time past: the next drainer run);
        ``None`` when it is not held any more (released, cancelled) or unknown. A request
        asked before the last one applied changes nothing (the held item as it is)."""
        held = self.get(kind, ident)
        if held is None or held.state is not State.HELD:
            return None
        asked = iso(requested_at)
        if held.requested_at and asked <= held.requested_at:
            return held
        due = max(when.due or self.now(), self.now()).replace(microsecond=0)
        marker = marker_key(due, kind, ident)
        self._put_marker(marker)
        moved = self._transition(
            held, State.HELD, ", due_at = :due, held_when = :when, held_asked = :asked",
            {":due": {"S": iso(due)}, ":when": {"S": _encode(when)}, ":asked": {"S": asked}})
        if moved is None:
            # A claim, cancel or reschedule came first: the new marker is stale, removed
            # by the drainer if this attempt does not succeed.
            return self.reschedule(kind, ident, when, requested_at)
        if marker != held.marker:
            self._delete_marker(held.marker)
        return moved

    def pending(self) -> Iterator[Held]:
        """Every held item with a marker, due or not (``postbag schedule list``)."""
        params = {"Bucket": self.bucket, "Prefix": MARKER_PREFIX}
        while True:
            page = s3_call("listing held markers", self._s3.list_objects_v2, **params)
            for entry in page.get("Contents", ()):
                marker = Marker.parse(entry["Key"])
                held = marker and self.get(marker.kind, marker.ident)
                if held and held.marker == entry["Key"]:
                    yield held
            if not page.get("IsTruncated"):
                return
            params["ContinuationToken"] = page["NextContinuationToken"]


def new_owner() -> str:
    """A drainer run's name for its leases."""
    return uuid.uuid4().hex


def _held(kind: str, ident: str, item: dict[str, Any] | None) -> Held | None:
    if item is None:
        return None
    return Held(kind, ident, item["bucket"]["S"], item["object_key"]["S"],
                from_iso(item["due_at"]["S"]), State(item["held_state"]["S"]),
                int(item["held_rev"]["N"]),
                When.from_document(json.loads(item["held_when"]["S"])),
                float(item.get("lease_until", {}).get("N", "0")),
                item.get("held_asked", {}).get("S", ""))


def _encode(when: When) -> str:
    return json.dumps(when.document(), separators=(",", ":"))
