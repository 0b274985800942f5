"""The per-mail ledger: claim → send → complete, on powertools' idempotency utility.

Each mail's idempotency key (``"<batch_id>:<mail_id>:<redrive>"``, from ids
minted when the mail was queued) gets one DynamoDB record:

- **claim**: a conditional put of an ``INPROGRESS`` record whose claim expires
  at the Lambda's deadline, so a crashed attempt's mails can be taken over by
  the next invocation (powertools' ``in_progress_expiration``);
- **complete**: the record becomes ``COMPLETED`` with the SES MessageId, or with
  the reason a permanent failure gave (so that mail is never resent either);
- **release**: if sending raised, the record is deleted so a retry sends it.

Records expire through the table's TTL on the ``expiration`` attribute.
The utility's ``IdempotencyHandler`` is used directly rather than through the
``idempotent_function`` decorator because the key is a plain string we pass
in, and the outcome (ran now, replayed, held elsewhere) matters to the caller.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
)
from aws_lambda_powertools.utilities.idempotency.base import IdempotencyHandler
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyInconsistentStateError,
    IdempotencyPersistenceLayerError,
)

from chalicelib.config import Settings
from chalicelib.errors import LedgerUnavailable
from chalicelib.observe import logger

# Longer than anything that can replay a batch: Lambda's asynchronous retries
# (up to 6 hours), a plugin re-upload, an operator looking at failures over a weekend.
DEFAULT_RECORD_TTL_SECONDS = 7 * 24 * 3600

DONE = "done"  # the action ran in this call
REPLAYED = "replayed"  # an earlier call completed this key: nothing was run
IN_PROGRESS = "in_progress"  # another invocation holds an unexpired claim


class RemainingTime(Protocol):
    """What the ledger needs of a Lambda context: the time left before the deadline."""

    def get_remaining_time_in_millis(self) -> int: ...


@dataclass(frozen=True)
class Result:
    """What a completed record keeps: the SES MessageId, or why the mail failed for good."""

    message_id: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Entry:
    """The ledger's answer for one key."""

    state: str  # DONE, REPLAYED or IN_PROGRESS
    result: Result | None = None


def create_table(dynamodb_client: Any, table_name: str) -> None:
    """Create the ledger table as the persistence layer expects it (for demos and tests).

    Production tables come from the deploy step with the same key and TTL attribute.
    """
    dynamodb_client.create_table(
        TableName=table_name,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb_client.get_waiter("table_exists").wait(TableName=table_name)
    dynamodb_client.update_time_to_live(
        TableName=table_name,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": "expiration"},
    )


class Ledger:
    """Runs an action at most once per idempotency key, across invocations and instances.

    One persistence layer per ledger (powertools ignores a second config on a
    layer), built on first use: the layer makes its boto3 client when
    constructed, and clients made before moto starts escape it.
    """

    def __init__(
        self,
        table_name: str,
        namespace: str,
        record_ttl_seconds: int = DEFAULT_RECORD_TTL_SECONDS,
        dynamodb_client: Any = None,
    ):
        self.table_name = table_name
        # Fixed key prefix instead of powertools' "<function name>.<qualname>",
        # so records survive renaming the function or this module.
        self.namespace = namespace
        self._config = IdempotencyConfig(
            event_key_jmespath="key",
            raise_on_no_idempotency_key=True,
            expires_after_seconds=record_ttl_seconds,
        )
        self._client = dynamodb_client
        self._layer: DynamoDBPersistenceLayer | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, dynamodb_client: Any = None) -> Ledger:
        return cls(
            settings.ledger_table, settings.idempotency_namespace, dynamodb_client=dynamodb_client
        )

    def register_lambda_context(self, context: RemainingTime) -> None:
        """Claims made from now on expire at this context's deadline."""
        self._config.register_lambda_context(context)

    @property
    def persistence_layer(self) -> DynamoDBPersistenceLayer:
        with self._lock:
            if self._layer is None:
                layer = DynamoDBPersistenceLayer(self.table_name, boto3_client=self._client)
                layer.configure(self._config, key_prefix=self.namespace)
                self._layer = layer
            return self._layer

    def once(self, key: str, action: Callable[[], Result]) -> Entry:
        """Run ``action`` inside a claim on ``key`` unless the key is completed or held.

        If ``action`` raises, the claim is released and the error propagates.
        Raises ``LedgerUnavailable`` when DynamoDB fails before ``action`` ran.
        """
        ran: list[Result] = []

        def claimed() -> dict[str, Any]:
            ran.append(action())
            return asdict(ran[0])

        handler = IdempotencyHandler(
            function=claimed,
            function_payload={"key": key},
            config=self._config,
            persistence_store=self.persistence_layer,
            key_prefix=self.namespace,
            function_args=(),
            function_kwargs={},
        )
        try:
            stored = handler.handle()
        except IdempotencyAlreadyInProgressError:
            return Entry(IN_PROGRESS)
        except (IdempotencyPersistenceLayerError, IdempotencyInconsistentStateError) as exc:
            if ran:
                # Sent, but the completion was not written: the claim stays until
                # the deadline, and only a takeover after it could send again.
                logger.error("ledger completion failed after sending", extra={"key": key})
                return Entry(DONE, ran[0])
            raise LedgerUnavailable(f"ledger record {key}: {exc}") from exc
        if ran:
            return Entry(DONE, ran[0])
        return Entry(REPLAYED, Result(**stored))
