"""One work item of a notify job: its rows become personalised mails, each sent once.

cancelled? → room in the daily quota? → the job (manifest, cached per instance)
→ the item's rows → per recipient: claim → render → send → complete, on the
batch path's engine (``dispatch.Dispatcher``: the same shared rate limiter,
retries, outcomes and SES-evidence machinery) → count the settled rows once
(``tally``) → write the failed ones for re-drive → hand the rest back.

Nothing about one recipient fails the item: a bad row or a template that fails
for one recipient fails that row alone. Rows the run did not settle go back
to the queue as the item's rest: at once when the deadline came, after about
SES's evidence window when another invocation holds them or SES's answer was
lost, after SQS's longest delay when the account stopped sending. Only
trouble that must redeliver the whole message (S3, DynamoDB or SQS failing
where nothing can be handed back) escapes as ``TransientError``.

CPU per personalised mail (read rows, claim, render, send, complete, count):
``bench/fanout.py cpu`` runs ``app.on_work_item`` (→ ``handle_message`` →
``process_work_item``) on the splitter's work items with an SES that answers
at once; about 0.33 ms a mail on these machines, of which botocore's calls
(claims, completions, rate leases, the suppression check) take about half.
"""

from __future__ import annotations

import gzip
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from typing import Any

from chalicelib import unsubscribe
from chalicelib.config import FAILED_PREFIX, JOBS_PREFIX
from chalicelib.dispatch import Job
from chalicelib.errors import BatchFormatError, MailBuildError
from chalicelib.formats.v2 import parse_manifest, read_rows
from chalicelib.model import UNSETTLED, Meta, NotifyJob, Outcome, Recipient, Status, WorkItem
from chalicelib.observe import logger, queue_delay
from chalicelib.pipeline import Stages, margin_ms, send_mail, sender_refused
from chalicelib.progress import JobProgress
from chalicelib.quota import QuotaWatch
from chalicelib.render import Renderer
from chalicelib.split import PartCheck
from chalicelib.store import MAX_BATCH_BYTES, BatchGone, NotModified, get_object, read_body
from chalicelib.suppression import normalise
from chalicelib.tally import Tally, chunk_name
from chalicelib.workqueue import MAX_DELAY_SECONDS, WorkQueue, decode

# The account stopped sending (paused, daily quota): come back after SQS's longest delay.
PAUSE_DELAY_SECONDS = MAX_DELAY_SECONDS
# Bytes of part files an instance keeps: consecutive chunks of a part read it once.
PART_CACHE_BYTES = 96 * 1024 * 1024
# Manifests an instance keeps parsed (a few jobs at a time, each checked by ETag).
JOBS_CACHED = 8
FINAL = frozenset({Status.SENT, Status.DUPLICATE, Status.FAILED, Status.SUPPRESSED})
# Hand-backs of rows SES or the ledger left unsettled (answer unknown, SES or DynamoDB
# unavailable, claim held by another invocation), about an evidence window apart: then
# those rows fail with the reason and are written down for re-drive, so a job ends even
# when a fault outlasts it. Hand-backs at the deadline or while the account is paused or
# out of quota are not counted: they end when the account sends again.
UNSETTLED_HAND_BACKS = 8
LISTED_EARLIER = "the address is listed earlier in the same work item"
SUPPRESSED_REASON = "the address is on the suppression list"
MISSING_ROW = "field (row): no such row in the part"


@dataclass(frozen=True)
class FanoutStages:
    """The fan-out's stages, built once per Lambda instance by ``app.py``; ``mail`` is the
    batch path's bundle (store, sender, dispatcher with the shared limiter, recorder)."""

    mail: Stages
    queue: WorkQueue
    progress: JobProgress
    renderer: Renderer
    quota: QuotaWatch
    tally: Tally
    jobs: JobCache


