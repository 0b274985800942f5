"""Cancel and reschedule requests for held batches and jobs (docs/scheduling.md).

The plugin or ``postbag`` writes them (the shared contract):

- ``control/batches/<batch_id>/cancel`` (any body) and
  ``control/batches/<batch_id>/schedule.json``;
- ``jobs/<job_id>/schedule.json`` and ``jobs/<job_id>/cancel`` (which the fan-out has
  always honoured for a job under way: here it cancels a held one at once).

Each request is one conditional write on the held item (``hold.py``): it wins or it
finds the item released already, and then it changes nothing ("too late"). A request
for an item not held yet (its upload's event still to come) is kept and applied when
that event comes. Every request's result is written for the site
(``status/control/...``, control_result.py), at once or when it is applied. A request
the sender cannot read is quarantined with the field named; so is a batch's
reschedule with ``send_between`` (a window paces only a job).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from chalicelib.config import JOBS_PREFIX, Settings
from chalicelib.control_result import Result
from chalicelib.errors import BatchFormatError
from chalicelib.formats import parse_batch
from chalicelib.formats.v1 import parse_time
from chalicelib.hold import BATCH, JOB, Held, HoldBook
from chalicelib.model import Outcome, Status
from chalicelib.observe import logger
from chalicelib.outcome import Recorder
from chalicelib.schedule import When, parse_reschedule
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
        try:
            data, uploaded = self.store.read_batch(bucket, key)
            if request.action == "cancel":
                return self._cancel(request, _cancel_asked(data, uploaded))
            when, requested_at = parse_reschedule(data, key, self.book.now())
            if request.kind == BATCH and when.window is not None:
                raise BatchFormatError("send_between", key, "a batch is sent at a time, not "
                                       "over a window (send_between is for notify jobs)")
        except BatchGone:
            return "gone"
        except BatchFormatError as exc:
            target = self.recorder.quarantine(bucket, key, exc)
            logger.error("reschedule request quarantined", extra={"to": target,
                                                                  "error": str(exc)})
            return "quarantined"
        return self._reschedule(request, when, requested_at)

    def _result(self, request: Request, action: str, outcome: Result, held: Held | None,
                requested_at: datetime) -> str:
        """Tell the site how the request ended; what came of it (for the log and tests)."""
        self.book.results.write(request.kind, request.ident, action, outcome,
                                held.when.due if held is not None else None, requested_at)
        return outcome.value

    def _reschedule(self, request: Request, when: When, requested_at: datetime) -> str:
        item = f"{request.kind}/{request.ident}"
        held = self.book.reschedule(request.kind, request.ident, when, requested_at)
        if held is None:
            logger.warning("reschedule too late: not held (released or cancelled)",
                           extra={"item": item})
            return self._result(request, "reschedule", Result.TOO_LATE, None, requested_at)
        if held.when.document() != when.document():
            logger.warning("reschedule superseded by one asked later", extra={"item": item})
            return self._result(request, "reschedule", Result.SUPERSEDED, held, requested_at)
        if not held.arrived:
            logger.info("reschedule kept until its upload is held", extra={"item": item})
            return "pending"
        if held.kind == JOB:
            self._rescheduled(held)
        logger.info("rescheduled", extra={"item": item, **held.when.document()})
        return self._result(request, "reschedule", Result.RESCHEDULED, held, requested_at)

    def _cancel(self, request: Request, requested_at: datetime) -> str:
        item = f"{request.kind}/{request.ident}"
        held = self.book.cancel(request.kind, request.ident, requested_at)
        if held is None:
            # A job under way stops at the fan-out's own cancel check; its status counts.
            logger.warning("cancel too late: not held (released, or cancelled before)",
                           extra={"item": item})
            return self._result(request, "cancel", Result.TOO_LATE, None, requested_at)
        if not held.arrived:
            logger.info("cancel kept until its upload is held", extra={"item": item})
            return "pending"
        if held.kind == BATCH:
            self._record_cancelled(held)
        else:
            self._job_cancelled(held)
        logger.info("cancelled", extra={"item": item})
        return self._result(request, "cancel", Result.CANCELLED, None, requested_at)

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


def _cancel_asked(data: bytes, uploaded: datetime) -> datetime:
    """When a cancel was asked: its ``requested_at`` (the plugin writes one), else when it
    was uploaded (a cancel's body is free)."""
    try:
        asked = json.loads(data).get("requested_at")
        return parse_time(asked, "cancel", "requested_at").astimezone(UTC)
    except (ValueError, AttributeError, TypeError, BatchFormatError):
        return uploaded.astimezone(UTC)
