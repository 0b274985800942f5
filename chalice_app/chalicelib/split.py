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
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from chalicelib.config import Settings
from chalicelib.errors import BatchFormatError, ConfigurationError, HeldObjectGone
from chalicelib.formats.v2 import count_rows, parse_manifest
from chalicelib.hold import JOB, Held, HoldBook, Verdict
from chalicelib.model import NotifyJob, Part, WorkItem
from chalicelib.observe import logger
from chalicelib.outcome import Recorder
from chalicelib.progress import JobProgress
from chalicelib.schedule import When, Window, WindowPlan, checked, plan_window
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


# What the account can send while a window lasts: (mails a second, what the 24-hour
# quota still takes or ``None`` when unknown or unlimited).
Capacity = Callable[[], tuple[float, float | None]]


class Splitter:
    """Splits notify jobs into work items; one per Lambda instance. ``hold`` keeps jobs
    with a time until the drainer releases them (``release``); ``capacity`` is asked
    when a window is planned; ``clock`` gives epoch seconds."""

    def __init__(self, store: BatchStore, queue: WorkQueue, progress: JobProgress,
                 recorder: Recorder, settings: Settings, hold: HoldBook | None = None,
                 capacity: Capacity | None = None, clock: Callable[[], float] = time.time):
        if settings.chunk_rows < 1:
            raise ConfigurationError(f"POSTBAG_CHUNK_ROWS is {settings.chunk_rows}: at least 1")
        self.store, self.queue, self.progress = store, queue, progress
        self.recorder, self.settings = recorder, settings
        self.hold, self._capacity, self._clock = hold, capacity, clock

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

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
            if self.hold is not None:  # a cancel kept for this upload: its result now
                self.hold.arrived_cancelled(JOB, job.job_id, bucket, key)
            logger.info("job cancelled before it was split: nothing enqueued")
            return 0
        label = f"{job.job_id} ({key})"
        try:
            when = checked(job.send_at, job.send_between, label, self._now())
            if when.due is not None and self.hold is None:
                raise BatchFormatError("send_at", label, "this sender holds no scheduled sends")
            self._check(bucket, job, label)
        except BatchFormatError as exc:
            self._quarantine(bucket, key, exc)
            return 0
        return self._admit(bucket, key, job, when)

    def _admit(self, bucket: str, key: str, job: NotifyJob, when: When) -> int:
        """Send now, hold until due (its status says so), or count it cancelled."""
        verdict = Verdict.SEND
        if self.hold is not None:
            verdict = self.hold.admit(JOB, job.job_id, bucket, key, when,
                                      always_hold=when.window is not None)
        if verdict is Verdict.HOLD:
            held = self.hold.get(JOB, job.job_id) if self.hold else None
            # A reschedule that came before this upload: the times it asked for.
            schedule = self._schedule(job, held.when if held else when)
            self.progress.scheduled(bucket, job, schedule)
            logger.info("job held", extra=schedule)
            return 0
        if verdict is Verdict.CANCELLED:
            self.progress.begin(bucket, job, 0, cancelled=True)
            logger.info("held job cancelled: nothing enqueued")
            return 0
        if verdict is Verdict.PACED:
            # A replay while the drainer paces its window: queueing here would send the
            # rest at once, in chunks of another size.
            logger.info("job being released over its window by the drainer: nothing here")
            return 0
        return self._enqueue(bucket, key, job)

    def release(self, held: Held) -> bool:
        """The drainer's call for a job that fell due (checked and verified when it was
        uploaded; its times are the held item's, which a reschedule may have changed):
        enqueue it, or a window's chunks due so far. ``True`` once every chunk is enqueued
        (or the job is cancelled, or its manifest was quarantined); ``HeldObjectGone`` when
        its manifest is gone (the drainer gives the job up, and says so)."""
        bucket, key = held.bucket, held.key
        logger.append_keys(s3_key=key, job_id=None)
        job = self._job(bucket, key, held=True)
        if job is None:
            return True
        logger.append_keys(job_id=job.job_id)
        cancelled = self.progress.cancelled(bucket, job.job_id)
        window = held.when.window
        if cancelled and (window is None or self.progress.started(job.job_id) is None):
            self.progress.begin(bucket, job, 0, cancelled=True)
            logger.info("held job cancelled: nothing enqueued")
            return True
        if window is None:
            self._enqueue(bucket, key, job, self._schedule(job, held.when))
            return True
        return self._paced(bucket, key, job, window, cancelled)

    def cancelled(self, held: Held) -> None:
        """A held job cancelled: every recipient counted cancelled, nothing queued."""
        job = self._job(held.bucket, held.key)
        if job is not None:
            self.progress.begin(held.bucket, job, 0, cancelled=True)

    def rescheduled(self, held: Held) -> None:
        """A held job moved: its status shows the new times."""
        job = self._job(held.bucket, held.key)
        if job is not None:
            self.progress.scheduled(held.bucket, job, self._schedule(job, held.when))

    def _schedule(self, job: NotifyJob, when: When, plan: WindowPlan | None = None
                  ) -> dict[str, Any]:
        """What a held or windowed job's status shows of its times."""
        doc = when.document()
        if when.window is not None:
            doc["window"] = (plan or self._plan(job, when.window)).document()
        return doc

    def _plan(self, job: NotifyJob, window: Window) -> WindowPlan:
        """How ``job``'s window is paced, at the rate and quota available now."""
        rate, quota_left = self._capacity() if self._capacity else (1.0, None)
        plan = plan_window(job.recipients, window, self._now(), rate, quota_left,
                           self.settings.chunk_rows, lambda rows: len(chunks(job, rows)))
        if not plan.fits:
            logger.warning("the window cannot hold the job: sending as fast as allowed",
                           extra=plan.document())
        return plan

    def _paced(self, bucket: str, key: str, job: NotifyJob, window: Window,
               cancelled: bool = False) -> bool:
        """Enqueue the chunks of a windowed job due by now, planned once (when it began).
        Cancelled under way: the rest at once, which the fan-out counts cancelled (its
        cancel check) so that the job's status ends, sending nothing."""
        started = self.progress.started(job.job_id)
        if started and "schedule" in started:
            plan = WindowPlan.from_document(json.loads(started["schedule"])["window"])
        else:
            plan = self._plan(job, window)
        when = When(window=window)
        items = self._items(bucket, key, job, plan.chunk_rows)
        done = self.progress.begin(bucket, job, len(items), schedule=self._schedule(job, when,
                                                                                   plan))
        upto = len(items) if cancelled else plan.due_chunks(self._now())
        self._send_items(job, items, done, upto)
        return upto >= len(items)

    def _job(self, bucket: str, key: str, held: bool = False) -> NotifyJob | None:
        """The parsed manifest; ``None`` when it is gone or was quarantined. A ``held``
        job's manifest gone is ``HeldObjectGone``: its recipients would never be mailed."""
        try:
            data, _ = self.store.read_batch(bucket, key)
            return parse_manifest(data, key, self.settings)
        except BatchGone as exc:
            if held:
                raise HeldObjectGone(f"held job's manifest {key} is gone: nobody was "
                                     "mailed") from exc
            logger.info("manifest already gone")
        except BatchFormatError as exc:
            self._quarantine(bucket, key, exc)
        return None

    def _quarantine(self, bucket: str, key: str, error: BatchFormatError) -> None:
        target = self.recorder.quarantine(bucket, key, error)
        logger.error("job quarantined", extra={"to": target, "error": str(error)})

    def _check(self, bucket: str, job: NotifyJob, label: str) -> None:
        """What the manifest alone cannot show: every part as listed."""
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

    @staticmethod
    def _items(bucket: str, key: str, job: NotifyJob, chunk_rows: int) -> list[WorkItem]:
        return [
            WorkItem(bucket=bucket, job_id=job.job_id, manifest_key=key, part=part,
                     start=start, end=end)
            for part, start, end in chunks(job, chunk_rows)
        ]

    def _send_items(self, job: NotifyJob, items: list[WorkItem], done: int, upto: int) -> None:
        """Items ``done``..``upto`` on the queue, ten at a time, each ten counted."""
        for first in range(done, min(upto, len(items)), MAX_BATCH_ENTRIES):
            batch = items[first:min(first + MAX_BATCH_ENTRIES, upto)]
            self.queue.enqueue(batch)
            self.progress.enqueued(job.job_id, first + len(batch))

    def _enqueue(self, bucket: str, key: str, job: NotifyJob,
                 schedule: dict[str, Any] | None = None) -> int:
        """Every chunk on the queue; ``schedule``: a released job's times, kept in its status."""
        items = self._items(bucket, key, job, self.settings.chunk_rows)
        done = self.progress.begin(bucket, job, len(items), schedule=schedule)
        self._send_items(job, items, done, len(items))
        logger.info("job split", extra={"work_items": len(items), "enqueued_now":
                                        max(len(items) - done, 0)})
        return max(len(items) - done, 0)
