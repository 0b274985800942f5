"""DynamoDB calls with botocore's errors translated at the boundary, in one place.

Every store on DynamoDB (the held items, the tallies, the jobs' progress, the suppression
list, the publisher's marks) wants the same thing: a lost condition or a cancelled
transaction is the caller's to decide, anything else is transient trouble of that store
(``LedgerUnavailable``, ``SuppressionUnavailable``) naming what was being done.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.errors import TransientError

CONDITION_FAILED = "ConditionalCheckFailedException"
TRANSACTION_CANCELLED = "TransactionCanceledException"


def code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def call(client: Any, operation: str, error: type[TransientError], what: str,
         passes: Collection[str] = (), **params: Any) -> Any:
    """``client.<operation>(**params)``. A ``ClientError`` whose code is in ``passes``
    reaches the caller as it is; any other failure raises ``error`` saying ``what``."""
    try:
        return getattr(client, operation)(**params)
    except ClientError as exc:
        if code(exc) in passes:
            raise
        raise error(f"{what}: {exc}") from exc
    except BotoCoreError as exc:
        raise error(f"{what}: {exc}") from exc


def unless_condition_fails(client: Any, operation: str, error: type[TransientError], what: str,
                           **params: Any) -> Any | None:
    """``call``, ``None`` when its condition failed (someone else's write came first)."""
    try:
        return call(client, operation, error, what, (CONDITION_FAILED,), **params)
    except ClientError:
        return None
