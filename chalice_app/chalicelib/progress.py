"""How far a notify job has got: one DynamoDB item per job, and ``status.json`` beside it.

The item lives in the ledger's table (key ``<namespace>#job#<job_id>``, the
same TTL attribute): counters that the splitter and every fan-out chunk ADD
to atomically, so concurrent chunks never lose each other's counts. A chunk's
counts are added in the same transaction as its tally mark (``tally.py``), so
every row is counted once however often its work item is delivered, and a
count is never given back. After each chunk the whole status is written to
``jobs/<job_id>/status.json`` for WordPress and ``postbag status`` to read
without DynamoDB credentials: each transaction raises the item's ``revision``,
and a status is written only over an older one (S3's conditional writes), so
the file never goes back. A failed write undoes no count: the fan-out's
message is delivered again, counts nothing twice and writes the status.
Costs per chunk (500 mails by default), never per mail: the tally's read and
transaction, one GetItem, one HeadObject and one PutObject.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib import dynamo
from chalicelib.config import JOBS_PREFIX
from chalicelib.errors import LedgerUnavailable, StorageUnavailable
from chalicelib.formats.document import load_object
from chalicelib.ledger import KEY_ATTRIBUTE, TTL_ATTRIBUTE
from chalicelib.model import NotifyJob
from chalicelib.outcome import json_bytes
from chalicelib.store import BatchGone, get_object, is_missing, put_unless, read_body, unavailable

# What a chunk's mails came to; counted per job (statuses as receipts spell them).
STATUSES = ("sent", "duplicate", "failed", "suppressed", "cancelled")
QUEUED, SENDING, DONE, CANCELLED = "queued", "sending", "done", "cancelled"
SCHEDULED = "scheduled"  # held until its send_at or its window (hold.py): no item yet
# The revision a scheduled job's status.json is written at: below any counted one, so the
# first count replaces it and a late scheduled write never replaces a count.
SCHEDULED_REVISION = -1
# How long a job's item outlives its start: long after any retry, re-drive or look.
ITEM_TTL_SECONDS = 30 * 24 * 3600
# How long an instance trusts its last look for a job's cancel object: a cancel
# takes effect within this, and a chunk costs no HEAD request of its own.
CANCEL_CHECK_SECONDS = 5.0
# Tries at writing status.json over the one read, when another chunk wrote it meanwhile.
PUBLISH_ATTEMPTS = 5
_COUNTERS = ("total", "chunks", "enqueued", "chunks_done", "revision", *STATUSES)
# What SES's events said about the job's mails (feedback.py), counted as they come.
FEEDBACK = ("delivered", "bounced", "soft_bounced", "complained", "rejected",
            "rendering_failed", "opens", "clicks")


def status_key(job_id: str) -> str:
    return f"{JOBS_PREFIX}{job_id}/status.json"


def cancel_key(job_id: str) -> str:
    return f"{JOBS_PREFIX}{job_id}/cancel"


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _number(value: float) -> dict[str, str]:
    return {"N": str(value)}


def _plain(item: Mapping[str, Any]) -> dict[str, Any]:
    """A DynamoDB item's numbers and strings as Python values."""
    plain: dict[str, Any] = {}
    for name, value in item.items():
        if "N" in value:
            number = float(value["N"])
            plain[name] = int(number) if number.is_integer() else number
        elif "S" in value:
            plain[name] = value["S"]
    return plain


def _filled(item: Mapping[str, Any]) -> dict[str, Any]:
    return {name: 0 for name in _COUNTERS} | dict(item)


def _state(item: Mapping[str, Any]) -> str:
    """``item`` as ``_filled`` makes it."""
    if item["chunks_done"] >= item["chunks"]:
        return CANCELLED if item["cancelled"] else DONE
    started = item["chunks_done"] or any(item[status] for status in STATUSES)
    return SENDING if started else QUEUED


def document(item: Mapping[str, Any], now: float) -> dict[str, Any]:
    """The status document of a job's item (as ``_plain`` makes it) at ``now``."""
    item = _filled(item)
    state = _state(item)
    settled = sum(item[status] for status in STATUSES)
    remaining = 0 if state in (DONE, CANCELLED) else max(item["total"] - settled, 0)
    started = item.get("started_at", now)
    mailed = settled - item["cancelled"]
    rate = mailed / (now - started) if now > started else 0.0
    doc = {
        "job_id": item.get("job_id"),
        "state": state,
        "recipients": item["total"],
        **{status: item[status] for status in STATUSES},
        "remaining": remaining,
        "rate": round(rate, 2),
        "started_at": _iso(started),
        "updated_at": _iso(now),
        "estimated_end": _iso(now + remaining / rate) if remaining and rate else None,
    }
    if state in (DONE, CANCELLED):
        doc["finished_at"] = _iso(item.get("finished_at", now))
    if "schedule" in item:  # send_at / send_between, and how a window is paced
        doc.update(json.loads(item["schedule"]))
    if any(name in item for name in FEEDBACK):
        doc["feedback"] = {name: item.get(name, 0) for name in FEEDBACK}
    return doc


