"""The per-mail ledger: claim in chunks → send → complete in batches, on DynamoDB.

Each mail's idempotency key (``"<batch_id>:<mail_id>:<redrive>"``, from ids
minted when the mail was queued) gets one record, ``id`` =
``"<namespace>#<md5 of the key>"``:

- **claim**: one ``TransactWriteItems`` puts ``INPROGRESS`` records for up to
  100 keys, each on condition that the key is free (absent, past its TTL, or
  an ``INPROGRESS`` claim past its expiry). Claims expire at the Lambda's
  deadline, so a crashed attempt's mails are taken over by the next
  invocation. A cancelled transaction writes nothing: the keys whose
  condition failed are read (``BatchGetItem``, consistent) and the rest are
  claimed again. botocore gives each transaction a ``ClientRequestToken``,
  so its own retry of a claim whose answer was lost succeeds rather than
  meeting our own records;
- **complete**: an unconditional put of a ``COMPLETED`` record with the SES
  MessageId, or the reason a permanent failure gave (never resent either);
- **release**: a delete, so a retry or a continuation can claim the key at once.

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

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.config import Settings
from chalicelib.errors import LedgerUnavailable
from chalicelib.retry import RetryPolicy

# Longer than anything that can replay a batch: Lambda's asynchronous retries
# (up to 6 hours), a plugin re-upload, an operator looking at failures over a weekend.
DEFAULT_RECORD_TTL_SECONDS = 7 * 24 * 3600
# Bounds the window in which a sent mail is not yet recorded as sent.
FLUSH_AFTER_SECONDS = 1.0
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

_INPROGRESS, _COMPLETED = "INPROGRESS", "COMPLETED"
# Cancellation codes that another try of the same transaction can get past.
_RETRY_CODES = frozenset({"TransactionConflict", "ThrottlingError",
                          "ProvisionedThroughputExceeded"})
_FREE = (
    "attribute_not_exists(#id) OR #expiry < :now"
    " OR (#status = :inprogress AND #in_progress_expiry < :now_ms)"
)


@dataclass(frozen=True)
class Result:
    """What a completed record keeps: the SES MessageId, or why the mail failed for good."""

    message_id: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Entry:
    """The ledger's answer for one key."""

    state: str  # CLAIMED, REPLAYED or IN_PROGRESS
    result: Result | None = None


