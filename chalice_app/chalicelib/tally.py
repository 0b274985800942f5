"""Count each row of a notify job once, however often its work item is delivered.

SQS delivers at least once, and a work item comes back (handed back with its
rest) until all its rows are settled. The ledger makes each *mail* go out
once; this makes each *row* count once in the job's progress: one item per
chunk of rows in the ledger's table holds ``upto``, the row below which the
chunk's rows are counted. A run that settled rows ``start``..``cut`` counts
``max(start, upto)``..``cut`` and moves ``upto`` to ``cut`` in the same
conditional write, so two deliveries of one item never count a row twice.

The counts themselves (``progress.JobProgress.counting``) are added in the same
``TransactWriteItems`` as the mark: both happen or neither does, so nothing
has to be given back when one of them fails, and a transaction whose answer
was lost is never counted twice (botocore's own retry carries the same
``ClientRequestToken``, which DynamoDB answers as the first time; a
redelivery reads the moved mark and counts nothing).

A chunk is named by what stays the same when its rest is handed back: its
part and end row (or, for a re-drive's inline rows, their digest).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from typing import Any

from botocore.exceptions import ClientError

from chalicelib import dynamo
from chalicelib.errors import LedgerUnavailable
from chalicelib.ledger import KEY_ATTRIBUTE, TTL_ATTRIBUTE
from chalicelib.model import WorkItem

# As long as the job's progress item lives (progress.ITEM_TTL_SECONDS).
MARK_TTL_SECONDS = 30 * 24 * 3600
ATTEMPTS = 5


def chunk_name(item: WorkItem) -> str:
    """What names the chunk ``item`` belongs to, whichever part of it is left."""
    if item.rows:
        digest = hashlib.sha256("\n".join(item.rows).encode("utf-8")).hexdigest()[:24]
        return f"rows-{digest}"
    return f"part-{item.part}-{item.end}"


class Tally:
    """The counted-up-to marks of chunks, in the ledger's table."""

    def __init__(self, dynamodb_client: Any, table: str, namespace: str,
                 clock: Callable[[], float] = time.time):
        self._client = dynamodb_client
        self._table = table
        self._namespace = namespace
        self._clock = clock

    def _key(self, item: WorkItem) -> dict[str, Any]:
        name = f"{self._namespace}#tally#{item.job_id}:{item.redrive}:{chunk_name(item)}"
        return {KEY_ATTRIBUTE: {"S": name}}

    def _call(self, method: str, **params: Any) -> Any:
        """``TransactionCanceledException`` passes through (the caller reads the mark again)."""
        if method != "transact_write_items":
            params["TableName"] = self._table
        return dynamo.call(self._client, method, LedgerUnavailable, f"tally: {method}",
                           (dynamo.TRANSACTION_CANCELLED,), **params)

    def claim(self, item: WorkItem, cut: int,
              counting: Callable[[int], Mapping[str, Any]] | None = None) -> int | None:
        """The first row of ``item``'s settled rows (up to ``cut``) that nobody counted
        yet, now marked as counted by this caller; ``None`` when all were counted.
        ``counting(low)`` is the write (a ``TransactWriteItems`` entry) that counts rows
        ``low``..``cut``: made in the mark's transaction, or not at all."""
        key = self._key(item)
        for _ in range(ATTEMPTS):
            found = self._call("get_item", Key=key, ConsistentRead=True).get("Item")
            upto = int(found["upto"]["N"]) if found else None
            low = item.start if upto is None else max(item.start, upto)
            if cut <= low:
                return None
            writes: list[Mapping[str, Any]] = [self._mark(key, upto, cut)]
            if counting is not None:
                writes.append(counting(low))
            try:
                self._call("transact_write_items", TransactItems=writes)
            except ClientError:  # cancelled, nothing written: another delivery counted
                continue  # meanwhile (or the transaction conflicted); read the mark again
            return low
        raise LedgerUnavailable(f"tally of job {item.job_id}: the mark kept changing")

    def _mark(self, key: Mapping[str, Any], upto: int | None, cut: int) -> dict[str, Any]:
        """The write moving the mark from ``upto`` (as read; ``None``: no mark) to ``cut``."""
        names = {"#expiry": TTL_ATTRIBUTE}
        values = {":cut": {"N": str(cut)},
                  ":expiry": {"N": str(int(self._clock()) + MARK_TTL_SECONDS)}}
        if upto is None:
            condition = "attribute_not_exists(#id)"
            names["#id"] = KEY_ATTRIBUTE
        else:
            condition = "upto = :seen"
            values[":seen"] = {"N": str(upto)}
        return {"Update": {
            "TableName": self._table, "Key": key,
            "UpdateExpression": "SET upto = :cut, #expiry = :expiry",
            "ConditionExpression": condition, "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }}
