"""One batch object, from S3 key to recorded outcome: the stages in order.

read → parse and validate → (per mail: claim → render → build MIME → send →
complete) → record. Only transient, batch-wide trouble escapes as an
exception, so that Lambda retries the event; everything else is recorded.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from typing import Any

from chalicelib import fields
from chalicelib.config import Settings
from chalicelib.dispatch import Dispatcher, Job
from chalicelib.errors import (
    BatchFormatError,
    HeldObjectGone,
    MailBuildError,
    PostbagError,
    SenderNotAllowed,
    TransientError,
)
from chalicelib.formats import decode_batch, parse_batch
from chalicelib.hold import BATCH, Held, HoldBook, Verdict
from chalicelib.mime import estimated_size, raw_message
from chalicelib.model import (
    UNSETTLED,
    Address,
    Attachment,
    Batch,
    Mail,
    Meta,
    Outcome,
    Status,
)
from chalicelib.observe import MAILS_FAILED, SendMetrics, logger
from chalicelib.outcome import Recorder
from chalicelib.records import handle_record
from chalicelib.schedule import parse_when
from chalicelib.send import SesSender
from chalicelib.store import BatchGone, BatchStore
from chalicelib.suppression import SuppressionStore, normalise

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
    # The list checked before every send (``suppression.py``); app.py always sets it.
    suppression: SuppressionStore | None = None
    # Batches with a send_at wait here until due (``hold.py``); app.py always sets it.
    hold: HoldBook | None = None


SUPPRESSED_REASON = "every recipient is on the suppression list"


def idempotency_key(batch: Batch, mail: Mail) -> str:
    # Ids minted when the mail was queued, never the S3 key or the event id: a
    # replayed event or a re-uploaded batch maps to the same key. The re-drive
    # count is part of it so that an operator's re-drive does send again.
    return f"{batch.batch_id}:{mail.id}:{batch.redrive}"


def deliver(stages: Stages, bucket: str, batch: Batch, mail: Mail) -> str:
    """Send one mail of a batch; returns its SES MessageId."""
    return send_mail(stages, bucket, batch.meta, batch.created_at, batch.batch_id, mail,
                     idempotency_key(batch, mail))


def send_mail(
    stages: Stages, bucket: str, meta: Meta, date: datetime, source: str, mail: Mail, key: str
) -> str:
    """Send one mail, a batch's or a notify job's (``source`` names it in errors): without
    MIME when SES takes it as it is, else as a raw message. Returns the SES MessageId."""
    if stages.sender.simple_fits(mail, meta):
        return stages.sender.send_simple(mail, meta, ledger_key=key)
    with stages.memory.hold(raw_size(mail)):
        files = stages.store.load_attachments(bucket, mail)
        raw = build(meta, date, source, mail, files)
        del files  # the attachments' text is in ``raw`` now
        return stages.sender.send_raw(mail, meta, raw, ledger_key=key)


def raw_size(mail: Mail) -> int:
    """About how many bytes ``mail``'s raw message takes (quoted-printable may triple text)."""
    attachments = sum(estimated_size(a.size or 0) for a in mail.attachments)
    return attachments + 3 * (len(mail.html or "") + len(mail.text or "") + len(mail.subject))


def build(
    meta: Meta, date: datetime, source: str, mail: Mail, files: list[tuple[Attachment, str]]
) -> bytes:
    """The raw message; whatever the email package raises fails this mail alone.

    The engine takes an exception that is not Postbag's for a bug and stops the
    run: a value the checks let through but the email package chokes on must
    not stop the other mails.
    """
    try:
        return raw_message(mail, meta, files, date)
    except PostbagError:
        raise
    except Exception as exc:
        raise MailBuildError(
            "(MIME message)", source, f"cannot build it: {type(exc).__name__}: {exc}", mail.id,
        ) from exc


def margin_ms(stages: Stages, remaining_ms: Callable[[], int]) -> int:
    """How long before Lambda's deadline a run stops starting mails."""
    # A margin as long as the whole invocation would hand every mail on to a
    # continuation, forever: then keep half of the time for sending.
    margin, remaining = stages.settings.deadline_margin_ms, remaining_ms()
    return margin if margin < remaining else remaining // 2


def sender_refused(settings: Settings, meta: Meta, source: str) -> SenderNotAllowed | None:
    """Why the From of ``source`` (a batch, a job) may not send, checked against the
    settings in force now (so a re-drive after the identity is allowed goes out)."""
    sender = meta.sender[1]
    if fields.sender_allowed(sender, settings.allowed_senders):
        return None
    return SenderNotAllowed(
        "meta.from", source,
        f"From {sender} is not in POSTBAG_ALLOWED_SENDERS (allow it, then `postbag redrive`)",
    )


def _unsuppressed(stages: Stages, batch: Batch) -> tuple[Batch, list[Outcome]]:
    """``batch`` without its suppressed recipients (one lookup for the whole batch), and a
    ``suppressed`` outcome for each mail left with nobody to send to. Raises
    ``SuppressionUnavailable`` (transient) when the list cannot be read: nothing goes out
    blind to someone who may have unsubscribed."""
    meta = batch.meta
    if stages.suppression is None or not batch.mails:
        return batch, []
    everyone = [addr for mail in batch.mails for _, addr in mail.to]
    everyone += [addr for _, addr in (*meta.cc, *meta.bcc)]
    found = stages.suppression.suppressed(everyone, meta.list_name)
    if not found:
        return batch, []

    def keep(addresses: tuple[Address, ...]) -> tuple[Address, ...]:
        return tuple(a for a in addresses if normalise(a[1]) not in found)

    meta = replace(meta, cc=keep(meta.cc), bcc=keep(meta.bcc))
    emptied = [mail for mail in batch.mails if not (keep(mail.to) or meta.cc or meta.bcc)]
    # Sent before the address was suppressed (a continuation, a replay): the dispatcher's
    # claim reports it sent, as the ledger has it. Its recipients are gone all the same.
    sent = stages.dispatcher.settled([idempotency_key(batch, mail) for mail in emptied])
    mails, suppressed = [], []
    for mail in batch.mails:
        to = keep(mail.to)
        if to or meta.cc or meta.bcc or idempotency_key(batch, mail) in sent:
            mails.append(replace(mail, to=to))
        else:
            suppressed.append(Outcome(mail.id, Status.SUPPRESSED, reason=SUPPRESSED_REASON))
    logger.info("suppressed recipients left out", extra={"addresses": len(found),
                                                         "mails": len(suppressed)})
    return replace(batch, meta=meta, mails=tuple(mails)), suppressed


