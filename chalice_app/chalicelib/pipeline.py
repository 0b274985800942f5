"""One batch object, from S3 key to recorded outcome: the stages in order.

read → parse and validate → (per mail: claim → render → build MIME → send →
complete) → record. Only transient, batch-wide trouble escapes as an
exception, so that Lambda retries the event; everything else is recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from chalicelib.config import Settings
from chalicelib.dispatch import Dispatcher, Job
from chalicelib.errors import BatchFormatError, TransientError
from chalicelib.formats import decode_batch, parse_batch
from chalicelib.mime import raw_message
from chalicelib.model import UNSETTLED, Batch, Mail, Outcome, Status
from chalicelib.observe import MAILS_FAILED, SendMetrics, logger
from chalicelib.outcome import Recorder
from chalicelib.send import SesSender
from chalicelib.store import BatchGone, BatchStore


@dataclass(frozen=True)
class Stages:
    """The stages, built once per Lambda instance by ``app.py``."""

    settings: Settings
    store: BatchStore
    sender: SesSender
    dispatcher: Dispatcher
    recorder: Recorder
    metrics: SendMetrics | None = None


def idempotency_key(batch: Batch, mail: Mail) -> str:
    # Ids minted when the mail was queued, never the S3 key or the event id: a
    # replayed event or a re-uploaded batch maps to the same key. The re-drive
    # count is part of it so that an operator's re-drive does send again.
    return f"{batch.batch_id}:{mail.id}:{batch.redrive}"


def deliver(stages: Stages, bucket: str, batch: Batch, mail: Mail) -> str:
    """Send one mail; returns its SES MessageId."""
    if not mail.attachments and not batch.meta.headers:
        return stages.sender.send_simple(mail, batch.meta)
    files = stages.store.load_attachments(bucket, mail)
    raw = raw_message(mail, batch.meta, files, batch.created_at)
    return stages.sender.send_raw(mail, batch.meta, raw)


def _margin_ms(stages: Stages, remaining_ms: Callable[[], int]) -> int:
    # A margin as long as the whole invocation would hand every mail on to a
    # continuation, forever: then keep half of the time for sending.
    margin, remaining = stages.settings.deadline_margin_ms, remaining_ms()
    return margin if margin < remaining else remaining // 2


def process_object(
    stages: Stages, bucket: str, key: str, remaining_ms: Callable[[], int]
) -> list[Outcome]:
    """Process one batch object; raises ``TransientError`` when it must be retried."""
    logger.append_keys(s3_key=key, batch_id=None)
    try:
        data, uploaded = stages.store.read_batch(bucket, key)
    except BatchGone:
        logger.info("batch already gone")
        return []
    try:
        text = decode_batch(data, key)
        # Without the bytes before JSON makes the mails' strings, and without the text
        # after, a large batch is held once in memory while it is sent, not three times.
        del data
        batch = parse_batch(text, key, stages.settings, received_at=uploaded)
        del text
    except BatchFormatError as exc:
        target = stages.recorder.quarantine(bucket, key, exc)
        logger.error("batch quarantined", extra={"to": target, "error": str(exc)})
        return []
    logger.append_keys(batch_id=batch.batch_id)
    if batch.rejected and stages.metrics:
        stages.metrics.count(MAILS_FAILED, len(batch.rejected))
    jobs = [
        Job(mail.id, idempotency_key(batch, mail), partial(deliver, stages, bucket, batch, mail))
        for mail in batch.mails
    ]
    outcomes = stages.dispatcher.run(
        jobs, remaining_ms, _margin_ms(stages, remaining_ms), queued_at=batch.created_at
    )
    outcomes += [Outcome(r.mail_id, Status.FAILED, reason=str(r.error)) for r in batch.rejected]
    name = stages.recorder.record(bucket, key, batch, outcomes)
    logger.info("batch recorded", extra={"receipt": name})
    unsettled = [o.mail_id for o in outcomes if o.status in UNSETTLED]
    if unsettled:
        raise TransientError(
            f"batch {batch.batch_id}: {len(unsettled)} mail(s) not settled yet "
            f"(SES unavailable or sent by another invocation); retrying the batch"
        )
    return outcomes
