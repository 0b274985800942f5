"""Send one batch's mails exactly once: a bounded pool, each send rate-limited inside its claim.

Workers take jobs from a feed that claims them in the ledger a chunk at a
time, as the pool needs work. For every claimed job: wait for a
rate-limiter slot and call ``send``, retrying transient errors by the retry
policy, then complete the claim (buffered), or release it when the job is
left for later. What happened becomes one ``Outcome`` per job, in job order:

- ``sent``: SES accepted it now (``message_id``);
- ``duplicate``: the ledger already had it sent (the saved ``message_id``);
- ``failed``: refused for good, now or earlier (``reason``); never resent;
- ``in_progress``: another invocation holds its claim;
- ``unsent``: not attempted (deadline near, or the account stopped sending):
  hand it on, e.g. as a continuation batch; its claim, if any, was released;
- ``retry_later``: transient trouble (SES or the ledger) outlasted the
  retries; its claim was released so the next Lambda attempt sends it.

The ledger's buffered writes are flushed before ``run`` returns or raises,
so a continuation or a retry finds every claim released or completed.
"""

from __future__ import annotations

import math
import threading
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

from chalicelib.errors import (
    LedgerUnavailable,
    PermanentError,
    PostbagError,
    SendingPaused,
    Throttled,
    TransientError,
)
from chalicelib.ledger import CLAIMED, IN_PROGRESS, MAX_TRANSACTION_ITEMS, Entry, Ledger, Result
from chalicelib.observe import (
    DUPLICATES_SKIPPED,
    MAILS_FAILED,
    MAILS_SENT,
    THROTTLED,
    SendMetrics,
    logger,
    queue_delay,
)
from chalicelib.ratelimit import RateLimiter
from chalicelib.retry import RetryPolicy

SENT = "sent"
DUPLICATE = "duplicate"
FAILED = "failed"
IN_PROGRESS_ELSEWHERE = "in_progress"
UNSENT = "unsent"
RETRY_LATER = "retry_later"

# A mail spends about this long in flight (SES's answer, a share of a
# chunk's claim), doubled for slack: how many must be in flight at once to
# keep a rate up.
IN_FLIGHT_SECONDS = 0.16
# Beyond this many threads one instance spends more on switching than it gains.
MAX_WORKERS = 100
# Jobs claimed at once: one ledger call per chunk, but never many more than
# the pool is about to send (claims held for nothing block other invocations).
MIN_CHUNK = 25

DEADLINE_REASON = "stopped before the Lambda deadline"
HELD_REASON = "claimed by another invocation"


def pool_size(rate: float, minimum: int) -> int:
    """Workers enough for ``rate`` mails/s when each send takes tens of milliseconds."""
    return min(MAX_WORKERS, max(minimum, math.ceil(rate * IN_FLIGHT_SECONDS)))


@dataclass(frozen=True)
class Job:
    mail_id: str
    key: str  # idempotency key
    send: Callable[[], str]  # builds + sends one mail, returns the SES MessageId


@dataclass(frozen=True)
class Outcome:
    mail_id: str
    status: str  # "sent" | "duplicate" | "failed" | "in_progress" | "unsent" | "retry_later"
    message_id: str | None = None
    reason: str | None = None


class _OutOfTime(PostbagError):
    """No rate-limiter slot comes before the deadline margin."""


class _Run:
    """State one ``Dispatcher.run`` shares between its workers."""

    def __init__(self, remaining_ms: Callable[[], int], margin_ms: int, queued_at: datetime | None):
        self.remaining_ms = remaining_ms
        self.margin_ms = margin_ms
        self.queued_at = queued_at
        self.counts: Counter[str] = Counter()
        self._stop_reason: str | None = None
        self._lock = threading.Lock()

    def stop(self, reason: str) -> None:
        with self._lock:
            self._stop_reason = self._stop_reason or reason

    def stop_reason(self) -> str | None:
        """Why no new job may start, or ``None``; checks the deadline."""
        if self.remaining_ms() < self.margin_ms:
            self.stop(DEADLINE_REASON)
        with self._lock:
            return self._stop_reason

    def seconds_to_margin(self) -> float:
        return (self.remaining_ms() - self.margin_ms) / 1000.0

    def count(self, name: str) -> None:
        with self._lock:
            self.counts[name] += 1


