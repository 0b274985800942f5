"""Send one batch's mails exactly once: the invoking thread claims, a bounded pool sends.

``Dispatcher.run`` is one loop on the invoking thread, the only one that
talks to the ledger: it claims the jobs a chunk at a time, hands each claimed
job to the pool, and settles what the pool hands back (completes the claim,
or releases it when the job is left for later). It claims the next chunk
while the pool sends the current one, but never holds more than a chunk and
a half of claims that are not settled yet (claims held for nothing block
other invocations). While it waits it flushes the ledger's buffered writes
when they are due, so a completion never waits for the next one.

Workers only send: wait for a rate-limiter slot, call ``send``, retry
transient errors by the retry policy. They are kept for the instance's life
and shared by its runs (each run hands them its own send and its own queue
for what they give back, and waits for every job it handed them before it
returns), so a warm invocation starts no threads. Stopping is an event: the deadline
coming near, or the account refusing to send, sets it; a worker that sees
it starts nothing, and the loop claims nothing more.

Each job gets one ``Outcome`` (``model.Status``), in job order. The ledger's
buffered writes are flushed before ``run`` returns or raises (retried until
the deadline margin), so a continuation or a retry finds every claim
released or completed, but for mails whose SES answer was lost (``unknown``)
and writes DynamoDB would not take: those claims stay, to be settled by
SES's evidence once they expire. Counts are derived from the outcomes at the
end; only throttling is counted as it happens.
"""

from __future__ import annotations

import math
import queue
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from chalicelib.errors import (
    LedgerUnavailable,
    PermanentError,
    PostbagError,
    SendAmbiguous,
    SendingPaused,
    Throttled,
    TransientError,
)
from chalicelib.ledger import CLAIMED, IN_PROGRESS, MAX_TRANSACTION_ITEMS, Entry, Ledger, Result
from chalicelib.model import Outcome, Status
from chalicelib.observe import (
    LEDGER_WRITES_UNRECORDED,
    THROTTLED,
    SendMetrics,
    logger,
    queue_delay,
)
from chalicelib.ratelimit import Limiter
from chalicelib.retry import RetryPolicy

# A mail spends about this long in flight (SES's answer, a share of a
# chunk's claim), doubled for slack: how many must be in flight at once to
# keep a rate up.
IN_FLIGHT_SECONDS = 0.16
# Beyond this many threads one instance spends more on switching than it gains.
MAX_WORKERS = 100
# Jobs claimed at once: one ledger call per chunk, but never many more than
# the pool is about to send.
MIN_CHUNK = 25
# How often the loop wakes while waiting for sends, to flush due ledger writes.
TICK_SECONDS = 0.1

# How often the evidence of sends whose answer was lost is read while waiting for it.
EVIDENCE_POLL_SECONDS = 1.0

DEADLINE_REASON = "stopped before the Lambda deadline"
UNKNOWN_REASON = (
    "SES may have sent it (its answer was lost) and no Send event came before the run "
    "stopped: a later attempt settles it by that event, or sends it once the window has passed"
)
HELD_REASON = "claimed by another invocation"
ABORTED_REASON = "aborted by an unexpected error"


def pool_size(rate: float, minimum: int) -> int:
    """Workers enough for ``rate`` mails/s when each send takes tens of milliseconds."""
    return min(MAX_WORKERS, max(minimum, math.ceil(rate * IN_FLIGHT_SECONDS)))


@dataclass(frozen=True)
class Job:
    mail_id: str
    key: str  # idempotency key
    send: Callable[[], str]  # builds + sends one mail, returns the SES MessageId


class _NotStarted(PostbagError):
    """The worker found the run stopped, or no rate-limiter slot before the deadline margin."""


class _Stop:
    """Set once, by whoever notices first: why no new job may start."""

    def __init__(self, remaining_ms: Callable[[], int], margin_ms: int):
        self.remaining_ms = remaining_ms
        self._margin_ms = margin_ms
        self._event = threading.Event()
        self._lock = threading.Lock()
        self.status = Status.HANDED_ON
        self.reason = DEADLINE_REASON

    def set(self, status: Status, reason: str) -> None:
        with self._lock:
            if not self._event.is_set():
                self.status, self.reason = status, reason
                self._event.set()

    def is_set(self) -> bool:
        """Whether the run is stopped; notices the deadline margin."""
        if not self._event.is_set() and self.remaining_ms() < self._margin_ms:
            self.set(Status.HANDED_ON, DEADLINE_REASON)
        return self._event.is_set()

    def seconds_left(self) -> float:
        return (self.remaining_ms() - self._margin_ms) / 1000.0

    def outcome(self, job: Job) -> Outcome:
        return Outcome(job.mail_id, self.status, reason=self.reason)


