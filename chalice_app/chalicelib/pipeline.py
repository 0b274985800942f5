"""One batch object, from S3 key to recorded outcome: the stages in order.

read → parse and validate → (per mail: claim → render → build MIME → send →
complete) → record. Only transient, batch-wide trouble escapes as an
exception, so that Lambda retries the event; everything else is recorded.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import unquote_plus

from chalicelib import fields
from chalicelib.config import Settings
from chalicelib.dispatch import Dispatcher, Job
from chalicelib.errors import (
    BatchFormatError,
    BatchUnreadable,
    MailBuildError,
    PostbagError,
    SenderNotAllowed,
    TransientError,
)
from chalicelib.formats import decode_batch, parse_batch
from chalicelib.mime import estimated_size, raw_message
from chalicelib.model import UNSETTLED, Attachment, Batch, Mail, Outcome, Status
from chalicelib.observe import MAILS_FAILED, SendMetrics, logger
from chalicelib.outcome import Recorder
from chalicelib.send import SesSender
from chalicelib.store import BatchGone, BatchStore

# Raw messages being built or sent at once, in bytes. Sending one holds about
# three times its size while botocore encodes the request (base64, then the form
# body): eight threads sending 10 MB messages peaked at 265 MiB, a few at a
# time at 163 MiB (tests/unit/test_memory.py), of the function's 512 MB.
RAW_BYTES_IN_FLIGHT = 48 * 1024 * 1024


class MemoryBudget:
    """Bytes that the mails being built and sent may hold together; a mail waits for
    its share. A mail larger than the whole budget waits until it is alone."""

    def __init__(self, limit: int = RAW_BYTES_IN_FLIGHT):
        self.limit = limit
        self._used = 0
        self._free = threading.Condition()

    @contextmanager
    def hold(self, size: int) -> Iterator[None]:
        size = min(size, self.limit)
        with self._free:
            self._free.wait_for(lambda: self._used + size <= self.limit)
            self._used += size
        try:
            yield
        finally:
            with self._free:
                self._used -= size
                self._free.notify_all()


@dataclass(frozen=True)
class Stages:
    """The stages, built once per Lambda instance by ``app.py``."""

    settings: Settings
    store: BatchStore
    sender: SesSender
    dispatcher: Dispatcher
    recorder: Recorder
    metrics: SendMetrics | None = None
    memory: MemoryBudget = field(default_factory=MemoryBudget)


def idempotency_key(batch: Batch, mail: Mail) -> str:
    # Ids minted when the mail was queued, never the S3 key or the event id: a
    # replayed event or a re-uploaded batch maps to the same key. The re-drive
    # count is part of it so that an operator's re-drive does send again.
    return f"{batch.batch_id}:{mail.id}:{batch.redrive}"


def deliver(stages: Stages, bucket: str, batch: Batch, mail: Mail) -> str:
    """Send one mail; returns its SES MessageId."""
    key = idempotency_key(batch, mail)
    if not mail.attachments and not batch.meta.headers:
        return stages.sender.send_simple(mail, batch.meta, ledger_key=key)
    with stages.memory.hold(raw_size(mail)):
        files = stages.store.load_attachments(bucket, mail)
        raw = build(batch, mail, files)
        del files  # the attachments' text is in ``raw`` now
        return stages.sender.send_raw(mail, batch.meta, raw, ledger_key=key)


def raw_size(mail: Mail) -> int:
    """About how many bytes ``mail``'s raw message takes (quoted-printable may triple text)."""
    attachments = sum(estimated_size(a.size or 0) for a in mail.attachments)
    return attachments + 3 * (len(mail.html or "") + len(mail.text or "") + len(mail.subject))


def build(batch: Batch, mail: Mail, files: list[tuple[Attachment, str]]) -> bytes:
    """The raw message; whatever the email package raises fails this mail alone.

    The engine takes an exception that is not Postbag's for a bug and stops the
    run: a value the checks let through but the email package chokes on must
    not stop the other mails.
    """
    try:
        return raw_message(mail, batch.meta, files, batch.created_at)
    except PostbagError:
        raise
    except Exception as exc:
        raise MailBuildError(
            "(MIME message)", batch.batch_id, f"cannot build it: {type(exc).__name__}: {exc}",
            mail.id,
        ) from exc


def _margin_ms(stages: Stages, remaining_ms: Callable[[], int]) -> int:
    # A margin as long as the whole invocation would hand every mail on to a
    # continuation, forever: then keep half of the time for sending.
    margin, remaining = stages.settings.deadline_margin_ms, remaining_ms()
    return margin if margin < remaining else remaining // 2