class _Feed:
    """Hands claimed jobs to workers, claiming the next chunk before the claimed ones run out.

    When fewer than half a chunk of claimed jobs is left, the worker that
    notices claims the next chunk outside the lock, so the others keep
    sending meanwhile (a claim is a DynamoDB transaction: milliseconds that
    would otherwise stall the whole pool). So at most a chunk and a half is
    claimed ahead of the sends. Jobs the ledger settles at claim time
    (replayed, held elsewhere) go to ``settle`` at once and never reach a worker.
    """

    def __init__(self, ledger: Ledger, jobs: Sequence[Job], chunk: int, state: _Run,
                 settle: Callable[[int, Job, Entry], None]):
        self._ledger = ledger
        self._jobs = jobs
        self._chunk = chunk
        self._state = state
        self._settle = settle
        self._next = 0  # index of the first job not claimed yet
        self._claimed: deque[int] = deque()  # claimed, not started
        self._claiming = False
        self.failure: str | None = None  # why claiming stopped, if the ledger failed
        self._ready = threading.Condition()

    def take(self) -> tuple[int, Job] | None:
        """The next claimed job, or ``None`` when no job may start any more."""
        while True:
            with self._ready:
                if self._state.stop_reason():
                    return None
                chunk = self._start_claim()
                taken = None
                if self._claimed:
                    index = self._claimed.popleft()
                    taken = index, self._jobs[index]
                elif chunk is None:
                    if not self._claiming:
                        return None  # every job handed out, or the ledger failed
                    self._ready.wait()
                    continue
            if chunk is not None:
                self._claim(chunk)
            if taken is not None:
                return taken

    def _start_claim(self) -> range | None:
        """The next chunk to claim, if one is due and no other worker is claiming."""
        if (self._claiming or self.failure or self._next >= len(self._jobs)
                or len(self._claimed) >= max(1, self._chunk // 2)):
            return None
        self._claiming = True
        chunk = range(self._next, min(len(self._jobs), self._next + self._chunk))
        self._next = chunk.stop
        return chunk

    def _claim(self, chunk: range) -> None:
        entries: list[Entry] = []
        try:
            entries = self._ledger.claim(
                [self._jobs[i].key for i in chunk], self._state.remaining_ms()
            )
        except LedgerUnavailable as exc:
            logger.warning("ledger claim failed", extra={"error": str(exc)})
            with self._ready:
                self._next = chunk.start  # not claimed: left with the rest
                self.failure = f"{type(exc).__name__}: {exc}"
        finally:
            with self._ready:
                for index, entry in zip(chunk, entries, strict=False):
                    if entry.state == CLAIMED:
                        self._claimed.append(index)
                    else:
                        self._settle(index, self._jobs[index], entry)
                self._claiming = False
                self._ready.notify_all()

    def left(self) -> tuple[list[int], list[int]]:
        """Jobs never started: (claimed, not claimed), emptying the feed."""
        with self._ready:
            claimed, self._claimed = list(self._claimed), deque()
            unclaimed = list(range(self._next, len(self._jobs)))
            self._next = len(self._jobs)
            return claimed, unclaimed


class Dispatcher:
    """Runs a batch's send jobs on a bounded pool through the ledger, limiter and retry policy."""

    def __init__(
        self,
        ledger: Ledger,
        limiter: RateLimiter,
        retry: RetryPolicy,
        workers: int,
        metrics: SendMetrics | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self._ledger = ledger
        self._limiter = limiter
        self._retry = retry
        self._workers = max(1, workers)
        self._metrics = metrics
        self._now = now

    def run(
        self,
        jobs: Sequence[Job],
        remaining_ms: Callable[[], int],
        margin_ms: int,
        queued_at: datetime | None = None,
    ) -> list[Outcome]:
        """One ``Outcome`` per job, in job order.

        Errors other than Postbag's (bugs) propagate once the jobs already
        started have finished; the claims of jobs not started are released.
        """
        if not jobs:
            return []
        state = _Run(remaining_ms, margin_ms, queued_at)
        outcomes: dict[int, Outcome] = {}

        def settle(index: int, job: Job, entry: Entry) -> None:
            outcomes[index] = self._record(job, entry, state)

        chunk = min(MAX_TRANSACTION_ITEMS, max(MIN_CHUNK, self._workers))
        feed = _Feed(self._ledger, jobs, chunk, state, settle)
        workers = min(self._workers, len(jobs))
        try:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                for future in [pool.submit(self._guarded, feed, state, outcomes)
                               for _ in range(workers)]:
                    future.result()
        finally:
            claimed, unclaimed = feed.left()
            self._ledger_write(lambda: self._ledger.release(jobs[i].key for i in claimed))
            self._ledger_write(self._ledger.flush)
            self._emit(state)
        reason = state.stop_reason()
        for index in claimed + unclaimed:
            if reason is not None:
                outcomes[index] = Outcome(jobs[index].mail_id, UNSENT, reason=reason)
            else:  # only a failed claim ends a run early without a stop
                outcomes[index] = Outcome(jobs[index].mail_id, RETRY_LATER, reason=feed.failure)
        return [outcomes[index] for index in range(len(jobs))]

    def _guarded(self, feed: _Feed, state: _Run, outcomes: dict[int, Outcome]) -> None:
        try:
            while (taken := feed.take()) is not None:
                index, job = taken
                outcomes[index] = self._one(job, state)
        except BaseException:
            # A bug or the process going down, not a send error: start nothing
            # new; the error reaches the handler once the jobs in flight end.
            state.stop("aborted by an unexpected error")
            raise

    def _one(self, job: Job, state: _Run) -> Outcome:
        """Send one claimed job; complete its claim, or release it if the job is left for later."""
        try:
            result = self._attempt(job, state)
        except _OutOfTime:
            state.stop(DEADLINE_REASON)
            self._release(job)
            return Outcome(job.mail_id, UNSENT, reason=DEADLINE_REASON)
        except SendingPaused as exc:
            state.stop(f"account stopped sending: {exc}")
            self._release(job)
            logger.warning("SES stopped sending", extra={"mail_id": job.mail_id, "error": str(exc)})
            return Outcome(job.mail_id, UNSENT, reason=f"account stopped sending: {exc}")
        except TransientError as exc:
            self._release(job)
            extra = {"mail_id": job.mail_id, "error": str(exc)}
            logger.warning("send left for the next attempt", extra=extra)
            return Outcome(job.mail_id, RETRY_LATER, reason=f"{type(exc).__name__}: {exc}")
        except Exception:
            self._release(job)  # a bug: a fixed retry may send it
            raise
        self._ledger_write(lambda: self._ledger.complete(job.key, result))
        return self._record(job, Entry(CLAIMED, result), state)

    def _attempt(self, job: Job, state: _Run) -> Result:
        """Runs inside the claim: limiter slot, send, retries. Permanent errors become a result."""

        def send_once() -> str:
            if self._limiter.acquire(timeout=state.seconds_to_margin()) is None:
                raise _OutOfTime(job.mail_id)
            try:
                return job.send()
            except Throttled:
                state.count(THROTTLED)
                raise

        def on_retry(exc: Exception, retry: int, delay: float) -> None:
            logger.info(
                "transient send error, retrying",
                extra={"mail_id": job.mail_id, "error": str(exc), "retry": retry + 1,
                       "delay": delay},
            )

        try:
            message_id = self._retry.call(send_once, on_retry=on_retry)
        except PermanentError as exc:
            return Result(reason=f"{type(exc).__name__}: {exc}")
        if state.queued_at is not None and self._metrics is not None:
            self._metrics.queue_delay(queue_delay(state.queued_at, self._now()))
        return Result(message_id=message_id)

    def _release(self, job: Job) -> None:
        self._ledger_write(lambda: self._ledger.release([job.key]))

    @staticmethod
    def _ledger_write(write: Callable[[], None]) -> None:
        """Completions and releases that fail keep their claims until the deadline.

        Only a takeover after the deadline can then send those mails again (or,
        for a release, send them later): logged, not raised, as the mails went out.
        """
        try:
            write()
        except LedgerUnavailable as exc:
            logger.error("ledger writes lost; their claims stay until the deadline",
                         extra={"error": str(exc)})

    def _record(self, job: Job, entry: Entry, state: _Run) -> Outcome:
        extra = {"mail_id": job.mail_id, "idempotency_key": job.key}
        if entry.state == IN_PROGRESS:
            logger.info("mail claimed by another invocation", extra=extra)
            return Outcome(job.mail_id, IN_PROGRESS_ELSEWHERE, reason=HELD_REASON)
        result = entry.result
        assert result is not None  # completed and replayed entries always carry one
        if entry.state == CLAIMED:
            if result.reason is not None:
                state.count(MAILS_FAILED)
                logger.warning("mail failed for good", extra={**extra, "reason": result.reason})
                return Outcome(job.mail_id, FAILED, reason=result.reason)
            state.count(MAILS_SENT)
            logger.info("mail sent", extra={**extra, "message_id": result.message_id})
            return Outcome(job.mail_id, SENT, message_id=result.message_id)
        state.count(DUPLICATES_SKIPPED)
        logger.info("mail already handled, skipped", extra=extra)
        if result.reason is not None:
            return Outcome(job.mail_id, FAILED, reason=result.reason)
        return Outcome(job.mail_id, DUPLICATE, message_id=result.message_id)

    def _emit(self, state: _Run) -> None:
        if self._metrics is None:
            return
        for name in (MAILS_SENT, MAILS_FAILED, THROTTLED, DUPLICATES_SKIPPED):
            if state.counts[name]:
                self._metrics.count(name, state.counts[name])
