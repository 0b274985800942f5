"""A notify job's manifest in, work items on SQS out: the splitter.

read the manifest → parse and check it → cancelled? → verify every part
(size, SHA-256, rows) → cut each part into chunks of ``chunk_rows`` rows →
count the job as begun → enqueue the chunks ten at a time, counting each ten.

A replayed event (or a split cut short by a timeout) goes on from the chunks
the job's progress item counts as enqueued: nothing is lost, and at most the
last ten (enqueued, then the count failed) go out twice, which sends no mail
twice (the ledger). A manifest the sender cannot use is quarantined with the
field and the reason, as batches are.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime

from chalicelib.config import Settings
from chalicelib.errors import BatchFormatError, ConfigurationError
from chalicelib.formats.v2 import count_rows, parse_manifest
from chalicelib.model import NotifyJob, Part, WorkItem
from chalicelib.observe import logger
from chalicelib.outcome import Recorder
from chalicelib.progress import JobProgress
from chalicelib.store import BatchGone, BatchStore
from chalicelib.workqueue import MAX_BATCH_ENTRIES, WorkQueue


def chunks(job: NotifyJob, chunk_rows: int) -> list[tuple[int, int, int]]:
    """``(part, start, end)`` of every chunk, in order: each row in exactly one."""
    return [
        (index, start, min(start + chunk_rows, part.rows))
        for index, part in enumerate(job.parts)
        for start in range(0, part.rows, chunk_rows)
    ]


class PartCheck:
    """A stream's size and SHA-256, taken as it is read; stops reading past ``limit``."""

    def __init__(self, chunks: Iterator[bytes], limit: int):
        self._chunks, self._limit = chunks, limit
        self.size = 0
        self.digest = hashlib.sha256()

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            self.size += len(chunk)
            if self.size > self._limit:
                return  # its size is wrong already: read no further
            self.digest.update(chunk)
            yield chunk

    def drain(self) -> None:
        """Read the rest (after the reader stopped early), for the size and checksum."""
        for _ in self:
            pass

    def mismatch(self, part: Part) -> str | None:
        """How the object read differs from ``part``, or ``None``."""
        if self.size > part.bytes:
            return f"is larger than the {part.bytes:,} bytes the manifest says"
        if self.size != part.bytes:
            return f"is {self.size:,} bytes, the manifest says {part.bytes:,} (cut short?)"
        if self.digest.hexdigest() != part.sha256:
            return "has another SHA-256 than the manifest's"
        return None


class Splitter:
    """Splits notify jobs into work items; one per Lambda instance."""

    def __init__(self, store: BatchStore, queue: WorkQueue, progress: JobProgress,
                 recorder: Recorder, settings: Settings):
        if settings.chunk_rows < 1:
            raise ConfigurationError(f"POSTBAG_CHUNK_ROWS is {settings.chunk_rows}: at least 1")
        self.store, self.queue, self.progress = store, queue, progress
        self.recorder, self.settings = recorder, settings

    def split(self, bucket: str, key: str) -> int:
        """Split the job whose manifest is ``key``; returns how many work items this call
        enqueued. Raises only ``TransientError`` (S3, DynamoDB or SQS failing)."""
        logger.append_keys(s3_key=key, job_id=None)
        job = self._job(bucket, key)
        if job is None:
            return 0
        logger.append_keys(job_id=job.job_id)
        if self.progress.cancelled(bucket, job.job_id):
            self.progress.begin(bucket, job, 0, cancelled=True)
            logger.info("job cancelled before it was split: nothing enqueued")
            return 0
        try:
            self._check(bucket, job, f"{job.job_id} ({key})")
        except BatchFormatError as exc:
            self._quarantine(bucket, key, exc)
            return 0
        return self._enqueue(bucket, key, job)

    def _job(self, bucket: str, key: str) -> NotifyJob | None:
        """The parsed manifest; ``None`` when it is gone or was quarantined."""
        try:
            data, _ = self.store.read_batch(bucket, key)
            return parse_manifest(data, key, self.settings)
        except BatchGone:
            logger.info("manifest already gone")
        except BatchFormatError as exc:
            self._quarantine(bucket, key, exc)
        return None

    def _quarantine(self, bucket: str, key: str, error: BatchFormatError) -> None:
        target = self.recorder.quarantine(bucket, key, error)
        logger.error("job quarantined", extra={"to": target, "error": str(error)})

    def _check(self, bucket: str, job: NotifyJob, label: str) -> None:
        """What the manifest alone cannot show: when to send, and every part as listed."""
        if job.send_at is not None and job.send_at > datetime.now(UTC):
            raise BatchFormatError("send_at", label, "scheduled sends are not supported yet")
        for index, part in enumerate(job.parts):
            self._verify(bucket, index, part, label)

    def _verify(self, bucket: str, index: int, part: Part, label: str) -> None:
        """The stored part is the one the manifest describes: its size, its SHA-256, then
        its rows. Streamed: one chunk of it in memory at a time."""
        field = f"parts[{index}]"
        tally = PartCheck(self.store.stream(bucket, part.key), part.bytes)
        rows, unreadable = 0, None
        try:
            rows = count_rows(tally, index, label)
        except BatchGone as exc:
            raise BatchFormatError(field, label, f"{part.key} does not exist") from exc
        except BatchFormatError as exc:  # not gzip: named after a wrong size or checksum
            unreadable = exc
            tally.drain()
        wrong = tally.mismatch(part)
        if wrong:
            raise BatchFormatError(field, label, f"{part.key} {wrong}")
        if unreadable is not None:
            raise unreadable
        if rows != part.rows:
            raise BatchFormatError(field, label, f"{part.key} holds {rows:,} rows, the "
                                   f"manifest says {part.rows:,}")

    def _enqueue(self, bucket: str, key: str, job: NotifyJob) -> int:
        items = [
            WorkItem(bucket=bucket, job_id=job.job_id, manifest_key=key, part=part,
                     start=start, end=end)
            for part, start, end in chunks(job, self.settings.chunk_rows)
        ]
        done = self.progress.begin(bucket, job, len(items))
        for first in range(done, len(items), MAX_BATCH_ENTRIES):
            batch = items[first:first + MAX_BATCH_ENTRIES]
            self.queue.enqueue(batch)
            self.progress.enqueued(job.job_id, first + len(batch))
        logger.info("job split", extra={"work_items": len(items), "enqueued_now":
                                        max(len(items) - done, 0)})
        return max(len(items) - done, 0)
