"""Settings from the environment: the only place the sender reads ``os.environ``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

# Object tag that S3 lifecycle rules select on: processed batches expire
# sooner than failed ones, which are kept for an operator to look at.
STATE_TAG = "postbag-state"
STATE_DONE = "done"
STATE_FAILED = "failed"


def _prefix(value: str) -> str:
    return value if value.endswith("/") else value + "/"


def _csv(value: str) -> tuple[str, ...]:
    return tuple(item.strip().lower() for item in value.split(",") if item.strip())


@dataclass(frozen=True)
class Settings:
    """Everything the sender can be told. Names are POSTBAG_<FIELD> upper-cased."""

    queue_prefix: str = "queue/"
    receipts_prefix: str = "receipts/"
    failed_prefix: str = "failed/"
    quarantine_prefix: str = "quarantine/"
    # Addresses (news@example.org) or whole domains (example.org) the From may use.
    allowed_senders: tuple[str, ...] = ()
    default_configuration_set: str = ""
    ledger_table: str = "postbag-ledger"
    # Fixed part of every ledger key, so keys survive a rename of the function.
    idempotency_namespace: str = "postbag-sender"
    # Mails per second for one function instance; 0 derives it from SES's quota.
    max_send_rate: float = 0.0
    reserved_concurrency: int = 1
    send_concurrency: int = 8
    # Stop taking new mail this long before Lambda's deadline.
    deadline_margin_ms: int = 15000

    @property
    def attachments_prefix(self) -> str:
        """Large attachments live under the queue prefix (the plugin may write only there)."""
        return self.queue_prefix + "attachments/"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env

        def get(name: str, default: str) -> str:
            return env.get("POSTBAG_" + name.upper(), default)

        d = cls()
        return cls(
            queue_prefix=_prefix(get("queue_prefix", d.queue_prefix)),
            receipts_prefix=_prefix(get("receipts_prefix", d.receipts_prefix)),
            failed_prefix=_prefix(get("failed_prefix", d.failed_prefix)),
            quarantine_prefix=_prefix(get("quarantine_prefix", d.quarantine_prefix)),
            allowed_senders=_csv(get("allowed_senders", "")),
            default_configuration_set=get("default_configuration_set", ""),
            ledger_table=get("ledger_table", d.ledger_table),
            idempotency_namespace=get("idempotency_namespace", d.idempotency_namespace),
            max_send_rate=float(get("max_send_rate", "0")),
            reserved_concurrency=int(get("reserved_concurrency", "1")),
            send_concurrency=int(get("send_concurrency", str(d.send_concurrency))),
            deadline_margin_ms=int(get("deadline_margin_ms", str(d.deadline_margin_ms))),
        )
