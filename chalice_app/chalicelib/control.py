"""Cancel and reschedule requests for held batches and jobs (docs/scheduling.md).

The plugin or ``postbag`` writes them (the shared contract):

- ``control/batches/<batch_id>/cancel`` (any body) and
  ``control/batches/<batch_id>/schedule.json``;
- ``jobs/<job_id>/schedule.json``. A job's cancel is ``jobs/<job_id>/cancel``, which
  the fan-out has always honoured; a held job finds it when it falls due (split.py).

Each request is one conditional write on the held item (``hold.py``): it wins or it
finds the item released already, and then it changes nothing ("too late", logged).
A request the sender cannot read is quarantined with the field named.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from chalicelib.config import JOBS_PREFIX
from chalicelib.errors import BatchFormatError
from chalicelib.hold import BATCH, JOB, Held, HoldBook
from chalicelib.observe import logger
from chalicelib.outcome import Recorder
from chalicelib.schedule import RESCHEDULE_NAME, parse_reschedule
from chalicelib.store import BatchGone, BatchStore

CONTROL_PREFIX = "control/batches/"
_ID = r"([A-Za-z0-9][A-Za-z0-9._-]{0,63})"
_BATCH_REQUEST = re.compile("^" + re.escape(CONTROL_PREFIX) + _ID + r"/(cancel|schedule\.json)$")
_JOB_REQUEST = re.compile("^" + re.escape(JOBS_PREFIX) + _ID + "/" + re.escape(RESCHEDULE_NAME)
                          + "$")


@dataclass(frozen=True)
class Request:
    kind: str  # hold.BATCH or hold.JOB
    ident: str
    action: str  # "cancel" or "schedule"

    @classmethod
    def parse(cls, key: str) -> Request | None:
        found = _BATCH_REQUEST.fullmatch(key)
        if found:
            return cls(BATCH, found.group(1), "cancel" if found.group(2) == "cancel"
                       else "schedule")
        found = _JOB_REQUEST.fullmatch(key)
        return cls(JOB, found.group(1), "schedule") if found else None


class Control:
    """Applies requests. ``cancelled(held)`` records a cancelled batch (its receipt);
    ``rescheduled(held)`` shows a job's new times in its status."""

    def __init__(self, book: HoldBook, store: BatchStore, recorder: Recorder,
                 cancelled: Callable[[Held], object], rescheduled: Callable[[Held], object]):
        self.book, self.store, self.recorder = book, store, recorder
        self._cancelled, self._rescheduled = cancelled, rescheduled

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
            when = parse_reschedule(data, key, self.book.now())
        except BatchGone:
            return "gone"
        except BatchFormatError as exc:
            target = self.recorder.quarantine(bucket, key, exc)
            logger.error("reschedule request quarantined", extra={"to": target,
                                                                  "error": str(exc)})
            return "quarantined"
        held = self.book.reschedule(request.kind, request.ident, when)
        if held is None:
            logger.warning("reschedule too late: not held (released, cancelled or unknown)",
                           extra={"item": f"{request.kind}/{request.ident}"})
            return "too late"
        if held.kind == JOB:
            self._rescheduled(held)
        logger.info("rescheduled", extra={"item": f"{request.kind}/{request.ident}",
                                          **held.when.document()})
        return "rescheduled"

    def _cancel(self, request: Request) -> str:
        held = self.book.cancel(request.kind, request.ident)
        if held is None:
            logger.warning("cancel too late: not held (released, cancelled or unknown)",
                           extra={"item": f"{request.kind}/{request.ident}"})
            return "too late"
        self._cancelled(held)
        logger.info("cancelled", extra={"item": f"{request.kind}/{request.ident}"})
        return "cancelled"