@dataclass(frozen=True)
class Handled:
    """What one work item came to."""

    counts: Mapping[str, int]  # what this run added to the job's progress
    handed_back: WorkItem | None = None  # the rest, put back on the queue
    delay: int = 0  # seconds before the rest is delivered again
    dropped: str | None = None  # why its rows failed unsent (its job is gone or unreadable)


class JobCache:
    """Parsed manifests (checked by ETag at each use) and part files, per instance."""

    def __init__(self, s3_client: Any, part_bytes: int = PART_CACHE_BYTES):
        self._s3 = s3_client
        self._jobs: OrderedDict[tuple[str, str], tuple[str, NotifyJob]] = OrderedDict()
        self._parts: OrderedDict[str, bytes] = OrderedDict()  # sha256 → bytes
        self._part_bytes = part_bytes
        self._lock = threading.Lock()

    def job(self, bucket: str, key: str, settings: Any) -> NotifyJob:
        """The job at ``key``, parsed once per version of the manifest. Raises ``BatchGone``,
        ``BatchFormatError`` and ``StorageUnavailable``."""
        cached = self._jobs.get((bucket, key))
        try:
            response = get_object(self._s3, bucket, key, MAX_BATCH_BYTES,
                                  if_none_match=cached[0] if cached else None)
        except NotModified:
            assert cached is not None
            self._jobs.move_to_end((bucket, key))
            return cached[1]
        job = parse_manifest(read_body(response, key), key, settings)
        self._jobs[(bucket, key)] = (response["ETag"], job)
        while len(self._jobs) > JOBS_CACHED:
            self._jobs.popitem(last=False)
        return job

    def part(self, stages: Stages, bucket: str, job: NotifyJob, index: int) -> bytes:
        """Part ``index`` of ``job``, as stored; ``BatchFormatError`` when it is not the
        part the job was split from."""
        if not 0 <= index < len(job.parts):
            raise BatchFormatError("part", job.job_id, f"the job has no part {index}")
        part = job.parts[index]
        with self._lock:
            data = self._parts.get(part.sha256)
            if data is not None:
                self._parts.move_to_end(part.sha256)
                return data
        # Read no further than the manifest's size: a part replaced by a larger object
        # costs no more memory than the one split.
        check = PartCheck(stages.store.stream(bucket, part.key), part.bytes)
        data = b"".join(check)
        if check.mismatch(part):
            raise BatchFormatError(f"parts[{index}]", job.job_id,
                                   "the stored part changed since the job was split")
        with self._lock:
            self._parts[part.sha256] = data
            while sum(map(len, self._parts.values())) > self._part_bytes and len(self._parts) > 1:
                self._parts.popitem(last=False)
        return data


def ledger_key(job: NotifyJob, email: str, redrive: int) -> str:
    # docs/job-format.md: an address listed twice in a job gets one mail.
    return f"{job.job_id}:{email.lower()}:{redrive}"


def mail_id(item: WorkItem, row: int) -> str:
    """A recipient's name in outcomes and the ledger: its part and row (a re-drive's rows
    by their chunk)."""
    return f"{chunk_name(item)}:{row}" if item.rows else f"{item.part}:{row}"


def _inline_rows(item: WorkItem) -> tuple[list[Recipient], list[tuple[int, str]]]:
    """A re-drive item's rows, read as a part's."""
    data = gzip.compress("\n".join(item.rows).encode("utf-8"), compresslevel=1)
    return read_rows(data, item.part, item.start, item.end, f"re-driven rows of job {item.job_id}")


def _rows(stages: FanoutStages, item: WorkItem, job: NotifyJob
          ) -> tuple[list[Recipient], list[tuple[int, str]]]:
    """The item's valid recipients and its bad rows with their reasons."""
    if item.rows:  # a re-drive: the failed rows themselves
        recipients, bad = _inline_rows(item)
    else:
        data = stages.jobs.part(stages.mail, item.bucket, job, item.part)
        recipients, bad = read_rows(data, item.part, item.start, item.end,
                                    job.parts[item.part].key)
    seen = {r.row for r in recipients} | {row for row, _ in bad}
    bad += [(row, MISSING_ROW) for row in range(item.start, item.end) if row not in seen]
    return recipients, bad


