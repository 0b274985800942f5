"""Settings from the environment: the only place the sender reads ``os.environ``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from chalicelib.errors import ConfigurationError

# Object tag that S3 lifecycle rules select on: processed batches expire
# sooner than failed ones, which are kept for an operator to look at.
STATE_TAG = "postbag-state"
STATE_DONE = "done"
STATE_FAILED = "failed"
# The SES message tag that carries a mail's ledger key digest to SES's events.
LEDGER_KEY_TAG = "postbag-key"
# SES message tags a notify job's mails carry, for feedback events to name the job and its
# list (what an unsubscribe from the mail will mean).
JOB_TAG, LIST_TAG = "postbag-job", "postbag-list"
SENDER_TAGS = frozenset({LEDGER_KEY_TAG, JOB_TAG, LIST_TAG})

# Where everything lives in the bucket. Fixed: the plugin, the IAM policies and
# the lifecycle rules all name them, and nobody needs them elsewhere.
QUEUE_PREFIX = "queue/"  # batches arrive here (and continuations, and re-drives)
# Large attachments: under the queue prefix, as the plugin may write nowhere else.
ATTACHMENTS_PREFIX = QUEUE_PREFIX + "attachments/"
RECEIPTS_PREFIX = "receipts/"  # one receipt per batch: each mail's SES MessageId or reason
FAILED_PREFIX = "failed/"  # mails that failed for good, as batches `postbag redrive` re-queues
QUARANTINE_PREFIX = "quarantine/"  # unreadable batches and their error documents
JOBS_PREFIX = "jobs/"  # version-2 notify jobs: jobs/<job_id>/manifest.json, parts, status
SUPPRESSION_INBOX_PREFIX = "suppressions/inbox/"  # the site's unsubscribes, one per object
SUPPRESSION_EXPORT_KEY = "suppressions/export.json"  # the list, rebuilt within a minute
FEEDBACK_STATUS_KEY = "status/feedback.json"  # SES feedback per day, 7-day rates
# Documents the sender writes for WordPress to read (the plugin may read status/*).
STATUS_PREFIX = "status/"
ACCOUNT_STATUS_KEY = STATUS_PREFIX + "account.json"  # the SES account (chalicelib/account.py)
# WordPress asks for re-drives here (chalicelib/redrive_request.py); the results go beside.
REDRIVE_REQUESTS_PREFIX = "requests/redrive/"


def _csv(value: str) -> tuple[str, ...]:
    return tuple(item.strip().lower() for item in value.split(",") if item.strip())


@dataclass(frozen=True)
class Settings:
    """Everything the sender can be told. Names are POSTBAG_<FIELD> upper-cased."""

    # Addresses (news@example.org) or whole domains (example.org) the From may use.
    allowed_senders: tuple[str, ...] = ()
    default_configuration_set: str = ""
    ledger_table: str = "postbag-ledger"
    # Fixed part of every ledger key, so keys survive a rename of the function.
    idempotency_namespace: str = "postbag-sender"
    # Mails per second for the whole account, shared by every instance that sends
    # (ratelimit.SharedRateLimiter); 0 takes SES's MaxSendRate (ratelimit.account_rate).
    max_send_rate: float = 0.0
    send_concurrency: int = 8
    # Stop taking new mail this long before Lambda's deadline.
    deadline_margin_ms: int = 15000
    # How long SES's Send event may take to reach the ledger before a mail whose
    # send went unanswered is sent again (ledger.py, "evidence").
    evidence_window_seconds: float = 60.0
    # Recipients per work item of a notify job: one SQS message, sent by one invocation.
    chunk_rows: int = 500
    # The SQS queue (its name) that carries notify jobs' work items.
    work_queue: str = "postbag-local-work"
    # The suppression list's table (suppression.py), and how many transient bounces
    # within how many days suppress an address as a permanent bounce does.
    suppression_table: str = "postbag-suppression"
    soft_bounce_limit: int = 3
    soft_bounce_days: float = 7.0

    def __post_init__(self) -> None:
        # 0 would suppress at every transient bounce (0 of them "reach" the limit).
        if self.soft_bounce_limit < 1 or self.soft_bounce_days <= 0:
            raise ConfigurationError(
                f"POSTBAG_SOFT_BOUNCE_LIMIT ({self.soft_bounce_limit}) must be at least 1 and "
                f"POSTBAG_SOFT_BOUNCE_DAYS ({self.soft_bounce_days}) more than 0")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env

        def get(name: str, default: str) -> str:
            return env.get("POSTBAG_" + name.upper(), default)

        d = cls()
        return cls(
            allowed_senders=_csv(get("allowed_senders", "")),
            default_configuration_set=get("default_configuration_set", ""),
            ledger_table=get("ledger_table", d.ledger_table),
            idempotency_namespace=get("idempotency_namespace", d.idempotency_namespace),
            max_send_rate=float(get("max_send_rate", str(d.max_send_rate))),
            send_concurrency=int(get("send_concurrency", str(d.send_concurrency))),
            deadline_margin_ms=int(get("deadline_margin_ms", str(d.deadline_margin_ms))),
            evidence_window_seconds=float(
                get("evidence_window_seconds", str(d.evidence_window_seconds))
            ),
            chunk_rows=int(get("chunk_rows", str(d.chunk_rows))),
            work_queue=get("work_queue", d.work_queue),
            suppression_table=get("suppression_table", d.suppression_table),
            soft_bounce_limit=int(get("soft_bounce_limit", str(d.soft_bounce_limit))),
            soft_bounce_days=float(get("soft_bounce_days", str(d.soft_bounce_days))),
        )