class JobProgress:
    """Counts and publishes each job's progress; one per Lambda instance."""

    def __init__(
        self, dynamodb_client: Any, table: str, namespace: str, s3_client: Any,
        clock: Callable[[], float] = time.time,
    ):
        self._dynamodb = dynamodb_client
        self._table = table
        self._namespace = namespace
        self._s3 = s3_client
        self._clock = clock
        self._cancel_seen: dict[str, tuple[float, bool]] = {}  # job → (checked at, cancelled)

    def _key(self, job_id: str) -> dict[str, Any]:
        return {KEY_ATTRIBUTE: {"S": f"{self._namespace}#job#{job_id}"}}

    def _call(self, what: str, method: str, **params: Any) -> Any:
        return dynamo.call(self._dynamodb, method, LedgerUnavailable, f"job progress: {what}",
                           TableName=self._table, **params)

    def _item(self, job_id: str) -> dict[str, Any] | None:
        found = self._call(f"reading job {job_id}", "get_item", Key=self._key(job_id),
                           ConsistentRead=True).get("Item")
        return _plain(found) if found else None

    def _publish(self, bucket: str, item: Mapping[str, Any]) -> dict[str, Any]:
        """Write ``item``'s status unless a later revision is there already."""
        doc = document(item, self._clock())
        key = status_key(doc["job_id"])
        revision = int(item.get("revision", 0))
        for _ in range(PUBLISH_ATTEMPTS):
            if self._put_newer(bucket, key, revision, json_bytes(doc)):
                return doc
        raise StorageUnavailable(f"{key} kept changing while it was written")

    def _put_newer(self, bucket: str, key: str, revision: int, body: bytes) -> bool:
        """Whether the stored status is now at ``revision`` or later (``False``: another
        writer came in between the look and the write). A scheduled status replaces a
        scheduled one (a reschedule), never a counted one."""
        def keep(metadata: dict[str, str]) -> bool:
            stored = int(metadata.get("revision", "0"))
            return stored > revision or (stored == revision != SCHEDULED_REVISION)

        return put_unless(self._s3, bucket, key, body, {"revision": str(revision)}, keep)

    def scheduled(self, bucket: str, job: NotifyJob, schedule: Mapping[str, Any]) -> None:
        """Publish a held job's status: ``scheduled``, with its times (and a window's plan)."""
        doc = {"job_id": job.job_id, "state": SCHEDULED, "recipients": job.recipients,
               **schedule, "updated_at": _iso(self._clock())}
        for _ in range(PUBLISH_ATTEMPTS):
            if self._put_newer(bucket, status_key(job.job_id), SCHEDULED_REVISION,
                               json_bytes(doc)):
                return
        raise StorageUnavailable(f"{status_key(job.job_id)} kept changing while it was written")

    def started(self, job_id: str) -> dict[str, Any] | None:
        """The job's item as counted so far; ``None`` before ``begin``."""
        return self._item(job_id)

    def begin(self, bucket: str, job: NotifyJob, chunks: int, cancelled: bool = False,
              schedule: Mapping[str, Any] | None = None) -> int:
        """Start counting ``job`` split into ``chunks`` work items; returns how many were
        enqueued already (a replayed split goes on from there). A job cancelled before
        it was split starts with every recipient counted ``cancelled`` and no chunk.
        ``schedule``: its times and window plan, shown in its status from now on."""
        now = self._clock()
        extra = {"schedule": {"S": json.dumps(schedule)}} if schedule else {}
        item = {
            **extra,
            **self._key(job.job_id),
            "job_id": {"S": job.job_id},
            "started_at": _number(now),
            TTL_ATTRIBUTE: _number(int(now) + ITEM_TTL_SECONDS),
            **{name: _number(0) for name in _COUNTERS},
            "total": _number(job.recipients),
            "chunks": _number(0 if cancelled else chunks),
            "cancelled": _number(job.recipients if cancelled else 0),
        }
        written = dynamo.unless_condition_fails(
            self._dynamodb, "put_item", LedgerUnavailable,
            f"job progress: starting {job.job_id}", TableName=self._table, Item=item,
            ConditionExpression="attribute_not_exists(#id)",
            ExpressionAttributeNames={"#id": KEY_ATTRIBUTE})
        if written is None:  # begun before: go on from where it got to
            existing = self._item(job.job_id)
            if existing is None:  # expired between the two calls: start afresh
                return self.begin(bucket, job, chunks, cancelled, schedule)
            self._publish(bucket, existing)
            return int(existing["enqueued"])
        self._publish(bucket, _plain(item))
        return 0

    def enqueued(self, job_id: str, upto: int) -> None:
        """The job's first ``upto`` work items are on the queue. A SET on condition, never
        an ADD: a write whose answer was lost and is retried cannot count items twice."""
        dynamo.unless_condition_fails(
            self._dynamodb, "update_item", LedgerUnavailable,
            f"job progress: counting work items of {job_id}", TableName=self._table,
            Key=self._key(job_id), UpdateExpression="SET enqueued = :n",
            ConditionExpression="attribute_not_exists(enqueued) OR enqueued < :n",
            ExpressionAttributeValues={":n": _number(upto)})

    def counting(self, job_id: str, counts: Mapping[str, int], chunks_done: int = 1
                 ) -> dict[str, Any]:
        """The write adding one chunk's ``counts`` (status → mails), as a
        ``TransactWriteItems`` entry for the tally's transaction (``Tally.claim``);
        ``chunks_done=0`` for part of a chunk whose rest was handed back (the rest
        reports its chunk done). ``publish`` afterwards."""
        unknown = set(counts) - set(STATUSES)
        if unknown:
            raise ValueError(f"not job statuses: {sorted(unknown)}")
        adds = ({status: n for status, n in counts.items() if n}
                | {"chunks_done": chunks_done, "revision": 1})
        names = {f"#c{i}": name for i, name in enumerate(adds)} | {"#ttl": TTL_ATTRIBUTE}
        now = self._clock()
        values = {f":c{i}": _number(n) for i, n in enumerate(adds.values())} | {
            ":now": _number(now), ":ttl": _number(int(now) + ITEM_TTL_SECONDS),
        }
        # A chunk of a job whose item is gone (a re-drive after its TTL) starts a new one
        # that expires too, rather than one that stays for ever.
        expression = ("ADD " + ", ".join(f"#c{i} :c{i}" for i in range(len(adds)))
                      + " SET #ttl = if_not_exists(#ttl, :ttl),"
                      " started_at = if_not_exists(started_at, :now)")
        return {"Update": {
            "TableName": self._table, "Key": self._key(job_id), "UpdateExpression": expression,
            "ExpressionAttributeNames": names, "ExpressionAttributeValues": values,
        }}

    def feedback(self, job_id: str, counts: Mapping[str, int]) -> bool:
        """Add SES's events (``FEEDBACK`` names) to a job's item, if the job has one (an
        event may outlive its job's item): whether it had one. ``publish`` shows them."""
        # The revision too: status.json is only ever replaced by a newer revision.
        adds = {**counts, "revision": 1}
        names = {f"#f{i}": name for i, name in enumerate(adds)}
        values = {f":f{i}": _number(n) for i, n in enumerate(adds.values())}
        return dynamo.unless_condition_fails(
            self._dynamodb, "update_item", LedgerUnavailable,
            f"job progress: feedback of {job_id}", TableName=self._table, Key=self._key(job_id),
            UpdateExpression="ADD " + ", ".join(f"#f{i} :f{i}" for i in range(len(adds))),
            ConditionExpression=f"attribute_exists({KEY_ATTRIBUTE})",
            ExpressionAttributeNames=names, ExpressionAttributeValues=values) is not None

    def publish(self, bucket: str, job_id: str) -> dict[str, Any] | None:
        """Write the job's status as its item says now (dated once done) and return it;
        ``None`` (nothing written) for a job without an item (expired, or never begun)."""
        item = self._item(job_id)
        if item is None:
            return None
        item.setdefault("job_id", job_id)
        if "finished_at" not in item and _state(_filled(item)) in (DONE, CANCELLED):
            item["finished_at"] = self._finish(job_id)
        return self._publish(bucket, item)

    def _finish(self, job_id: str) -> float:
        """Note when the job finished, once: the first chunk to see it done writes it."""
        now = self._clock()
        written = dynamo.unless_condition_fails(
            self._dynamodb, "update_item", LedgerUnavailable, f"job progress: finishing {job_id}",
            TableName=self._table, Key=self._key(job_id), UpdateExpression="SET finished_at = :now",
            ConditionExpression="attribute_not_exists(finished_at)",
            ExpressionAttributeValues={":now": _number(now)})
        if written is None:  # another chunk finished it first: its time stands
            item = self._item(job_id) or {}
            return float(item.get("finished_at", now))
        return now

    def cancelled(self, bucket: str, job_id: str) -> bool:
        """Whether ``jobs/<job_id>/cancel`` exists; looked up at most every few seconds."""
        now = self._clock()
        checked, cancelled = self._cancel_seen.get(job_id, (float("-inf"), False))
        if cancelled or now - checked < CANCEL_CHECK_SECONDS:
            return cancelled
        key = cancel_key(job_id)
        try:
            self._s3.head_object(Bucket=bucket, Key=key)
            cancelled = True
        except ClientError as exc:
            if not is_missing(exc):
                raise unavailable(exc, f"looking for {key}") from exc
            cancelled = False
        except BotoCoreError as exc:
            raise unavailable(exc, f"looking for {key}") from exc
        self._cancel_seen[job_id] = (now, cancelled)
        return cancelled

    def status(self, bucket: str, job_id: str) -> dict[str, Any] | None:
        """The job's status now, from its item (or, once the item has expired, the last
        ``status.json``); ``None`` for a job never started."""
        item = self._item(job_id)
        if item is not None:
            return document(item, self._clock())
        key = status_key(job_id)
        try:
            response = get_object(self._s3, bucket, key)
        except BatchGone:
            return None
        return load_object(read_body(response, key).decode("utf-8"), key)
