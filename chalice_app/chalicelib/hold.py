"""Held batches and jobs: one DynamoDB item each for their state, one S3 marker each as
the index of what falls due (docs/scheduling.md).

The item (ledger table, key ``<namespace>#held#<kind>#<id>``) says where the object is,
when it is due, its ``version`` (raised by each reschedule) and its state:

    held ──claim──▶ releasing ──finish──▶ released
      │  ╲reschedule (held again, version + 1)     ╲──give up──▶ failed
      └──cancel──▶ cancelled

A request that arrives before its batch or job was held is kept as an item without an
object (``object_key`` empty): ``cancelled`` for a cancel, ``pending`` (with the asked
times) for a reschedule. The upload's event then finds it and applies it: the request
is never lost, and its result is written then (control_result.py).

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

from chalicelib import dynamo
from chalicelib.control_result import Result, Results, iso_ms, to_ms
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
# Releases that fail (not transiently) before the item is given up: failed, logged and
# counted for the alarm, its marker gone (drain.py).
MAX_RELEASE_FAILURES = 5


class State(StrEnum):
    HELD = "held"
    RELEASING = "releasing"
    RELEASED = "released"
    CANCELLED = "cancelled"
    PENDING = "pending"  # a reschedule asked before the upload was held
    FAILED = "failed"  # given up by the drainer (its object gone, or it kept failing)


class Verdict(StrEnum):
    """What an upload's handler does with a batch or job it has just read."""

    SEND = "send"  # not held (no time, a time past), or released by the drainer
    HOLD = "hold"  # held until due: nothing more now
    PACED = "paced"  # a window the drainer is releasing: only it queues the chunks
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
    requested_at: datetime | None = None  # the last request applied: when it was asked

    @property
    def marker(self) -> str:
        return marker_key(self.due, self.kind, self.ident)

    @property
    def arrived(self) -> bool:
        """Whether its batch or job was uploaded (not a request's item waiting for it)."""
        return bool(self.key)


