"""Send one batch's mails exactly once: a bounded pool, each send rate-limited inside its claim.

For every job: take the ledger claim on its key, then (inside the claim) wait
for a rate-limiter slot and call ``send``, retrying transient errors by the
retry policy. What happened becomes one ``Outcome`` per job, in job order:

- ``sent``: SES accepted it now (``message_id``);
- ``duplicate``: the ledger already had it sent (the saved ``message_id``);
- ``failed``: refused for good, now or earlier (``reason``); never resent;
- ``in_progress``: another invocation holds its claim;
- ``unsent``: not attempted (deadline near, or the account stopped sending):
  hand it on, e.g. as a continuation batch;
- ``retry_later``: transient trouble outlasted the retries; its claim was
  released so the next Lambda attempt sends it.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

from chalicelib.errors import PermanentError, PostbagError, SendingPaused, Throttled, TransientError
from chalicelib.ledger import DONE, IN_PROGRESS, Ledger, Result
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

# A mail spends about this long in flight (claim, SES's answer, completion),
# doubled for slack: how many must be in flight at once to keep a rate up.
IN_FLIGHT_SECONDS = 0.16
# Beyond this many threads one instance spends more on switching than it gains.
MAX_WORKERS = 100

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


class _Deadline:
    """``remaining_ms`` dressed as a Lambda context, for the ledger's claim expiry."""

    def __init__(self, remaining_ms: Callable[[], int]):
        self.get_remaining_time_in_millis = remaining_ms


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
        started have finished; jobs not started by then are not claimed.
        """
        if not jobs:
            return []
        self._ledger.register_lambda_context(_Deadline(remaining_ms))
        state = _Run(remaining_ms, margin_ms, queued_at)
        with ThreadPoolExecutor(max_workers=min(self._workers, len(jobs))) as pool:
            futures = [pool.submit(self._guarded, job, state) for job in jobs]
            try:
                return [future.result() for future in futures]
            finally:
                self._emit(state)

    def _guarded(self, job: Job, state: _Run) -> Outcome:
        try:
            return self._one(job, state)
        except BaseException:
            # A bug or the process going down, not a send error: start nothing
            # new; the error reaches the handler once the jobs in flight end.
            state.stop("aborted by an unexpected error")
            raise

    def _one(self, job: Job, state: _Run) -> Outcome:
        reason = state.stop_reason()
        if reason is not None:
            return Outcome(job.mail_id, UNSENT, reason=reason)
        try:
            entry = self._ledger.once(job.key, lambda: self._attempt(job, state))
        except _OutOfTime:
            state.stop(DEADLINE_REASON)
            return Outcome(job.mail_id, UNSENT, reason=DEADLINE_REASON)
        except SendingPaused as exc:
            state.stop(f"account stopped sending: {exc}")
            logger.warning("SES stopped sending", extra={"mail_id": job.mail_id, "error": str(exc)})
            return Outcome(job.mail_id, UNSENT, reason=f"account stopped sending: {exc}")
        except TransientError as exc:
            extra = {"mail_id": job.mail_id, "error": str(exc)}
            logger.warning("send left for the next attempt", extra=extra)
            return Outcome(job.mail_id, RETRY_LATER, reason=f"{type(exc).__name__}: {exc}")
        return self._record(job, entry.state, entry.result, state)

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

    def _record(self, job: Job, entry_state: str, result: Result | None, state: _Run) -> Outcome:
        extra = {"mail_id": job.mail_id, "idempotency_key": job.key}
        if entry_state == IN_PROGRESS:
            logger.info("mail claimed by another invocation", extra=extra)
            return Outcome(job.mail_id, IN_PROGRESS_ELSEWHERE, reason=HELD_REASON)
        assert result is not None  # DONE and REPLAYED entries always carry one
        if entry_state == DONE:
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