def _send(
    stages: Stages, bucket: str, batch: Batch, remaining_ms: Callable[[], int]
) -> list[Outcome]:
    """Each mail's outcome: sent by the engine, or failed as a whole when the From may not send."""
    refused = sender_refused(stages.settings, batch.meta, batch.batch_id)
    if refused is not None:
        # Failed, not quarantined: counted in MailsFailed and written to failed/ for re-drive.
        logger.error("From not allowed: every mail failed", extra={"error": str(refused)})
        if batch.mails and stages.metrics:
            stages.metrics.count(MAILS_FAILED, len(batch.mails))
        reason = f"{type(refused).__name__}: {refused}"
        return [Outcome(mail.id, Status.FAILED, reason=reason) for mail in batch.mails]
    batch, suppressed = _unsuppressed(stages, batch)
    jobs = [
        Job(mail.id, idempotency_key(batch, mail), partial(deliver, stages, bucket, batch, mail))
        for mail in batch.mails
    ]
    return suppressed + stages.dispatcher.run(
        jobs, remaining_ms, margin_ms(stages, remaining_ms), queued_at=batch.created_at
    )


def _read(stages: Stages, bucket: str, key: str, held: bool = False) -> Batch | None:
    """The parsed batch; ``None`` when it is gone or was quarantined. A ``held`` batch
    gone is ``HeldObjectGone``: its mails would never be sent."""
    try:
        data, uploaded = stages.store.read_batch(bucket, key)
        text = decode_batch(data, key)
        # Without the bytes before JSON makes the mails' strings, and without the text
        # after, a large batch is held once in memory while it is sent, not three times.
        del data
        batch = parse_batch(text, key, stages.settings, received_at=uploaded)
        del text
    except BatchGone as exc:
        if held:
            raise HeldObjectGone(f"held batch {key} is gone: none of its mails was sent") from exc
        logger.info("batch already gone")
        return None
    except BatchFormatError as exc:
        target = stages.recorder.quarantine(bucket, key, exc)
        logger.error("batch quarantined", extra={"to": target, "error": str(exc)})
        return None
    return batch


def _admit(stages: Stages, bucket: str, key: str, batch: Batch) -> Verdict | None:
    """Whether the batch goes now, waits for its ``send_at`` (held, or released by the
    drainer) or was cancelled; ``None`` when its time is refused (quarantined)."""
    label = f"{batch.batch_id} ({key})"
    hold = stages.hold
    now = hold.now() if hold else datetime.now(UTC)
    try:
        when = parse_when(batch.document, label, now)
        if hold is None and when.due is not None and when.due > now:
            raise BatchFormatError("send_at", label, "this sender holds no scheduled sends")
    except BatchFormatError as exc:
        target = stages.recorder.quarantine(bucket, key, exc)
        logger.error("batch quarantined", extra={"to": target, "error": str(exc)})
        return None
    if hold is None:
        return Verdict.SEND
    verdict = hold.admit(BATCH, batch.batch_id, bucket, key, when)
    if verdict is not Verdict.SEND:
        logger.info("batch held" if verdict is Verdict.HOLD else "held batch cancelled",
                    extra=when.document())
    return verdict


def process_object(
    stages: Stages, bucket: str, key: str, remaining_ms: Callable[[], int], held: bool = False
) -> list[Outcome]:
    """Process one batch object; raises ``TransientError`` when it must be retried.
    ``held``: the drainer releases it (then a batch gone raises ``HeldObjectGone``)."""
    logger.append_keys(s3_key=key, batch_id=None)
    batch = _read(stages, bucket, key, held)
    if batch is None:
        return []
    logger.append_keys(batch_id=batch.batch_id)
    verdict = _admit(stages, bucket, key, batch)
    if verdict is None or verdict is Verdict.HOLD:
        return []
    if batch.rejected and stages.metrics:
        stages.metrics.count(MAILS_FAILED, len(batch.rejected))
    outcomes = (_send(stages, bucket, batch, remaining_ms) if verdict is Verdict.SEND
                else [Outcome(mail.id, Status.CANCELLED) for mail in batch.mails])
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


def release_held(stages: Stages, held: Held, remaining_ms: Callable[[], int]) -> bool:
    """The drainer's release of a held batch (``drain.Release``): processed as its upload's
    event would be; a batch gone meanwhile raises ``HeldObjectGone``."""
    process_object(stages, held.bucket, held.key, remaining_ms, held=True)
    return True


def process_record(
    stages: Stages, record: Any, remaining_ms: Callable[[], int]
) -> TransientError | None:
    """One record of an S3 event, whatever the others do (``records.handle_record``)."""
    return handle_record(
        record, lambda bucket, key: process_object(stages, bucket, key, remaining_ms),
        stages.recorder,
    )