def _deliver(stages: FanoutStages, bucket: str, job: NotifyJob, recipient: Recipient,
             mail: str, key: str) -> str:
    """Render the recipient's mail and send it (a ``RenderError`` fails it alone)."""
    meta = _list_meta(job, recipient, mail)
    rendered = stages.renderer.render(job, recipient, mail)
    return send_mail(stages.mail, bucket, meta, job.created_at, job.job_id, rendered, key)


def _list_meta(job: NotifyJob, recipient: Recipient, mail: str) -> Meta:
    """The job's meta, with this recipient's RFC 8058 headers when the job names a list
    (a row without its URL fails alone: such a mail must not go out unsubscribable)."""
    if not job.list_name:
        return job.meta
    if not recipient.unsubscribe_url:
        raise MailBuildError("unsubscribe_url", job.job_id,
                             "required on every row of a job whose meta names a list", mail)
    built = unsubscribe.headers(recipient.unsubscribe_url, job.meta.unsubscribe_mailto)
    return replace(job.meta, headers=(*job.meta.headers, *built))


def _never_sent_again(job: NotifyJob, mail: str) -> str:
    """A suppressed row the ledger had as sent: its claim is a replay, so this is never
    called; should the record have expired meanwhile, the row fails rather than mails."""
    raise MailBuildError("email", job.job_id, SUPPRESSED_REASON, mail)


def _suppressed(stages: FanoutStages, job: NotifyJob, recipients: list[Recipient]) -> set[str]:
    """The recipients' addresses on the list, for all mail or the job's list: one lookup
    round for the item. ``SuppressionUnavailable`` (transient) redelivers the item, with
    nothing sent."""
    if stages.mail.suppression is None or not recipients:
        return set()
    return stages.mail.suppression.suppressed([r.email for r in recipients], job.list_name)


def _send(stages: FanoutStages, item: WorkItem, job: NotifyJob, recipients: list[Recipient],
          remaining_ms: Callable[[], int]) -> dict[int, Outcome]:
    """Each recipient's outcome by row: the ledger's engine for the first of each address,
    ``duplicate`` for the later ones (one transaction cannot hold one key twice)."""
    outcomes: dict[int, Outcome] = {}
    jobs, rows, keys = [], [], set()
    suppressed = _suppressed(stages, job, recipients)
    # Sent before the address was suppressed (a redelivery, a continuation): the dispatcher's
    # claim reports the row sent, as the ledger has it; its send is never made.
    sent_before = stages.mail.dispatcher.settled(sorted(
        {ledger_key(job, r.email, item.redrive) for r in recipients
         if normalise(r.email) in suppressed}))
    for recipient in recipients:
        key, name = ledger_key(job, recipient.email, item.redrive), mail_id(item, recipient.row)
        if normalise(recipient.email) in suppressed and key not in sent_before:
            outcomes[recipient.row] = Outcome(name, Status.SUPPRESSED, reason=SUPPRESSED_REASON)
            continue
        if key in keys:
            outcomes[recipient.row] = Outcome(name, Status.DUPLICATE, reason=LISTED_EARLIER)
            continue
        keys.add(key)
        rows.append(recipient.row)
        send = (partial(_never_sent_again, job, name) if key in sent_before else
                partial(_deliver, stages, item.bucket, job, recipient, name, key))
        jobs.append(Job(name, key, send))
    refused = sender_refused(stages.mail.settings, job.meta, job.job_id)
    if refused is not None:
        logger.error("From not allowed: the work item's recipients failed",
                     extra={"error": str(refused)})
        reason = f"{type(refused).__name__}: {refused}"
        sent = [Outcome(j.mail_id, Status.FAILED, reason=reason) for j in jobs]
    else:
        # The queue delay once a chunk, not once a mail: a metric per mail costs CPU that
        # counts at hundreds of mails a second, and one chunk's mails share it.
        if jobs and stages.mail.metrics is not None:
            stages.mail.metrics.queue_delay(queue_delay(job.created_at, datetime.now(UTC)))
        sent = stages.mail.dispatcher.run(jobs, remaining_ms, margin_ms(stages.mail, remaining_ms))
    outcomes.update(zip(rows, sent, strict=True))
    return outcomes


