"""Structured logs and CloudWatch metrics (embedded metric format) through powertools.

Logs are JSON lines; the pipeline appends the batch id with
``logger.append_keys(batch_id=...)`` and each per-mail line carries
``mail_id`` in ``extra``. Metrics are printed as EMF and flushed by the
handler (``metrics.flush_metrics()``) at the end of each invocation.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from datetime import datetime

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from chalicelib.model import Outcome, Status

NAMESPACE = "Postbag"
SERVICE = "postbag"

MAILS_SENT = "MailsSent"
MAILS_FAILED = "MailsFailed"
THROTTLED = "Throttled"
DUPLICATES_SKIPPED = "DuplicatesSkipped"
QUEUE_DELAY = "QueueDelay"
# Held batches and jobs the drainer gave up (drain.py): their mail was never sent.
HELD_RELEASES_FAILED = "HeldReleasesFailed"
# Completions the ledger could not write before the deadline (an alarm-worthy DynamoDB outage).
LEDGER_WRITES_UNRECORDED = "LedgerWritesUnrecorded"

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)


def queue_delay(created_at: datetime, sent_at: datetime) -> float:
    """Seconds from a batch's creation (plugin clock) to a send; never negative on clock skew."""
    return max(0.0, (sent_at - created_at).total_seconds())


class SendMetrics:
    """The sender's metrics, safe to record from worker threads.

    powertools' ``add_metric`` reads, changes and writes back a shared dict,
    so concurrent callers can lose values: every call goes through one lock.
    """

    def __init__(self, sink: Metrics = metrics):
        self._sink = sink
        self._lock = threading.Lock()

    def count(self, name: str, value: int = 1) -> None:
        with self._lock:
            self._sink.add_metric(name=name, unit=MetricUnit.Count, value=value)

    def outcomes(self, outcomes: Iterable[Outcome]) -> None:
        """Count what a run did: sent and failed now, and what earlier attempts had settled."""
        sent = failed = skipped = 0
        for outcome in outcomes:
            if outcome.replayed:
                skipped += 1
            elif outcome.status is Status.SENT:
                sent += 1
            elif outcome.status is Status.FAILED:
                failed += 1
        for name, value in ((MAILS_SENT, sent), (MAILS_FAILED, failed),
                            (DUPLICATES_SKIPPED, skipped)):
            if value:
                self.count(name, value)

    def queue_delay(self, seconds: float) -> None:
        with self._lock:
            self._sink.add_metric(name=QUEUE_DELAY, unit=MetricUnit.Seconds, value=seconds)