def sender_refused(settings: Settings, batch: Batch) -> SenderNotAllowed | None:
    """Why ``batch``'s From may not send, checked against the settings in force now
    (so a re-drive after the identity is allowed goes out)."""
    sender = batch.meta.sender[1]
    if fields.sender_allowed(sender, settings.allowed_senders):
        return None
    return SenderNotAllowed(
        "meta.from", batch.batch_id,
        f"From {sender} is not in POSTBAG_ALLOWED_SENDERS (allow it, then `postbag redrive`)",
    )


def _send(
    stages: Stages, bucket: str, batch: Batch, remaining_ms: Callable[[], int]
) -> list[Outcome]:
    """Each mail's outcome: sent by the engine, or failed as a whole when the From may not send."""
    refused = sender_refused(stages.settings, batch)
    if refused is not None:
        # Failed, not quarantined: counted in MailsFailed and written to failed/ for re-drive.
        logger.error("From not allowed: every mail failed", extra={"error": str(refused)})
        if batch.mails and stages.metrics:
            stages.metrics.count(MAILS_FAILED, len(batch.mails))
        reason = f"{type(refused).__name__}: {refused}"
        return [Outcome(mail.id, Status.FAILED, reason=reason) for mail in batch.mails]
    jobs = [
        Job(mail.id, idempotency_key(batch, mail), partial(deliver, stages, bucket, batch, mail))
        for mail in batch.mails
    ]
    return stages.dispatcher.run(
        jobs, remaining_ms, _margin_ms(stages, remaining_ms), queued_at=batch.created_at
    )


def _read(stages: Stages, bucket: str, key: str) -> Batch | None:
    """The parsed batch; ``None`` when it is gone or was quarantined."""
    try:
        data, uploaded = stages.store.read_batch(bucket, key)
        text = decode_batch(data, key)
        # Without the bytes before JSON makes the mails' strings, and without the text
        # after, a large batch is held once in memory while it is sent, not three times.
        del data
        batch = parse_batch(text, key, stages.settings, received_at=uploaded)
        del text
    except BatchGone:
        logger.info("batch already gone")
        return None
    except BatchFormatError as exc:
        target = stages.recorder.quarantine(bucket, key, exc)
        logger.error("batch quarantined", extra={"to": target, "error": str(exc)})
        return None
    return batch


def process_object(
    stages: Stages, bucket: str, key: str, remaining_ms: Callable[[], int]
) -> list[Outcome]:
    """Process one batch object; raises ``TransientError`` when it must be retried."""
    logger.append_keys(s3_key=key, batch_id=None)
    batch = _read(stages, bucket, key)
    if batch is None:
        return []
    logger.append_keys(batch_id=batch.batch_id)
    if batch.rejected and stages.metrics:
        stages.metrics.count(MAILS_FAILED, len(batch.rejected))
    outcomes = _send(stages, bucket, batch, remaining_ms)
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


def process_record(
    stages: Stages, record: Any, remaining_ms: Callable[[], int]
) -> TransientError | None:
    """One record of an S3 event, whatever the others do; returns the transient error
    that asks Lambda to retry the event, raises nothing else."""
    try:
        bucket = record["s3"]["bucket"]["name"]
        key = unquote_plus(record["s3"]["object"]["key"])
    except (KeyError, TypeError) as exc:
        logger.error("not an S3 object record, skipped", extra={"error": repr(exc)})
        return None
    try:
        process_object(stages, bucket, key, remaining_ms)
    except TransientError as exc:
        logger.warning("batch will be retried", extra={"key": key, "error": str(exc)})
        return exc
    except Exception as exc:
        # A bug, or input nothing checks for yet: a retry would meet it again.
        logger.exception("unexpected error; quarantining the batch", extra={"key": key})
        return _quarantine(stages, bucket, key, exc)
    return None


def _quarantine(stages: Stages, bucket: str, key: str, error: Exception) -> TransientError | None:
    """Quarantine a batch whose processing raised ``error``, an exception Postbag did not
    expect, so that the event is not retried into the same error."""
    unreadable = BatchUnreadable(
        "(batch)", key, f"processing it raised {type(error).__name__}: {error}"
    )
    try:
        target = stages.recorder.quarantine(bucket, key, unreadable)
    except TransientError as exc:  # S3 failed: the retry finds the batch where it was
        logger.warning("could not quarantine; batch will be retried",
                       extra={"key": key, "error": str(exc)})
        return exc
    except Exception:
        logger.exception("could not quarantine the batch", extra={"key": key})
        return None
    logger.error("batch quarantined", extra={"key": key, "to": target})
    return None