def count_as(outcome: Outcome) -> str:
    """The job status a settled row counts as."""
    if outcome.status is Status.DUPLICATE:
        # Sent for this very row by an earlier delivery, or for another row of the address.
        return "sent" if outcome.replayed else "duplicate"
    return outcome.status.value


def _cut(item: WorkItem, outcomes: Mapping[int, Outcome]) -> int:
    """The first row not settled: rows before it are counted, it and the rest handed back."""
    for row in range(item.start, item.end):
        if outcomes[row].status not in FINAL:
            return row
    return item.end


def _delay(stages: FanoutStages, outcomes: Sequence[Outcome]) -> int:
    if any(o.status is Status.PAUSED for o in outcomes):
        return PAUSE_DELAY_SECONDS
    if _unsettled(outcomes):  # held elsewhere, or SES unknown or unavailable
        return int(stages.mail.settings.evidence_window_seconds)
    return 0  # handed on at the deadline


def _unsettled(outcomes: Sequence[Outcome]) -> bool:
    """Whether the rest goes back for SES's or the ledger's trouble (not a pause)."""
    statuses = {o.status for o in outcomes}
    return Status.PAUSED not in statuses and bool(statuses & UNSETTLED)


def _give_up(item: WorkItem, outcomes: Mapping[int, Outcome], cut: int
             ) -> dict[int, Outcome]:
    """``outcomes`` with the rows from ``cut`` on failed: unsettled too many times."""
    given_up = dict(outcomes)
    for row in range(cut, item.end):
        outcome = outcomes[row]
        if outcome.status not in FINAL:
            reason = (f"still unsettled after {item.attempt} hand-backs ({outcome.status.value}"
                      f"{': ' + outcome.reason if outcome.reason else ''}); check SES's "
                      f"sending events before re-driving")
            given_up[row] = Outcome(outcome.mail_id, Status.FAILED, reason=reason)
    return given_up


def failed_key(item: WorkItem, low: int) -> str:
    return (f"{FAILED_PREFIX}{JOBS_PREFIX}{item.job_id}/redrive-{item.redrive}/"
            f"{chunk_name(item)}.{low}.json")


def _row_line(recipient: Recipient) -> str:
    """The recipient as a part file's line, for re-drive."""
    doc: dict[str, Any] = {"email": recipient.email}
    if recipient.name:
        doc["name"] = recipient.name
    if recipient.user_id is not None:
        doc["user_id"] = recipient.user_id
    if recipient.vars:
        doc["vars"] = recipient.vars
    if recipient.unsubscribe_url:
        doc["unsubscribe_url"] = recipient.unsubscribe_url
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


def _record_failed(stages: FanoutStages, item: WorkItem, low: int, cut: int,
                   recipients: Mapping[int, Recipient], outcomes: Mapping[int, Outcome]) -> None:
    """Rows ``low``..``cut`` that failed, as the document ``redrive.redrive_job`` re-queues:
    recipients SES refused or whose mail failed to render or build, and (for the operator,
    never re-driven) rows that break the format."""
    failed = [row for row in range(low, cut) if outcomes[row].status is Status.FAILED]
    if not failed:
        return
    redrivable = [row for row in failed if row in recipients]
    document = {
        "version": 2, "kind": "failed-recipients", "job_id": item.job_id,
        "manifest_key": item.manifest_key, "redrive": item.redrive,
        "rows": [_row_line(recipients[row]) for row in redrivable],
        "reasons": [{"mail_id": outcomes[row].mail_id, "email": recipients[row].email,
                     "reason": outcomes[row].reason} for row in redrivable],
        "rejected": [{"mail_id": outcomes[row].mail_id, "reason": outcomes[row].reason}
                     for row in failed if row not in recipients],
    }
    stages.mail.recorder.put(item.bucket, failed_key(item, low), document)