def record_id(namespace: str, key: str) -> str:
    # powertools' key: a fixed prefix and the MD5 of the key as JSON.
    digest = hashlib.md5(json.dumps(key).encode(), usedforsecurity=False).hexdigest()
    return f"{namespace}#{digest}"


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
    ):
        self._client = dynamodb_client
        self.table_name = table_name
        self.namespace = namespace
        self._ttl = record_ttl_seconds
        self._flush_after = flush_after
        self._clock = clock
        # Full jitter between attempts, as DynamoDB's guidance for unprocessed items asks.
        self._retry = retry or RetryPolicy(attempts=5, base_delay=0.05, max_delay=1.0)
        self._pending: dict[str, dict[str, Any]] = {}  # record id → write request
        self._oldest = 0.0  # clock() when the oldest pending write was buffered
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, dynamodb_client: Any, **kwargs: Any) -> Ledger:
        return cls(dynamodb_client, settings.ledger_table, settings.idempotency_namespace, **kwargs)

    # --- claim --------------------------------------------------------------------

    def claim(self, keys: Sequence[str], remaining_ms: int) -> list[Entry]:
        """Claim ``keys`` (distinct, at most 100) until ``remaining_ms`` from now; entries in order.

        Raises ``LedgerUnavailable`` when DynamoDB fails: then nothing was claimed
        by this call.
        """
        if len(keys) > MAX_TRANSACTION_ITEMS:
            raise ValueError(f"at most {MAX_TRANSACTION_ITEMS} keys per claim")
        entries: dict[str, Entry] = {}
        pending = list(keys)
        for attempt in range(self._retry.attempts):
            now = self._clock()
            failed = self._transact_claim(pending, now, int(now * 1000) + remaining_ms)
            if failed is None:  # every condition held, but the transaction may try again
                self._retry.pause(attempt)
                continue
            if not failed:
                entries.update((key, Entry(CLAIMED)) for key in pending)
                return [entries[key] for key in keys]
            for key, item in self._read(failed).items():
                held = self._held(item, now)
                if held is not None:
                    entries[key] = held
            # Keys read back free (released or expired meanwhile) are tried again.
            pending = [key for key in pending if key not in entries]
            if not pending:
                return [entries[key] for key in keys]
        raise LedgerUnavailable(f"claims on {len(keys)} key(s) kept conflicting")

    def _transact_claim(self, keys: list[str], now: float, expires_ms: int) -> set[str] | None:
        """Keys whose condition failed (empty: all claimed); ``None``: cancelled, retry it all."""
        item = {
            "status": {"S": _INPROGRESS},
            "expiration": {"N": str(int(now) + self._ttl)},
            "in_progress_expiration": {"N": str(expires_ms)},
        }
        values = {
            ":now": {"N": str(int(now))},
            ":now_ms": {"N": str(int(now * 1000))},
            ":inprogress": {"S": _INPROGRESS},
        }
        names = {"#id": "id", "#expiry": "expiration", "#status": "status",
                 "#in_progress_expiry": "in_progress_expiration"}
        puts = [
            {"Put": {"TableName": self.table_name,
                     "Item": {"id": {"S": record_id(self.namespace, key)}, **item},
                     "ConditionExpression": _FREE, "ExpressionAttributeNames": names,
                     "ExpressionAttributeValues": values}}
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

    def _read(self, keys: Iterable[str]) -> dict[str, dict[str, Any] | None]:
        """The current record of each key (``None`` when absent), read consistently."""
        by_id = {record_id(self.namespace, key): key for key in keys}
        found: dict[str, dict[str, Any] | None] = dict.fromkeys(by_id.values())
        wanted = [{"id": {"S": rid}} for rid in by_id]
        for start in range(0, len(wanted), MAX_BATCH_GET_KEYS):
            request = {self.table_name: {"Keys": wanted[start:start + MAX_BATCH_GET_KEYS],
                                         "ConsistentRead": True}}
            for attempt in range(self._retry.attempts):
                response = self._call("batch_get_item", RequestItems=request)
                for item in response.get("Responses", {}).get(self.table_name, []):
                    found[by_id[item["id"]["S"]]] = item
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
                self._retry.pause(attempt)
            else:
                raise LedgerUnavailable("ledger reads kept coming back unprocessed")
        return found

    @staticmethod
    def _held(item: dict[str, Any] | None, now: float) -> Entry | None:
        """What a record that failed the claim condition says; ``None`` if it is free now."""
        if item is None or int(item["expiration"]["N"]) < int(now):
            return None
        if item["status"]["S"] == _COMPLETED:
            return Entry(REPLAYED, Result(**json.loads(item["data"]["S"])))
        expiry = item.get("in_progress_expiration")
        if expiry is not None and int(expiry["N"]) < int(now * 1000):
            return None
        return Entry(IN_PROGRESS)

    # --- complete and release ------------------------------------------------------

    def complete(self, key: str, result: Result) -> None:
        """Record ``key`` as done with ``result`` (buffered). Raises ``LedgerUnavailable``
        when a flush it triggers fails."""
        item = {
            "id": {"S": record_id(self.namespace, key)},
            "status": {"S": _COMPLETED},
            "expiration": {"N": str(int(self._clock()) + self._ttl)},
            "data": {"S": json.dumps(asdict(result), sort_keys=True)},
        }
        self._buffer([(item["id"]["S"], {"PutRequest": {"Item": item}})])

    def release(self, keys: Iterable[str]) -> None:
        """Give up the claims on ``keys`` (buffered), so another attempt may claim them."""
        ids = [record_id(self.namespace, key) for key in keys]
        self._buffer([(rid, {"DeleteRequest": {"Key": {"id": {"S": rid}}}}) for rid in ids])

    def flush(self) -> None:
        """Write every buffered completion and release. Raises ``LedgerUnavailable``."""
        with self._lock:
            writes, self._pending = list(self._pending.values()), {}
        self._write(writes)

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
        for start in range(0, len(writes), MAX_BATCH_WRITE_ITEMS):
            request = {self.table_name: writes[start:start + MAX_BATCH_WRITE_ITEMS]}
            for attempt in range(self._retry.attempts):
                request = self._call("batch_write_item", RequestItems=request).get(
                    "UnprocessedItems"
                ) or {}
                if not request:
                    break
                self._retry.pause(attempt)
            else:
                left = len(request.get(self.table_name, []))
                raise LedgerUnavailable(f"{left} ledger write(s) kept coming back unprocessed")

    # --- DynamoDB calls --------------------------------------------------------------

    def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        try:
            return getattr(self._client, operation)(**params)
        except (ClientError, BotoCoreError) as exc:
            raise LedgerUnavailable(f"ledger {operation}: {exc}") from exc

