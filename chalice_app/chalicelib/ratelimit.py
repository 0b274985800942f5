"""How fast one function instance may send, and a limiter that holds it to that.

SES counts its maximum send rate per second over the whole account; every
concurrent instance of the function gets an equal share of it.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.config import Settings
from chalicelib.send import translate


def send_rate(settings: Settings, ses_client: Any) -> float:
    """Mails per second for one instance: the configured rate, or SES's divided by concurrency.

    ``POSTBAG_MAX_SEND_RATE=0`` means "derive it": SES's ``MaxSendRate`` shared by
    the ``POSTBAG_RESERVED_CONCURRENCY`` instances that may run at once.
    """
    if settings.max_send_rate > 0:
        return settings.max_send_rate
    try:
        quota = ses_client.get_send_quota()
    except (ClientError, BotoCoreError) as exc:
        raise translate(exc) from exc
    return float(quota["MaxSendRate"]) / max(1, settings.reserved_concurrency)


class RateLimiter:
    """Grants send slots, never more than ``rate`` in any one-second window.

    Slots are spaced ``1/rate`` apart so SES sees a steady stream rather than a
    burst at the start of each second; on top of that, the slot ``n`` grants
    back must be at least one second (plus ``guard``) old, which holds the
    window limit exactly whatever the spacing's rounding. ``guard`` absorbs the
    scheduling jitter between a grant and the request reaching SES.

    The caller holds the lock while it waits for its slot, so grants happen in
    order and exactly one thread sleeps at a time (no thundering herd).
    """

    def __init__(
        self,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        guard: float = 0.001,
    ):
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        # A fractional rate above 1 cannot be kept in every window: round down.
        self.per_window = max(1, math.floor(rate))
        self._interval = 1.0 / rate
        self._window = 1.0 + guard
        self._clock = clock
        self._sleep = sleep
        self._granted: deque[float] = deque(maxlen=self.per_window)
        self._lock = threading.Lock()

    def _next_slot(self, now: float) -> float:
        if not self._granted:
            return now
        slot = max(now, self._granted[-1] + self._interval)
        if len(self._granted) == self.per_window:
            slot = max(slot, self._granted[0] + self._window)
        return slot

    def acquire(self, timeout: float | None = None) -> float | None:
        """Wait for the next slot and return its time; ``None`` if it is over ``timeout`` s away.

        A refused slot is not taken, so the next caller may still use it.
        """
        with self._lock:
            now = self._clock()
            slot = self._next_slot(now)
            if timeout is not None and slot - now > timeout:
                return None
            while now < slot:
                self._sleep(slot - now)
                now = self._clock()
            self._granted.append(now)
            return now