def _counts(item: WorkItem, outcomes: Mapping[int, Outcome], low: int, cut: int
            ) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in range(low, cut):
        status = count_as(outcomes[row])
        counts[status] = counts.get(status, 0) + 1
    if item.redrive and item.rows:
        # Re-driven rows were counted failed once: what they come to now replaces that.
        counts["failed"] = counts.get("failed", 0) - (cut - low)
    return {status: n for status, n in counts.items() if n}


def _count(stages: FanoutStages, item: WorkItem, cut: int,
           counts_from: Callable[[int], dict[str, int]], chunk_done: int) -> dict[str, int]:
    """Count rows ``start``..``cut`` that nobody counted yet (``counts_from(low)`` says what
    they came to) in one transaction with the tally's mark, then publish the status (also
    when a delivery before counted them: its publishing may be what failed)."""
    counted: dict[str, int] = {}

    def counting(low: int) -> Mapping[str, Any]:
        counted.clear()
        counted.update(counts_from(low))
        return stages.progress.counting(item.job_id, counted, chunks_done=chunk_done)

    if cut <= item.start:
        return {}
    if stages.tally.claim(item, cut, counting) is None:
        counted.clear()
    stages.progress.publish(item.bucket, item.job_id)
    return counted


def _settle(stages: FanoutStages, item: WorkItem, outcomes: Mapping[int, Outcome],
            recipients: Mapping[int, Recipient], cut: int) -> dict[str, int]:
    """Count rows ``start``..``cut`` that nobody counted yet, their failed ones written down
    first: a fault in between leaves them uncounted, and the redelivery writes the same
    documents again."""
    def counts_from(low: int) -> dict[str, int]:
        _record_failed(stages, item, low, cut, recipients, outcomes)
        return _counts(item, outcomes, low, cut)

    return _count(stages, item, cut, counts_from, int(cut == item.end and not item.rows))


def _hand_back(stages: FanoutStages, item: WorkItem, start: int, delay: int,
               unsettled: bool = False) -> WorkItem:
    rest = replace(item, start=start, attempt=item.attempt + int(unsettled))
    stages.queue.hand_back(rest, delay)
    logger.info("work item handed back", extra={"start": start, "end": item.end,
                                                "delay": delay})
    return rest


def _cancelled(stages: FanoutStages, item: WorkItem) -> Handled:
    """A cancelled job's item: its rows counted ``cancelled``, nothing sent."""
    def counts_from(low: int) -> dict[str, int]:
        counts = {"cancelled": item.end - low}
        if item.redrive and item.rows:
            counts["failed"] = -(item.end - low)
        return counts

    return Handled(_count(stages, item, item.end, counts_from, int(not item.rows)))


def _job(stages: FanoutStages, item: WorkItem) -> NotifyJob | str:
    """The item's job, or why the item is dropped."""
    try:
        job = stages.jobs.job(item.bucket, item.manifest_key, stages.mail.settings)
    except BatchGone:
        return f"the job's manifest {item.manifest_key} is gone"
    except BatchFormatError as exc:
        return f"the job's manifest is unreadable: {exc}"
    if job.job_id != item.job_id:
        return f"the manifest at {item.manifest_key} is job {job.job_id}, not {item.job_id}"
    return job