class HoldBook:
    """Held items and their markers; one per Lambda instance. ``clock`` returns epoch
    seconds (tests and the stand-in inject theirs)."""

    def __init__(self, dynamodb_client: Any, table: str, namespace: str, s3_client: Any,
                 bucket: str, clock: Callable[[], float] = time.time):
        self._dynamodb, self._table, self._namespace = dynamodb_client, table, namespace
        self._s3, self.bucket, self.clock = s3_client, bucket, clock
        self.results = Results(s3_client, bucket, clock)

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    # --- DynamoDB ------------------------------------------------------------------

    def _key(self, kind: str, ident: str) -> dict[str, Any]:
        return {KEY_ATTRIBUTE: {"S": f"{self._namespace}#held#{kind}#{ident}"}}

    def _call(self, what: str, method: str, **params: Any) -> Any:
        """``None`` when a condition failed; ``LedgerUnavailable`` for anything else."""
        return dynamo.unless_condition_fails(self._dynamodb, method, LedgerUnavailable,
                                             f"held items: {what}", TableName=self._table,
                                             **params)

    def get(self, kind: str, ident: str) -> Held | None:
        found = self._call(f"reading {kind} {ident}", "get_item", Key=self._key(kind, ident),
                           ConsistentRead=True) or {}
        return _held(kind, ident, found.get("Item"))

    def _transition(self, held: Held, to: State, extra: str = "",
                    values: dict[str, Any] | None = None,
                    names: dict[str, str] | None = None) -> Held | None:
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
            **({"ExpressionAttributeNames": names} if names else {}),
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
        return self._replayed(kind, ident, marker if state is State.HELD else None, bucket, key)

    def _replayed(self, kind: str, ident: str, wrote: str | None, bucket: str, key: str
                  ) -> Verdict:
        """An upload seen before (a replay, a continuation, a drainer's release), or one a
        request came before; ``wrote``: the marker this call wrote first, if it did."""
        held = self.get(kind, ident)
        if held is None:  # expired between the two calls: nothing holds it any more
            return Verdict.SEND
        if not held.arrived:
            verdict, held = self._arrive(held, bucket, key)
        else:
            verdict = _VERDICTS.get(held.state, Verdict.SEND)
            if verdict is Verdict.SEND and held.when.window is not None:
                verdict = Verdict.PACED  # releasing or released: the drainer's, paced
        if held.state is State.HELD:
            self._put_marker(held.marker)  # its marker, in case the first attempt stopped short
        if wrote is not None and (wrote != held.marker or held.state is not State.HELD
                                  and held.state is not State.RELEASING):
            self._delete_marker(wrote)  # a releasing item keeps its marker for the drainer
        return verdict

    def _arrive(self, held: Held, bucket: str, key: str) -> tuple[Verdict, Held]:
        """The upload a request came before: apply the request (a cancel: cancelled; a
        reschedule: held at, or released from, the asked time) and write its result."""
        asked = held.requested_at or self.now()
        where = {":bucket": {"S": bucket}, ":key": {"S": key}}
        if held.state is State.CANCELLED:
            self._call(f"cancelled {held.kind} {held.ident} arrived", "update_item",
                       Key=self._key(held.kind, held.ident),
                       UpdateExpression="SET #bucket = :bucket, object_key = :key",
                       ConditionExpression="object_key = :none",
                       ExpressionAttributeNames={"#bucket": "bucket"},
                       ExpressionAttributeValues={**where, ":none": {"S": ""}})
            self.results.write(held.kind, held.ident, "cancel", Result.CANCELLED, None, asked)
            return Verdict.CANCELLED, held
        now = self.now()
        due = max(held.when.due or now, now).replace(microsecond=0)
        state = State.HELD if held.when.window is not None or due > now else State.RELEASED
        if state is State.HELD:
            self._put_marker(marker_key(due, held.kind, held.ident))
        moved = self._transition(held, state, ", due_at = :due, #bucket = :bucket, "
                                 "object_key = :key", {":due": {"S": iso(due)}, **where},
                                 {"#bucket": "bucket"})
        if moved is None:  # another request or replay came first: as it is now
            verdict = self._replayed(held.kind, held.ident, None, bucket, key)
            return verdict, self.get(held.kind, held.ident) or held
        self.results.write(held.kind, held.ident, "reschedule", Result.RESCHEDULED,
                           held.when.due, asked)
        return (Verdict.HOLD if state is State.HELD else Verdict.SEND), moved

    def arrived_cancelled(self, kind: str, ident: str, bucket: str, key: str) -> None:
        """An upload cancelled before it was held (a job's own cancel object seen first):
        the result of a cancel kept for it, if one was."""
        held = self.get(kind, ident)
        if held is not None and not held.arrived and held.state is State.CANCELLED:
            self._arrive(held, bucket, key)

    def claim(self, marker: Marker, owner: str) -> Held | None:
        """The item ``marker`` names, claimed for release by ``owner`` (a drainer run), or
        ``None``: not due after all, released, cancelled, leased by another run, or a stale
        marker (removed)."""
        held = self.get(marker.kind, marker.ident)
        now = self.clock()
        if held is None or held.state not in (State.HELD, State.RELEASING):
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

    def _wait_for_upload(self, kind: str, ident: str, state: State, when: When,
                         requested_at: datetime) -> bool:
        """Keep a request that came before its upload was held (an item without an object,
        which ``admit`` applies); ``False`` when the upload's item came first after all."""
        now = int(self.clock())
        return self._call(f"keeping a request for {kind} {ident}", "put_item", Item={
            **self._key(kind, ident), "bucket": {"S": self.bucket}, "object_key": {"S": ""},
            "due_at": {"S": iso(self.now())}, "held_state": {"S": state}, "held_rev": {"N": "1"},
            "held_when": {"S": _encode(when)}, "held_asked": {"S": iso_ms(requested_at)},
            TTL_ATTRIBUTE: {"N": str(now + ITEM_TTL_SECONDS)},
        }, ConditionExpression="attribute_not_exists(#id)",
            ExpressionAttributeNames={"#id": KEY_ATTRIBUTE}) is not None

    def cancel(self, kind: str, ident: str, requested_at: datetime) -> Held | None:
        """Cancel a held item (or one cancelled before: as it is); ``None`` when it is not
        held (released already, given up: too late). Its marker goes; the handler records
        it cancelled.
        Unknown yet: the cancel is kept (an item not ``arrived``) for its upload."""
        held = self.get(kind, ident)
        if held is None:
            if self._wait_for_upload(kind, ident, State.CANCELLED, When(), requested_at):
                return self.get(kind, ident)
            return self.cancel(kind, ident, requested_at)  # its upload came first
        if held.state is State.CANCELLED:
            return held  # cancelled before (a replayed request): cancelled it stays
        if held.state not in (State.HELD, State.PENDING):
            return None
        if self._transition(held, State.CANCELLED, ", held_asked = :asked",
                            {":asked": {"S": iso_ms(requested_at)}}) is None:
            return self.cancel(kind, ident, requested_at)  # moved meanwhile: try again
        if held.arrived:
            self._delete_marker(held.marker)
        return held

    def reschedule(self, kind: str, ident: str, when: When, requested_at: datetime
                   ) -> Held | None:
        """Move a held item to ``when`` (earlier or later; a time past: the next drainer run);
        ``None`` when it is not held any more (released, cancelled). A request asked before
        the last one applied changes nothing (the held item as it is); one asked at the same
        millisecond with other times is taken as the later. Unknown yet: kept for its upload
        (an item not ``arrived``, ``pending``)."""
        held = self.get(kind, ident)
        asked = to_ms(requested_at)
        if held is None:
            if self._wait_for_upload(kind, ident, State.PENDING, when, asked):
                return self.get(kind, ident)
            return self.reschedule(kind, ident, when, requested_at)  # its upload came first
        if held.state not in (State.HELD, State.PENDING):
            return None
        if held.requested_at and (asked < held.requested_at or (
                asked == held.requested_at and held.when.document() == when.document())):
            return held
        due = max(when.due or self.now(), self.now()).replace(microsecond=0)
        marker = marker_key(due, kind, ident)
        if held.arrived:
            self._put_marker(marker)
        moved = self._transition(
            held, held.state, ", due_at = :due, held_when = :when, held_asked = :asked",
            {":due": {"S": iso(due)}, ":when": {"S": _encode(when)},
             ":asked": {"S": iso_ms(asked)}})
        if moved is None:
            # A claim, cancel or reschedule came first: the new marker is stale, removed
            # by the drainer if this attempt does not succeed.
            return self.reschedule(kind, ident, when, requested_at)
        if held.arrived and marker != held.marker:
            self._delete_marker(held.marker)
        return moved

    def release_failed(self, held: Held, owner: str, reason: str, final: bool = False) -> bool:
        """Count a release that failed (not transiently); ``True`` when the item is given
        up (``final``, or the ``MAX_RELEASE_FAILURES``-th): ``failed`` with ``reason``, its
        marker gone, so that the drainer stops trying."""
        counted = self._call(
            f"counting a failed release of {held.kind} {held.ident}", "update_item",
            Key=self._key(held.kind, held.ident),
            UpdateExpression="ADD release_failures :one SET failed_reason = :why",
            ConditionExpression="held_state = :releasing AND lease_owner = :owner",
            ReturnValues="ALL_NEW",
            ExpressionAttributeValues={":one": {"N": "1"}, ":why": {"S": reason[:1000]},
                                       ":releasing": {"S": State.RELEASING},
                                       ":owner": {"S": owner}})
        if counted is None:
            return False  # another drainer took it over: its business now
        failures = int(counted["Attributes"]["release_failures"]["N"])
        if not final and failures < MAX_RELEASE_FAILURES:
            return False
        self._call(f"giving up {held.kind} {held.ident}", "update_item",
                   Key=self._key(held.kind, held.ident),
                   UpdateExpression="SET held_state = :failed",
                   ConditionExpression="held_state = :releasing AND lease_owner = :owner",
                   ExpressionAttributeValues={":failed": {"S": State.FAILED},
                                              ":releasing": {"S": State.RELEASING},
                                              ":owner": {"S": owner}})
        self._delete_marker(held.marker)
        return True

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
                _asked(item.get("held_asked", {}).get("S", "")))


def _asked(text: str) -> datetime | None:
    """A stored ``requested_at`` (to the second in items written before milliseconds)."""
    return to_ms(datetime.fromisoformat(text.replace("Z", "+00:00"))) if text else None


_VERDICTS = {State.HELD: Verdict.HOLD, State.CANCELLED: Verdict.CANCELLED}


def _encode(when: When) -> str:
    return json.dumps(when.document(), separators=(",", ":"))
