"""Cancel and reschedule requests for held batches and jobs (docs/scheduling.md).

The plugin or ``postbag`` writes them (the shared contract):

- ``control/batches/<batch_id>/cancel`` (any body) and
  ``control/batches/<batch_id>/schedule.json``;
- ``jobs/<job_id>/schedule.json`` and ``jobs/<job_id>/cancel`` (which the fan-out has
  always honoured for a job under way: here it cancels a held one at once).

Each request is one conditional write on the held item (``hold.py``): it wins or it
finds the item released already, and then it changes nothing ("too late", logged).
A request the sender cannot read is quarantined with the field named.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from chalicelib.config import JOBS_PREFIX, Settings
from chalicelib.errors import BatchFormatError
from chalicelib.formats import parse_batch
from chalicelib.hold import BATCH, JOB, Held, HoldBook
from chalicelib.model import Outcome, Status
from chalicelib.observe import logger
from chalicelib.outcome import Recorder
from chalicelib.schedule import parse_reschedule
from chalicelib.store import BatchGone, BatchStore

CONTROL_PREFIX = "control/batches/"
_ID = r"([A-Za-z0-9][A-Za-z0-9._-]{0,63})"
_BATCH_REQUEST = re.compile("^" + re.escape(CONTROL_PREFIX) + _ID + r"/(cancel|schedule\.json)$")
_JOB_REQUEST = re.compile("^" + re.escape(JOBS_PREFIX) + _ID + r"/(cancel|schedule\.json)$")


@dataclass(frozen=True)
class Request:
    kind: str  # hold.BATCH or hold.JOB
    ident: str
    action: str  # "cancel" or "schedule"

    @classmethod
    def parse(cls, key: str) -> Request | None:
        for kind, pattern in ((BATCH, _BATCH_REQUEST), (JOB, _JOB_REQUEST)):
            found = pattern.fullmatch(key)
            if found:
                action = "cancel" if found.group(2) == "cancel" else "schedule"
                return cls(kind, found.group(1), action)
        return None


class Control:
    """Applies requests; ``rescheduled(held)`` shows a job's new times in its status,
    ``job_cancelled(held)`` counts a held job's recipients cancelled."""

    def __init__(self, book: HoldBook, store: BatchStore, recorder: Recorder,
                 settings: Settings, rescheduled: Callable[[Held], object],
                 job_cancelled: Callable[[Held], object]):
        self.book, self.store, self.recorder = book, store, recorder
        self.settings, self._rescheduled = settings, rescheduled
        self._job_cancelled = job_cancelled

    def apply(self, bucket: str, key: str) -> str:
        """Apply the request at ``key``; returns what came of it (for the log and tests).
        Raises only ``TransientError``."""
        request = Request.parse(key)
        if request is None:
            logger.error("not a cancel or reschedule request, ignored", extra={"key": key})
            return "ignored"
        if request.action == "cancel":
            return self._cancel(request)
        try:
            data, _ = self.store.read_batch(bucket, key)
            when, requested_at = parse_reschedule(data, key, self.book.now())
        except BatchGone:
            return "gone"
        except BatchFormatError as exc:
            target = self.recorder.quarantine(bucket, key, exc)
            logger.error("reschedule request quarantined", extra={"to": target,
                                                                  "error": str(exc)})
            return "quarantined"
        held = self.book.reschedule(request.kind, request.ident, when, requested_at)
        if held is None:
            logger.warning("reschedule too late: not held (released, cancelled or unknown)",
                           extra={"item": f"{request.kind}/{request.ident}"})
            return "too late"
        if held.when.document() != when.document():
            logger.warning("reschedule superseded by one asked later",
                           extra={"item": f"{request.kind}/{request.ident}"})
            return "superseded"
        if held.kind == JOB:
            self._rescheduled(held)
        logger.info("rescheduled", extra={"item": f"{request.kind}/{request.ident}",
                                          **held.when.document()})
        return "rescheduled"

    def _cancel(self, request: Request) -> str:
        held = self.book.cancel(request.kind, request.ident)
        if held is None:
            # A job under way (or never held) stops at the fan-out's own cancel check.
            logger.warning("cancel: not held (released, cancelled, or never held)",
                           extra={"item": f"{request.kind}/{request.ident}"})
            return "too late"
        if held.kind == BATCH:
            self._record_cancelled(held)
        else:
            self._job_cancelled(held)
        logger.info("cancelled", extra={"item": f"{request.kind}/{request.ident}"})
        return "cancelled"

    def _record_cancelled(self, held: Held) -> None:
        """A cancelled batch's receipt: every mail ``cancelled`` (a mail the format refused,
        failed as ever). A replay of its upload event writes the same (pipeline._admit)."""
        try:
            data, _ = self.store.read_batch(held.bucket, held.key)
            batch = parse_batch(data, held.key, self.settings)
        except BatchGone:
            return
        except BatchFormatError as exc:  # it was read when it was held: changed since
            self.recorder.quarantine(held.bucket, held.key, exc)
            return
        outcomes = [Outcome(mail.id, Status.CANCELLED) for mail in batch.mails]
        outcomes += [Outcome(r.mail_id, Status.FAILED, reason=str(r.error))
                     for r in batch.rejected]
        self.recorder.record(held.bucket, held.key, batch, outcomes)
