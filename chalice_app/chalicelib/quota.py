"""The account's 24-hour sending quota: whether a chunk of mails still fits in it.

SES refuses sends past ``Max24HourSend`` ("Daily message quota exceeded",
which ``send.translate`` makes ``SendingPaused``). A notify job would meet
that refusal on every mail of every chunk; instead the fan-out sender asks
``QuotaWatch.allows(n)`` before a chunk and hands the chunk back to the
queue, with a delay, when it would not fit. The queue's redelivery resumes
it once the rolling 24 hours have room again.

``GetSendQuota`` is one of SES's non-send calls, limited to one a second per
account: each instance reads it at most once a ``refresh_seconds`` and counts
what it sent since.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.observe import logger

REFRESH_SECONDS = 60.0


@dataclass(frozen=True)
class _Reading:
    limit: float  # Max24HourSend; negative: no limit
    sent: float  # SentLast24Hours when read
    at: float


class QuotaWatch:
    """One instance's view of the 24-hour quota. Thread-safe."""

    def __init__(
        self,
        ses_client: Any,
        clock: Callable[[], float] = time.monotonic,
        refresh_seconds: float = REFRESH_SECONDS,
        on_quota: Callable[[dict], None] | None = None,
    ):
        self._ses = ses_client
        # Each fresh GetSendQuota answer (account.AccountReport.publish), outside the lock.
        self._on_quota = on_quota
        self._clock = clock
        self._refresh = refresh_seconds
        self._reading: _Reading | None = None
        self._asked = -float("inf")  # when GetSendQuota was last called, answered or not
        self._since = 0  # mails this instance sent since the reading
        self._exhausted = False  # SES said so since the reading
        self._lock = threading.Lock()

    def allows(self, count: int) -> bool:
        """Whether ``count`` more mails fit in the quota as last read. A quota that cannot
        be read allows them, and so does any room at all for more than the whole quota
        holds (a sandbox's 200 a day): SES's own refusal still pauses the run."""
        with self._lock:
            reading, fresh = self._read()
            allowed = self._fits(reading, count)
        if fresh is not None and self._on_quota is not None:
            self._on_quota(fresh)
        return allowed

    def _fits(self, reading: _Reading | None, count: int) -> bool:
        if self._exhausted:
            return False
        if reading is None or reading.limit < 0:
            return True
        need = count if count <= reading.limit else 1
        return reading.sent + self._since + need <= reading.limit

    def sent(self, count: int) -> None:
        """Count mails this instance sent since the reading."""
        with self._lock:
            self._since += count

    def exhausted(self) -> None:
        """SES refused a send for the daily quota: no chunk fits until the next reading."""
        with self._lock:
            self._exhausted = True

    def _read(self) -> tuple[_Reading | None, dict | None]:
        """The reading, refreshed when older than ``refresh_seconds`` (lock held), and
        SES's answer when it was just asked."""
        now = self._clock()
        if now - self._asked < self._refresh:
            return self._reading, None
        self._asked = now
        try:
            quota = self._ses.get_send_quota()
        except (ClientError, BotoCoreError) as exc:
            logger.warning("cannot read SES's sending quota", extra={"error": str(exc)})
            return self._reading, None
        self._reading = _Reading(float(quota["Max24HourSend"]), float(quota["SentLast24Hours"]),
                                 now)
        self._since, self._exhausted = 0, False
        return self._reading, quota