def _dropped(stages: FanoutStages, item: WorkItem, reason: str) -> Handled:
    """An item whose job or rows cannot be read (its manifest expired or was replaced, its
    part changed): every row counted ``failed`` with ``reason`` and written down (a
    re-drive's inline rows can be re-driven again; a part's rows are listed as
    ``rejected``), so the job still reaches its end."""
    logger.error("work item dropped: its rows are counted failed", extra={"reason": reason})
    recipients = _inline_rows(item)[0] if item.rows else []
    outcomes = {row: Outcome(mail_id(item, row), Status.FAILED, reason=reason)
                for row in range(item.start, item.end)}
    counts = _settle(stages, item, outcomes, {r.row: r for r in recipients}, item.end)
    return Handled(counts, dropped=reason)


def process_work_item(
    stages: FanoutStages, item: WorkItem, remaining_ms: Callable[[], int]
) -> Handled:
    """Send one work item's mails; raises ``TransientError`` when the message must be
    delivered again (nothing could be counted or handed back)."""
    logger.append_keys(job_id=item.job_id, part=item.part, start=item.start, end=item.end)
    if stages.progress.cancelled(item.bucket, item.job_id):
        logger.info("job cancelled: the item's rows are counted cancelled")
        return _cancelled(stages, item)
    if not stages.quota.allows(item.end - item.start):
        logger.warning("the daily sending quota has no room for the item: handed back")
        rest = _hand_back(stages, item, item.start, PAUSE_DELAY_SECONDS)
        return Handled({}, rest, PAUSE_DELAY_SECONDS)
    job = _job(stages, item)
    if isinstance(job, str):
        return _dropped(stages, item, job)
    try:
        recipients, bad = _rows(stages, item, job)
    except (BatchGone, BatchFormatError) as exc:
        return _dropped(stages, item, f"the item's rows cannot be read: {exc}")
    outcomes = _send(stages, item, job, recipients, remaining_ms)
    outcomes.update((row, Outcome(mail_id(item, row), Status.FAILED, reason=reason))
                    for row, reason in bad)
    return _finish(stages, item, outcomes, {r.row: r for r in recipients})


def _finish(stages: FanoutStages, item: WorkItem, outcomes: Mapping[int, Outcome],
            recipients: Mapping[int, Recipient]) -> Handled:
    """Count what is settled, note what was sent against the quota, hand the rest back."""
    sent = sum(1 for o in outcomes.values() if o.status is Status.SENT)
    stages.quota.sent(sent)
    if any(o.status is Status.PAUSED for o in outcomes.values()):
        stages.quota.exhausted()
    cut = _cut(item, outcomes)
    rest = [outcomes[row] for row in range(cut, item.end)]
    unsettled = _unsettled(rest)
    if unsettled and item.attempt >= UNSETTLED_HAND_BACKS:
        logger.error("rows unsettled too many times: failed, written for re-drive",
                     extra={"attempt": item.attempt, "rows": item.end - cut})
        outcomes, cut = _give_up(item, outcomes, cut), item.end
    counts = _settle(stages, item, outcomes, recipients, cut)
    if cut == item.end:
        return Handled(counts)
    delay = _delay(stages, rest)
    return Handled(counts, _hand_back(stages, item, cut, delay, unsettled), delay)


def handle_message(
    stages: FanoutStages, body: str, remaining_ms: Callable[[], int]
) -> Handled | None:
    """One SQS message: its work item processed, or, when the body is no work item,
    logged and dropped (redelivering it would meet the same error). Raises only
    ``TransientError``, for the queue to deliver the message again, and bugs, which the
    queue's redrive policy moves to the dead-letter queue after a few tries."""
    try:
        item = decode(body)
    except BatchFormatError as exc:
        # The reason names the field; the body itself may hold recipients' addresses.
        logger.error("not a work item: message dropped", extra={"error": str(exc),
                                                                 "bytes": len(body)})
        return None
    return process_work_item(stages, item, remaining_ms)
