"""Count each row of a notify job once, however often its work item is delivered.

SQS delivers at least once, and a work item comes back (handed back with its
rest) until all its rows are settled. The ledger makes each *mail* go out
once; this makes each *row* count once in the job's progress: one item per
chunk of rows in the ledger's table holds ``upto``, the row below which the
chunk's rows are counted. A run that settled rows ``start``..``cut`` counts
``max(start, upto)``..``cut`` and moves ``upto`` to ``cut`` in the same
conditional write, so two deliveries of one item never count a row twice.

A chunk is named by what stays the same when its rest is handed back: its
part and end row (or, for a re-drive's inline rows, their digest).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.errors import LedgerUnavailable
from chalicelib.ledger import KEY_ATTRIBUTE, TTL_ATTRIBUTE
from chalicelib.model import WorkItem
from chalicelib.observe import logger

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
        try:
            return getattr(self._client, method)(TableName=self._table, **params)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                raise
            raise LedgerUnavailable(f"tally: {method}: {exc}") from exc
        except BotoCoreError as exc:
            raise LedgerUnavailable(f"tally: {method}: {exc}") from exc

    def claim(self, item: WorkItem, cut: int) -> int | None:
        """The first row of ``item``'s settled rows (up to ``cut``) that nobody counted
        yet, now marked as counted by this caller; ``None`` when all were counted."""
        key = self._key(item)
        for _ in range(ATTEMPTS):
            found = self._call("get_item", Key=key, ConsistentRead=True).get("Item")
            upto = int(found["upto"]["N"]) if found else None
            low = item.start if upto is None else max(item.start, upto)
            if cut <= low:
                return None
            if upto is None:
                condition = {"ConditionExpression": "attribute_not_exists(#id)",
                             "ExpressionAttributeNames": {"#id": KEY_ATTRIBUTE,
                                                          "#expiry": TTL_ATTRIBUTE}}
                values: dict[str, Any] = {}
            else:
                condition = {"ConditionExpression": "upto = :seen",
                             "ExpressionAttributeNames": {"#expiry": TTL_ATTRIBUTE}}
                values = {":seen": {"N": str(upto)}}
            try:
                self._call(
                    "update_item", Key=key, UpdateExpression="SET upto = :cut, #expiry = :expiry",
                    ExpressionAttributeValues={
                        ":cut": {"N": str(cut)},
                        ":expiry": {"N": str(int(self._clock()) + MARK_TTL_SECONDS)}, **values,
                    },
                    **condition,
                )
            except ClientError:  # another delivery counted meanwhile: read again
                continue
            return low
        raise LedgerUnavailable(f"tally of job {item.job_id}: the mark kept changing")

    def undo(self, item: WorkItem, low: int, cut: int) -> None:
        """Give back a claim whose counts could not be recorded, so a redelivery counts them."""
        try:
            self._call(
                "update_item", Key=self._key(item), UpdateExpression="SET upto = :low",
                ConditionExpression="upto = :cut",
                ExpressionAttributeValues={":low": {"N": str(low)}, ":cut": {"N": str(cut)}},
            )
        except (ClientError, LedgerUnavailable) as exc:
            logger.error("could not give back a tally claim: those rows stay uncounted",
                         extra={"job_id": item.job_id, "low": low, "cut": cut,
                                "error": str(exc)})
