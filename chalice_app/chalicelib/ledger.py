"""The per-mail ledger: claim in chunks → send → complete in batches, on DynamoDB.

Each mail's idempotency key (``"<batch_id>:<mail_id>:<redrive>"``, from ids
minted when the mail was queued) gets one record, ``id`` =
``"<namespace>#<md5 of the key>"``:

- **claim**: one ``TransactWriteItems`` puts ``INPROGRESS`` records for up to
  100 keys, each on condition that the key is free (absent, or past its
  TTL). Claims expire at the Lambda's deadline. A cancelled transaction
  writes nothing: the keys whose condition failed are read with their
  evidence (``BatchGetItem``, consistent), abandoned claims are settled or
  taken over (below), and the rest are claimed again. botocore gives each
  transaction a ``ClientRequestToken``, so its own retry of a claim whose
  answer was lost succeeds rather than meeting our own records;
- **complete**: an unconditional put of a ``COMPLETED`` record with the SES
  MessageId, or the reason a permanent failure gave (never resent either);
- **release**: a delete, so a retry or a continuation can claim the key at once;
- **evidence**: what SES itself says it sent. ``on_ses_event`` records each
  SES ``Send`` event (the mail carries its key's digest as a message tag) as
  a record ``"<namespace>#ses#<md5>"``. A claim whose holder died, or a send
  whose answer was lost (a timeout after the request left), is settled by
  that evidence: sent if SES published a Send event for it, sent again only
  when none arrived within ``evidence_window`` seconds. A claim past its
  expiry is therefore never simply taken: it is taken over only once its
  expiry plus the window has passed and no evidence was found.

Completions and releases are buffered and written by ``BatchWriteItem``, 25
at a time, at the latest ``flush_after`` seconds after the oldest was
buffered (checked at each completion or release) and when the caller flushes.
They need no condition: the writer holds the claim, which lasts until its
own deadline.

Why not powertools' idempotency utility (our first ledger): it makes two
DynamoDB calls per mail, and one botocore call costs ~1 ms of client CPU,
which alone broke the sender's CPU and rate targets (docs/exactly-once.md).
The record layout is the utility's (``status``, ``expiration``,
``in_progress_expiration``, ``data``, same key hash), so records it wrote
are still honoured.
"""

from __future__ import annotations

import functools
import hashlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib import dynamo
from chalicelib.config import Settings
from chalicelib.errors import LedgerUnavailable
from chalicelib.retry import RetryPolicy

# Longer than anything that can replay a batch: Lambda's asynchronous retries
# (up to 6 hours), a plugin re-upload, an operator looking at failures over a weekend.
DEFAULT_RECORD_TTL_SECONDS = 7 * 24 * 3600
# Bounds the window in which a sent mail is not yet recorded as sent.
FLUSH_AFTER_SECONDS = 1.0
# How long SES's Send event may take to reach the ledger (SES → SNS → Lambda →
# DynamoDB, normally seconds): a mail whose fate is unknown is sent again only
# after this long without one (POSTBAG_EVIDENCE_WINDOW_SECONDS).
EVIDENCE_WINDOW_SECONDS = Settings.evidence_window_seconds
MAX_TRANSACTION_ITEMS = 100  # TransactWriteItems
MAX_BATCH_WRITE_ITEMS = 25  # BatchWriteItem
MAX_BATCH_GET_KEYS = 100  # BatchGetItem

# The table's layout, powertools' DynamoDBPersistenceLayer defaults: partition
# key "id", TTL attribute "expiration". ``postbag provision`` creates it from these too.
KEY_ATTRIBUTE = "id"
TTL_ATTRIBUTE = "expiration"
KEY_SCHEMA = [{"AttributeName": KEY_ATTRIBUTE, "KeyType": "HASH"}]
ATTRIBUTE_DEFINITIONS = [{"AttributeName": KEY_ATTRIBUTE, "AttributeType": "S"}]

CLAIMED = "claimed"  # this caller holds the claim now
REPLAYED = "replayed"  # an earlier call completed this key: do nothing
IN_PROGRESS = "in_progress"  # another invocation holds an unexpired claim