class _Counter:
    """A count the workers add to: what must be counted live (throttling, sends to start)."""

    def __init__(self, value: int = 0) -> None:
        self.value = value
        self._lock = threading.Lock()

    def add(self, n: int = 1) -> None:
        with self._lock:
            self.value += n

    def get(self) -> int:
        return self.value


# What a worker hands back: the job's index and its result, or the error it raised.
_Done = tuple[int, Result | None, BaseException | None]
# What a worker takes: the run's send, a job's index, and the run's queue for what it gave.
_Task = tuple[Callable[[int], Result], int, "queue.SimpleQueue[_Done]"]


class _Pool:
    """Worker threads that take tasks and hand back what sending each one gave.

    Plain threads and queues rather than an executor: no future and no callback
    per mail, which at hundreds of mails a second is CPU that counts. Kept for
    the instance's life: starting a pool per invocation cost about 0.03 ms a
    mail (``bench/fanout.py cpu``). Threads start as runs first need them, up to
    ``size``, and end when the pool is closed: its dispatcher was dropped (a test,
    a rebuilt bundle), or never (daemons: an idle one waits on the queue; Lambda
    freezes it between invocations). Lambda and the stand-in never fork an
    instance, whose threads a child would not have.
    """

    def __init__(self, size: int):
        self._size = size
        self._todo: queue.SimpleQueue[_Task | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    @property
    def started(self) -> int:
        return len(self._threads)

    def reserve(self, count: int) -> None:
        """Make ``count`` workers run (at most the pool's size)."""
        with self._lock:
            while len(self._threads) < min(count, self._size):
                thread = threading.Thread(target=self._work, daemon=True,
                                          name=f"postbag-send-{len(self._threads)}")
                thread.start()
                self._threads.append(thread)

    def submit(self, task: _Task) -> None:
        self._todo.put(task)

    def close(self) -> None:
        """End every worker once the tasks before are done; waits for none (it may run in
        a worker, from the garbage collector)."""
        with self._lock:
            for _ in self._threads:
                self._todo.put(None)
            self._size = 0

    def _work(self) -> None:
        while (task := self._todo.get()) is not None:
            self._do(*task)
            # An idle worker holds no run alive (its jobs, nor its dispatcher).
            del task

    @staticmethod
    def _do(send: Callable[[int], Result], index: int, done: queue.SimpleQueue[_Done]) -> None:
        try:
            done.put((index, send(index), None))
        except BaseException as exc:  # handed to the invoking thread, which decides
            done.put((index, None, exc))


class _Run:
    """One run's state. Only the invoking thread touches it; workers see ``stop`` and
    ``throttled`` alone."""

    def __init__(self, jobs: Sequence[Job], stop: _Stop, queued_at: datetime | None,
                 pool: _Pool, send: Callable[[Job, _Stop, _Counter, _Counter], Result]):
        self.jobs = jobs
        self.stop = stop
        self.queued_at = queued_at
        self._pool = pool
        self.throttled = throttled = _Counter()
        # Slots the run still needs (the limiter's leases): each send takes one, each
        # retry and resend adds one.
        self.unstarted = unstarted = _Counter(len(jobs))
        # Not through ``self``: a run referring to itself is a cycle, which would keep
        # its jobs and outcomes until a full collection (heap.py) rather than free them
        # when the run ends.
        self._send: Callable[[int], Result] = (
            lambda index: send(jobs[index], stop, throttled, unstarted))
        self.done: queue.SimpleQueue[_Done] = queue.SimpleQueue()  # what the pool gave back
        self.outcomes: dict[int, Outcome] = {}
        self.unsettled = 0  # claimed and handed to the pool, not settled yet
        self.claim_failure: str | None = None
        self.bug: BaseException | None = None
        # Jobs whose send may or may not have reached SES: index → when they may be resent.
        self.unknown: dict[int, float] = {}
        self.evidence_read = -math.inf  # when it was last read

    def submit(self, index: int) -> None:
        """Hand job ``index`` to the pool; it is unsettled until its result comes back."""
        self._pool.submit((self._send, index, self.done))
        self.unsettled += 1

    def leave(self, indexes: range) -> None:
        """Jobs never claimed: for the next attempt, or for whatever stopped the run."""
        for index in indexes:
            job = self.jobs[index]
            self.outcomes[index] = (
                Outcome(job.mail_id, Status.RETRY_LATER, reason=self.claim_failure)
                if self.claim_failure is not None else self.stop.outcome(job)
            )


class Dispatcher:
    """Runs a batch's send jobs on a bounded pool through the ledger, limiter and retry policy."""

    def __init__(
        self,
        ledger: Ledger,
        limiter: Limiter,
        retry: RetryPolicy,
        workers: int,
        metrics: SendMetrics | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self._ledger = ledger
        self._clock = clock
        self._sleep = sleep
        self._limiter = limiter
        self._retry = retry
        self._workers = max(1, workers)
        self._pool = _Pool(self._workers)
        # A dispatcher dropped (tests build many) ends its workers; the pool does not
        # refer to it, so that can happen.
        weakref.finalize(self, self._pool.close)
        self._metrics = metrics
        self._now = now

    def settled(self, keys: Sequence[str]) -> set[str]:
        """The ``keys`` whose mail was sent (or failed for good) before: ``Ledger.settled``.
        Raises ``LedgerUnavailable``."""
        return self._ledger.settled(keys) if keys else set()

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
        run = _Run(jobs, _Stop(remaining_ms, margin_ms), queued_at, self._pool, self._send)
        workers = min(self._workers, len(jobs))
        self._pool.reserve(workers)
        chunk = min(MAX_TRANSACTION_ITEMS, max(MIN_CHUNK, self._workers))
        # Claims not settled yet, at most: one in flight per worker, and a chunk
        # and a half waiting for them (the next chunk is claimed while they send).
        bound = workers + chunk + chunk // 2
        try:
            self._loop(run, chunk, bound)
        except BaseException:
            # Trouble on this thread: the workers start nothing more, and what they
            # finished is still settled below, so no claim is left behind for nothing.
            run.stop.set(Status.RETRY_LATER, ABORTED_REASON)
            raise
        finally:
            self._settle_finished(run)
            self._flush_before(run.stop)
        for index in run.unknown:  # still unknown at a stop: the claim stays, a retry settles it
            run.outcomes[index] = Outcome(jobs[index].mail_id, Status.UNKNOWN,
                                          reason=UNKNOWN_REASON)
        outcomes = [run.outcomes[index] for index in range(len(jobs))]
        if self._metrics is not None:
            self._metrics.outcomes(outcomes)
            if run.throttled.value:
                self._metrics.count(THROTTLED, run.throttled.value)
        if run.bug is not None:
            raise run.bug
        return outcomes

    def _loop(self, run: _Run, chunk: int, bound: int) -> None:
        """Claim chunk by chunk while the pool sends; settle until nothing is left."""
        for indexes in _chunks(len(run.jobs), chunk):
            while run.unsettled + len(indexes) > bound and not run.stop.is_set():
                self._settle_next(run)
            if run.stop.is_set() or not self._claim(run, indexes):
                run.leave(range(indexes.start, len(run.jobs)))
                break
        while run.unsettled or (run.unknown and not run.stop.is_set()):
            self._settle_next(run)

    def _claim(self, run: _Run, indexes: range) -> bool:
        """Claim a chunk, hand what this run holds to the pool; ``False`` if the ledger failed."""
        try:
            entries = self._ledger.claim(
                [run.jobs[i].key for i in indexes], run.stop.remaining_ms()
            )
        except LedgerUnavailable as exc:
            logger.warning("ledger claim failed", extra={"error": str(exc)})
            run.claim_failure = f"{type(exc).__name__}: {exc}"
            return False
        for index, entry in zip(indexes, entries, strict=True):
            if entry.state == CLAIMED:
                run.submit(index)
            else:
                run.outcomes[index] = self._settled_elsewhere(run.jobs[index], entry)
        return True

    def _settle_next(self, run: _Run) -> None:
        """Settle the next job the pool finished; meanwhile flush the ledger's writes when due."""
        if not run.unsettled:  # only sends whose answer was lost: wait for their evidence
            self._write(self._ledger.flush)
            self._sleep(EVIDENCE_POLL_SECONDS)
            self._resolve_unknown(run)
            return
        try:
            index, result, error = run.done.get(timeout=TICK_SECONDS)
        except queue.Empty:
            self._write(self._ledger.flush_if_due)
            self._resolve_unknown(run)
            return
        run.unsettled -= 1
        if isinstance(error, SendAmbiguous):
            # Never sent again blind: keep the claim, wait for SES's Send event.
            logger.warning("send outcome unknown, waiting for SES's evidence",
                           extra={"mail_id": run.jobs[index].mail_id, "error": str(error)})
            run.unknown[index] = self._clock() + self._ledger.evidence_window
            return
        if error is not None and not isinstance(error, PostbagError):
            run.bug = run.bug or error
        run.outcomes[index] = self._settle(run.jobs[index], result, error, run)

    def _settle_finished(self, run: _Run) -> None:
        """Wait for the jobs still with the pool after the loop stopped early (its own error),
        and settle them: the run ends with none of its jobs in a worker's hands (those not
        started yet find the run stopped, and start nothing)."""
        while run.unsettled:
            index, result, error = run.done.get()
            run.unsettled -= 1
            try:
                run.outcomes[index] = self._settle(run.jobs[index], result, error, run)
            except Exception:  # noqa: BLE001 - the loop's own error is what propagates
                logger.exception("settling after an error failed",
                                 extra={"mail_id": run.jobs[index].mail_id})

    def _resolve_unknown(self, run: _Run) -> None:
        """Settle sends whose answer was lost by SES's Send events; resend those that have none
        once the evidence window has passed."""
        now = self._clock()
        if not run.unknown or now - run.evidence_read < EVIDENCE_POLL_SECONDS:
            return
        run.evidence_read = now
        try:
            sent = self._ledger.sent_by_ses([run.jobs[i].key for i in run.unknown])
        except LedgerUnavailable as exc:
            logger.warning("reading SES's evidence failed", extra={"error": str(exc)})
            return
        for index, resend_at in list(run.unknown.items()):
            job = run.jobs[index]
            if job.key in sent:
                del run.unknown[index]
                run.outcomes[index] = self._complete(
                    job, Result(message_id=sent[job.key], mail_id=job.mail_id), run
                )
            elif now >= resend_at and not run.stop.is_set():
                del run.unknown[index]
                logger.warning("no Send event within the window: sending again",
                               extra={"mail_id": job.mail_id})
                run.unstarted.add()
                run.submit(index)

    def _flush_before(self, stop: _Stop) -> None:
        """Write every buffered completion, retrying until the deadline margin: a write that
        cannot be made is reported, never dropped quietly."""
        attempt = 0
        while True:
            try:
                self._ledger.flush()
                return
            except LedgerUnavailable as exc:
                if stop.seconds_left() <= 0:
                    logger.error(
                        "ledger writes not recorded by the deadline; their claims stay, and a "
                        "later attempt settles them by SES's Send events",
                        extra={"error": str(exc), "unwritten": self._ledger.unwritten},
                    )
                    if self._metrics is not None:
                        self._metrics.count(LEDGER_WRITES_UNRECORDED, self._ledger.unwritten)
                    return
                self._retry.pause(attempt)
                attempt += 1

    # --- the workers ------------------------------------------------------------------

    def _send(self, job: Job, stop: _Stop, throttled: _Counter, unstarted: _Counter) -> Result:
        """Runs inside the claim: limiter slot, send, retries. Permanent errors become a result.

        Raises ``_NotStarted`` when nothing was sent, ``SendingPaused`` (after
        stopping the run) and other transient errors when their retries ran out.
        """
        if stop.is_set():
            raise _NotStarted(job.mail_id)

        def on_retry(exc: Exception, retry: int, delay: float) -> None:
            unstarted.add()  # the retry needs a slot of its own
            logger.info(
                "transient send error, retrying",
                extra={"mail_id": job.mail_id, "error": str(exc), "retry": retry + 1,
                       "delay": delay},
            )

        try:
            message_id = self._retry.call(
                lambda: self._send_once(job, stop, throttled, unstarted), on_retry=on_retry
            )
        except SendingPaused as exc:
            stop.set(Status.PAUSED, f"account stopped sending: {exc}")
            raise
        except PermanentError as exc:
            return Result(reason=f"{type(exc).__name__}: {exc}", mail_id=job.mail_id)
        except PostbagError:
            raise
        except BaseException:
            # A bug or the process going down, not a send error: start nothing new.
            stop.set(Status.RETRY_LATER, ABORTED_REASON)
            raise
        return Result(message_id=message_id, mail_id=job.mail_id)

    def _send_once(self, job: Job, stop: _Stop, throttled: _Counter, unstarted: _Counter
                   ) -> str:
        if self._limiter.acquire(timeout=stop.seconds_left(), wanted=unstarted.get) is None:
            stop.set(Status.HANDED_ON, DEADLINE_REASON)
            raise _NotStarted(job.mail_id)
        unstarted.add(-1)
        try:
            return job.send()
        except Throttled:
            throttled.add()  # live: the outcomes do not show retries
            raise

    # --- settling, on the invoking thread ---------------------------------------------

    def _settle(
        self, job: Job, result: Result | None, error: BaseException | None, run: _Run
    ) -> Outcome:
        """Complete the claim of a job the pool sent, or release it if the job is left for later."""
        if error is not None and not isinstance(error, Exception):
            return run.stop.outcome(job)  # the process is going down mid-send: keep the claim
        if result is not None:
            return self._complete(job, result, run)
        self._write(lambda: self._ledger.release([job.key]))
        if isinstance(error, SendingPaused):
            logger.warning("SES stopped sending", extra={"mail_id": job.mail_id,
                                                         "error": str(error)})
            return Outcome(job.mail_id, Status.PAUSED, reason=f"account stopped sending: {error}")
        if isinstance(error, TransientError):
            logger.warning("send left for the next attempt",
                           extra={"mail_id": job.mail_id, "error": str(error)})
            return Outcome(job.mail_id, Status.RETRY_LATER,
                           reason=f"{type(error).__name__}: {error}")
        # Not started (_NotStarted), or a bug the run raises once the rest has settled.
        return run.stop.outcome(job)

    def _complete(self, job: Job, result: Result, run: _Run) -> Outcome:
        """Record what this run did with a job it held the claim of."""
        self._write(lambda: self._ledger.complete(job.key, result))
        if result.message_id is not None and run.queued_at is not None and self._metrics:
            self._metrics.queue_delay(queue_delay(run.queued_at, self._now()))
        return self._claimed(job, result)

    @staticmethod
    def _claimed(job: Job, result: Result) -> Outcome:
        """What this run did with a job it held the claim of."""
        extra = {"mail_id": job.mail_id, "idempotency_key": job.key}
        if result.reason is not None:
            logger.warning("mail failed for good", extra={**extra, "reason": result.reason})
            return Outcome(job.mail_id, Status.FAILED, reason=result.reason)
        logger.info("mail sent", extra={**extra, "message_id": result.message_id})
        return Outcome(job.mail_id, Status.SENT, message_id=result.message_id)

    @staticmethod
    def _settled_elsewhere(job: Job, entry: Entry) -> Outcome:
        """A job the ledger would not let this run claim: held elsewhere, or done before."""
        extra = {"mail_id": job.mail_id, "idempotency_key": job.key}
        if entry.state == IN_PROGRESS:
            logger.info("mail claimed by another invocation", extra=extra)
            return Outcome(job.mail_id, Status.IN_PROGRESS, reason=HELD_REASON)
        result = entry.result
        assert result is not None  # a completed record always carries one
        logger.info("mail already handled, skipped", extra=extra)
        # Settled for this very mail by an earlier attempt, or for another mail with the
        # same key (a recipient listed twice in a notify job): only the latter is news.
        replayed = result.mail_id in (None, job.mail_id)
        if result.reason is not None:
            return Outcome(job.mail_id, Status.FAILED, reason=result.reason, replayed=replayed)
        return Outcome(job.mail_id, Status.DUPLICATE, message_id=result.message_id,
                       replayed=replayed)

    @staticmethod
    def _write(write: Callable[[], None]) -> None:
        """A completion or release DynamoDB would not take stays buffered in the ledger,
        and is tried again at the next flush: logged here, not raised, as the mail went out.
        """
        try:
            write()
        except LedgerUnavailable as exc:
            logger.warning("ledger writes deferred; they stay buffered for the next flush",
                           extra={"error": str(exc)})


def _chunks(count: int, size: int) -> Iterator[range]:
    for start in range(0, count, size):
        yield range(start, min(count, start + size))
