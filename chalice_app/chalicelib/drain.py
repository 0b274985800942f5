"""The drainer: every minute, release what has fallen due (docs/scheduling.md).

list due markers → for each: claim (a lease) → release (process the batch, or split
the job: the chunks due so far for a window) → finish, or give the lease back.

Nothing here makes a send exactly-once: a release only does again what an upload's
event would do, and the ledger's keys make each mail go once however often that is
(docs/exactly-once.md). The claim's lease keeps two drainers off the same item at
once; one that crashed is taken over when its lease ends. One item's trouble never
stops the others: its marker stays, and the next run tries it again; transient trouble
for ever (it passes), any other at most ``hold.MAX_RELEASE_FAILURES`` times. Then, or at
once when its batch or manifest is gone, the item is given up: ``failed`` with the
reason, logged as an error and counted (``HeldReleasesFailed``, alarmed).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from chalicelib.errors import HeldObjectGone, TransientError
from chalicelib.hold import Held, HoldBook, Marker, new_owner
from chalicelib.observe import HELD_RELEASES_FAILED, SendMetrics, logger

# kind → release(claimed item): True when it is wholly released (a window's job returns
# False while chunks are still to come).
Release = Callable[[Held], bool]


@dataclass
class DrainReport:
    released: list[str] = field(default_factory=list)
    paused: list[str] = field(default_factory=list)  # windows going on, or trouble
    failed: list[str] = field(default_factory=list)  # given up (see HoldBook.release_failed)
    skipped: int = 0  # stale markers, items leased by another run, cancelled ones


class Drainer:
    def __init__(self, book: HoldBook, release: Mapping[str, Release],
                 remaining_ms: Callable[[], int] | None = None, margin_ms: int = 10_000,
                 metrics: SendMetrics | None = None):
        self.book, self.release = book, release
        self._metrics = metrics or SendMetrics()
        self._remaining, self._margin = remaining_ms, margin_ms

    def _time_left(self, margin: int) -> bool:
        return self._remaining is None or self._remaining() > margin

    def run(self) -> DrainReport:
        """One pass over what is due; raises only when the markers cannot be listed."""
        owner, report = new_owner(), DrainReport()
        # A margin as long as the whole invocation keeps half of it for releasing.
        margin = self._margin
        if self._remaining is not None and margin >= self._remaining():
            margin = self._remaining() // 2
        for marker in self.book.due_markers():
            if not self._time_left(margin):
                break  # the rest is due still: the next run lists it first
            self._one(marker, owner, report)
        if report.released or report.paused or report.failed:
            logger.info("drained", extra={"released": len(report.released),
                                          "paused": len(report.paused),
                                          "failed": len(report.failed), "skipped": report.skipped})
        return report

    def _one(self, marker: Marker, owner: str, report: DrainReport) -> None:
        name = f"{marker.kind}/{marker.ident}"
        held = None
        try:
            held = self.book.claim(marker, owner)
            if held is None:
                report.skipped += 1
                return
            if self.release[held.kind](held):
                self.book.finish(held, owner)
                report.released.append(name)
                return
        except TransientError as exc:
            logger.warning("held item not released; next run", extra={"item": name,
                                                                     "error": str(exc)})
        except Exception as exc:
            logger.exception("held item not released", extra={"item": name})
            if held is not None and self._failed(held, owner, exc):
                report.failed.append(name)
                return
        report.paused.append(name)
        if held is not None:
            self._give_back(held, owner)

    def _failed(self, held: Held, owner: str, error: Exception) -> bool:
        """Count the failure; ``True`` when the item was given up (and said so)."""
        reason = f"{type(error).__name__}: {error}"
        try:
            if not self.book.release_failed(held, owner, reason,
                                            final=isinstance(error, HeldObjectGone)):
                return False
        except TransientError as exc:
            logger.warning("failed release not counted", extra={"error": str(exc)})
            return False
        logger.error("held item given up: never released", extra={
            "item": f"{held.kind}/{held.ident}", "object": held.key, "reason": reason})
        self._metrics.count(HELD_RELEASES_FAILED)
        return True

    def _give_back(self, held: Held, owner: str) -> None:
        """The lease back, so that the next run goes on at once; if even that fails, the
        lease ends by itself."""
        try:
            self.book.pause(held, owner)
        except TransientError as exc:
            logger.warning("lease not given back", extra={"error": str(exc)})