_INPROGRESS, _COMPLETED, _SENT_BY_SES = "INPROGRESS", "COMPLETED", "SENT_BY_SES"
# Cancellation codes that another try of the same transaction can get past.
_RETRY_CODES = frozenset({"TransactionConflict", "ThrottlingError",
                          "ProvisionedThroughputExceeded"})
# A key nobody holds: never written, or expired by the TTL (DynamoDB deletes lazily).
_FREE = "attribute_not_exists(#id) OR #expiry < :now"
# A claim whose holder is gone, taken over only as it was read (no evidence had come).
_ABANDONED = "#status = :inprogress AND #in_progress_expiry = :seen"


@dataclass(frozen=True)
class Result:
    """What a completed record keeps: the SES MessageId, or why the mail failed for good."""

    message_id: str | None = None
    reason: str | None = None
    # The mail that settled the key. A notify job's key is the recipient's address,
    # which several rows may share: a replay tells its own row from another's by it.
    # ``None`` in records written before it existed and in those SES's evidence settled.
    mail_id: str | None = None


@dataclass(frozen=True)
class Entry:
    """The ledger's answer for one key."""

    state: str  # CLAIMED, REPLAYED or IN_PROGRESS
    result: Result | None = None


# A mail's key is digested three times (claim, the SES tag, completion) within one run:
# kept for the keys of about one chunk in flight, so the last two cost a dict lookup.
DIGESTS_CACHED = 1024


@functools.lru_cache(maxsize=DIGESTS_CACHED)
def key_digest(key: str) -> str:
    """The MD5 of the key as JSON: what record ids and the SES message tag carry."""
    return hashlib.md5(json.dumps(key).encode(), usedforsecurity=False).hexdigest()


def record_id(namespace: str, key: str) -> str:
    # powertools' key: a fixed prefix and the key's digest.
    return f"{namespace}#{key_digest(key)}"


def evidence_id(namespace: str, digest: str) -> str:
    return f"{namespace}#ses#{digest}"


class _Unwritten(LedgerUnavailable):
    """Writes that failed, and every one after them: what a flush keeps for the next."""

    def __init__(self, message: str, writes: list[dict[str, Any]]):
        super().__init__(message)
        self.writes = writes


def _request_id(write: dict[str, Any]) -> str:
    """The record id a BatchWriteItem request writes or deletes."""
    if "PutRequest" in write:
        return str(write["PutRequest"]["Item"]["id"]["S"])
    return str(write["DeleteRequest"]["Key"]["id"]["S"])


@dataclass(frozen=True)
class _Abandoned:
    """A claim past its expiry and the evidence window: taken over if SES has no record."""

    seen_expiry: str  # its in_progress_expiration, as read


def create_table(dynamodb_client: Any, table_name: str) -> None:
    """Create the ledger table (for demos and tests).

    Production tables come from ``postbag provision`` with the same key and TTL attribute.
    """
    dynamodb_client.create_table(
        TableName=table_name,
        KeySchema=KEY_SCHEMA,
        AttributeDefinitions=ATTRIBUTE_DEFINITIONS,
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb_client.get_waiter("table_exists").wait(TableName=table_name)
    dynamodb_client.update_time_to_live(
        TableName=table_name,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE},
    )


class Ledger:
    """Runs each key's mail at most once, across invocations and instances. Thread-safe.

    ``clock`` is the wall clock (claims are compared across instances);
    ``sleep`` and ``random`` pace the retries of unprocessed writes and
    conflicting transactions, up to ``attempts`` calls.
    """

    def __init__(
        self,
        dynamodb_client: Any,
        table_name: str,
        namespace: str,
        record_ttl_seconds: int = DEFAULT_RECORD_TTL_SECONDS,
        flush_after: float = FLUSH_AFTER_SECONDS,
        clock: Callable[[], float] = time.time,
        retry: RetryPolicy | None = None,
        evidence_window: float = EVIDENCE_WINDOW_SECONDS,
    ):
        self._client = dynamodb_client
        self.table_name = table_name
        self.namespace = namespace
        self._ttl = record_ttl_seconds
        self._flush_after = flush_after
        self.evidence_window = evidence_window
        self._clock = clock
        # Full jitter between attempts, as DynamoDB's guidance for unprocessed items asks.
        self._retry = retry or RetryPolicy(attempts=5, base_delay=0.05, max_delay=1.0)
        self._pending: dict[str, dict[str, Any]] = {}  # record id → write request
        self._oldest = 0.0  # clock() when the oldest pending write was buffered
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, dynamodb_client: Any, **kwargs: Any) -> Ledger:
        kwargs.setdefault("evidence_window", settings.evidence_window_seconds)
        return cls(dynamodb_client, settings.ledger_table, settings.idempotency_namespace, **kwargs)

    # --- claim --------------------------------------------------------------------

    def claim(self, keys: Sequence[str], remaining_ms: int) -> list[Entry]:
        """Claim ``keys`` (distinct, at most 100) until ``remaining_ms`` from now; entries in order.

        Raises ``LedgerUnavailable`` when DynamoDB fails; a claim whose answer was
        lost then stays until its expiry and the evidence window.
        """
        if len(keys) > MAX_TRANSACTION_ITEMS:
            raise ValueError(f"at most {MAX_TRANSACTION_ITEMS} keys per claim")
        # Marks this call's own records: a try whose answer was lost wrote them, and a
        # later try that meets them must see its claims, not another invocation's.
        claimant = uuid.uuid4().hex
        entries: dict[str, Entry] = {}
        pending = list(keys)
        abandoned: dict[str, _Abandoned] = {}
        for attempt in range(self._retry.attempts):
            now = self._clock()
            failed = self._transact_claim(pending, abandoned, now, int(now * 1000) + remaining_ms,
                                          claimant)
            if failed is None:  # every condition held, but the transaction may try again
                self._retry.pause(attempt)
                continue
            if not failed:
                entries.update((key, Entry(CLAIMED)) for key in pending)
                return [entries[key] for key in keys]
            abandoned = {}
            for key, (item, sent) in self._read(failed).items():
                held = self._held(item, sent, now, claimant)
                if isinstance(held, _Abandoned):
                    abandoned[key] = held
                elif held is not None:
                    entries[key] = held
            # Keys read back free (released or expired meanwhile) are tried again.
            pending = [key for key in pending if key not in entries]
            if not pending:
                return [entries[key] for key in keys]
        raise LedgerUnavailable(f"claims on {len(keys)} key(s) kept conflicting")

    def _transact_claim(
        self, keys: list[str], abandoned: dict[str, _Abandoned], now: float, expires_ms: int,
        claimant: str,
    ) -> set[str] | None:
        """Keys whose condition failed (empty: all claimed); ``None``: cancelled, retry it all."""
        item = {
            "status": {"S": _INPROGRESS},
            "expiration": {"N": str(int(now) + self._ttl)},
            "in_progress_expiration": {"N": str(expires_ms)},
            "claimant": {"S": claimant},
        }
        puts = [
            {"Put": {"TableName": self.table_name,
                     "Item": {"id": {"S": record_id(self.namespace, key)}, **item},
                     **self._claim_condition(abandoned.get(key), now)}}
            for key in keys
        ]
        try:
            self._client.transact_write_items(TransactItems=puts)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                raise LedgerUnavailable(f"claiming {len(keys)} key(s): {exc}") from exc
            return self._cancelled(keys, exc)
        except BotoCoreError as exc:
            raise LedgerUnavailable(f"claiming {len(keys)} key(s): {exc}") from exc
        return set()

    @staticmethod
    def _claim_condition(abandoned: _Abandoned | None, now: float) -> dict[str, Any]:
        """A fresh key's condition, or an abandoned claim's: each names only what it uses."""
        if abandoned is None:
            return {"ConditionExpression": _FREE,
                    "ExpressionAttributeNames": {"#id": "id", "#expiry": "expiration"},
                    "ExpressionAttributeValues": {":now": {"N": str(int(now))}}}
        return {"ConditionExpression": _ABANDONED,
                "ExpressionAttributeNames": {"#status": "status",
                                             "#in_progress_expiry": "in_progress_expiration"},
                "ExpressionAttributeValues": {":inprogress": {"S": _INPROGRESS},
                                              ":seen": {"N": abandoned.seen_expiry}}}

    @staticmethod
    def _cancelled(keys: list[str], exc: ClientError) -> set[str] | None:
        # One reason per item, in item order; "None" for items that were fine.
        codes = [r.get("Code", "None") for r in exc.response.get("CancellationReasons", [])]
        if len(codes) != len(keys):
            raise LedgerUnavailable(f"claim cancelled without reasons: {exc}") from exc
        failed = {key for key, code in zip(keys, codes, strict=True)
                  if code == "ConditionalCheckFailed"}
        other = set(codes) - {"None", "ConditionalCheckFailed"}
        if other - _RETRY_CODES:
            raise LedgerUnavailable(f"claim cancelled: {sorted(other)}") from exc
        return None if other else failed

    def _read(
        self, keys: Iterable[str], records: bool = True
    ) -> dict[str, tuple[dict[str, Any] | None, str | None]]:
        """Each key's record (``None`` when absent, or not asked for) and SES's MessageId for
        it (``None`` when no Send event came), read consistently, both in the same calls."""
        wanted: dict[str, tuple[str, bool]] = {}  # item id → (key, is evidence)
        for key in keys:
            if records:
                wanted[record_id(self.namespace, key)] = (key, False)
            wanted[evidence_id(self.namespace, key_digest(key))] = (key, True)
        found: dict[str, tuple[dict[str, Any] | None, str | None]] = {
            key: (None, None) for key, _ in wanted.values()
        }
        ids = list(wanted)
        for start in range(0, len(ids), MAX_BATCH_GET_KEYS):
            for item in self._get(ids[start:start + MAX_BATCH_GET_KEYS]):
                key, is_evidence = wanted[item["id"]["S"]]
                record, sent = found[key]
                if is_evidence:
                    found[key] = record, json.loads(item["data"]["S"])["message_id"]
                else:
                    found[key] = item, sent
        return found

    def _get(self, ids: list[str]) -> list[dict[str, Any]]:
        """The items with these record ids (at most 100), consistently read."""
        items: list[dict[str, Any]] = []
        request = {self.table_name: {"Keys": [{"id": {"S": rid}} for rid in ids],
                                     "ConsistentRead": True}}
        for attempt in range(self._retry.attempts):
            response = self._call("batch_get_item", RequestItems=request)
            items += response.get("Responses", {}).get(self.table_name, [])
            request = response.get("UnprocessedKeys") or {}
            if not request:
                return items
            self._retry.pause(attempt)
        raise LedgerUnavailable("ledger reads kept coming back unprocessed")

    def _held(
        self, item: dict[str, Any] | None, sent: str | None, now: float, claimant: str
    ) -> Entry | _Abandoned | None:
        """What a record that failed the claim condition says; ``None`` if it is free now.

        A claim past its expiry and the evidence window is abandoned: settled
        as sent if SES has a Send event for it (and completed now), else
        taken over. Until then it is in progress, whatever SES says: its
        holder may still be completing it.
        """
        if item is None or int(item["expiration"]["N"]) < int(now):
            return None
        if item["status"]["S"] == _COMPLETED:
            return Entry(REPLAYED, Result(**json.loads(item["data"]["S"])))
        if item.get("claimant", {}).get("S") == claimant:
            return Entry(CLAIMED)  # this call's own, from a try whose answer was lost
        expiry = item.get("in_progress_expiration")
        if expiry is None or int(expiry["N"]) + self.evidence_window * 1000 >= now * 1000:
            return Entry(IN_PROGRESS)
        if sent is None:
            return _Abandoned(expiry["N"])
        result = Result(message_id=sent)
        self._buffer([self._completion(item["id"]["S"], result)])
        return Entry(REPLAYED, result)

    # --- SES's evidence ------------------------------------------------------------

    def record_sent(self, sent: Iterable[tuple[str, str]]) -> None:
        """Record SES Send events, as (key digest, SES MessageId). Raises ``LedgerUnavailable``."""
        expiration = {"N": str(int(self._clock()) + self._ttl)}
        writes = {
            evidence_id(self.namespace, digest): {"PutRequest": {"Item": {
                "id": {"S": evidence_id(self.namespace, digest)},
                "status": {"S": _SENT_BY_SES},
                "expiration": expiration,
                "data": {"S": json.dumps({"message_id": message_id})},
            }}}
            for digest, message_id in sent
        }
        self._write(list(writes.values()))

    def sent_by_ses(self, keys: Sequence[str]) -> dict[str, str]:
        """The SES MessageId of each key SES published a Send event for (read consistently)."""
        read = self._read(keys, records=False)
        return {key: sent for key, (_, sent) in read.items() if sent is not None}

    def settled(self, keys: Sequence[str]) -> set[str]:
        """The ``keys`` a send settled already: a completed record, or SES's Send event
        (read consistently). The suppression check leaves these to the dispatcher, whose
        claim reports what happened, rather than calling a sent mail suppressed."""
        now = int(self._clock())
        return {key for key, (item, sent) in self._read(keys).items()
                if sent is not None or (item is not None and item["status"]["S"] == _COMPLETED
                                        and int(item["expiration"]["N"]) >= now)}

    # --- complete and release ------------------------------------------------------

    def complete(self, key: str, result: Result) -> None:
        """Record ``key`` as done with ``result`` (buffered). Raises ``LedgerUnavailable``
        when a flush it triggers fails."""
        self._buffer([self._completion(record_id(self.namespace, key), result)])

    def _completion(self, rid: str, result: Result) -> tuple[str, dict[str, Any]]:
        item = {
            "id": {"S": rid},
            "status": {"S": _COMPLETED},
            "expiration": {"N": str(int(self._clock()) + self._ttl)},
            # The fields by hand, as asdict would give them: asdict deep-copies each
            # value, ~0.01 ms a mail (bench/fanout.py cpu).
            "data": {"S": json.dumps({"mail_id": result.mail_id, "message_id": result.message_id,
                                      "reason": result.reason})},
        }
        return rid, {"PutRequest": {"Item": item}}

    def release(self, keys: Iterable[str]) -> None:
        """Give up the claims on ``keys`` (buffered), so another attempt may claim them."""
        ids = [record_id(self.namespace, key) for key in keys]
        self._buffer([(rid, {"DeleteRequest": {"Key": {"id": {"S": rid}}}}) for rid in ids])

    def flush(self) -> None:
        """Write every buffered completion and release. Raises ``LedgerUnavailable``, and
        then keeps them buffered for the next flush: a write is never dropped."""
        with self._lock:
            pending, self._pending = self._pending, {}
            oldest = self._oldest
        try:
            self._write(list(pending.values()))
        except _Unwritten as exc:
            with self._lock:
                # Only what was not written goes back: a release written twice could
                # delete a claim another invocation took in between. Newer writes win.
                left = {_request_id(w): w for w in exc.writes}
                self._pending = {**left, **self._pending}
                self._oldest = oldest
            raise

    @property
    def unwritten(self) -> int:
        """Completions and releases buffered and not written yet."""
        with self._lock:
            return len(self._pending)

    def _buffer(self, writes: list[tuple[str, dict[str, Any]]]) -> None:
        with self._lock:
            if not self._pending:
                self._oldest = self._clock()
            self._pending.update(writes)
            due = len(self._pending) >= MAX_BATCH_WRITE_ITEMS
        if due:
            self.flush()
        else:
            self.flush_if_due()

    def flush_if_due(self) -> None:
        """Write the buffered completions and releases if the oldest is ``flush_after`` old."""
        with self._lock:
            due = bool(self._pending) and self._clock() - self._oldest >= self._flush_after
        if due:
            self.flush()

    def _write(self, writes: list[dict[str, Any]]) -> None:
        """Write ``writes`` 25 at a time; ``_Unwritten`` names those not written."""
        for start in range(0, len(writes), MAX_BATCH_WRITE_ITEMS):
            request = {self.table_name: writes[start:start + MAX_BATCH_WRITE_ITEMS]}
            later = writes[start + MAX_BATCH_WRITE_ITEMS:]
            for attempt in range(self._retry.attempts):
                try:
                    answer = self._call("batch_write_item", RequestItems=request)
                except LedgerUnavailable as exc:
                    raise _Unwritten(str(exc), request[self.table_name] + later) from exc
                request = answer.get("UnprocessedItems") or {}
                if not request:
                    break
                self._retry.pause(attempt)
            else:
                left = request[self.table_name]
                raise _Unwritten(f"{len(left)} ledger write(s) kept coming back unprocessed",
                                 left + later)

    # --- DynamoDB calls --------------------------------------------------------------

    def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        return dynamo.call(self._client, operation, LedgerUnavailable, f"ledger {operation}",
                           **params)

