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
from chalicelib.errors import ConfigurationError, SendAmbiguous, SesUnavailable
from chalicelib.send import translate


def reserved_concurrency(lambda_client: Any, function_name: str) -> int:
    """How many instances of the function Lambda lets run at once, as Lambda enforces it.

    Read from Lambda rather than told in a setting, so that the share cannot
    drift from what ``.chalice/config.json`` reserved (or a stage added by hand
    forgot to say).
    """
    try:
        got = lambda_client.get_function_concurrency(FunctionName=function_name)
    except (ClientError, BotoCoreError) as exc:
        raise ConfigurationError(
            f"cannot read the reserved concurrency of {function_name}: {exc}"
        ) from exc
    if not got.get("ReservedConcurrentExecutions"):
        raise ConfigurationError(
            f"{function_name} has no reserved concurrency, so SES's rate cannot be shared: "
            "set reserved_concurrency for its stage in .chalice/config.json, "
            "or POSTBAG_MAX_SEND_RATE"
        )
    return int(got["ReservedConcurrentExecutions"])


def send_rate(settings: Settings, ses_client: Any, concurrency: Callable[[], int]) -> float:
    """Mails per second for one instance: the configured rate, or SES's shared by the instances.

    ``POSTBAG_MAX_SEND_RATE=0`` means "derive it": SES's ``MaxSendRate`` divided
    by ``concurrency()``, the instances that may run at once (asked only then).
    """
    if settings.max_send_rate > 0:
        return settings.max_send_rate
    try:
        quota = ses_client.get_send_quota()
    except (ClientError, BotoCoreError) as exc:
        error = translate(exc)
        # A read: a lost answer is no more than SES being unavailable.
        raise (SesUnavailable(str(error)) if isinstance(error, SendAmbiguous) else error) from exc
    return float(quota["MaxSendRate"]) / concurrency()


class RateLimiter:
    """Grants send slots, never more than ``rate`` in any one-second window.

    Two rules. Slots are spaced evenly (``1/rate`` apart, stretched by
    ``guard``) so SES sees a steady stream, not a burst at the start of each
    second; the spacing follows the planned slots, so a wake-up that comes a
    little late (sleep overshoot, the GIL) is made up for by the next ones,
    if it is less than ``catch_up`` seconds late. And the slot ``rate`` grants back must be at
    least ``1 + guard`` seconds old, checked on the real grant times: that
    rule alone holds the limit, whatever the spacing does. ``guard`` leaves
    room for the jitter between a grant and the request reaching SES.

    The caller holds the lock while it waits for its slot, so grants happen in
    order and exactly one thread sleeps at a time (no thundering herd).
    """

    def __init__(
        self,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        guard: float = 0.02,
        catch_up: float = 0.5,
    ):
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        # A fractional rate above 1 cannot be kept in every window: round down.
        self.per_window = max(1, math.floor(rate))
        self._window = 1.0 + guard
        self._interval = self._window / rate
        self._catch_up = catch_up
        self._clock = clock
        self._sleep = sleep
        self._granted: deque[float] = deque(maxlen=self.per_window)
        self._planned = -math.inf
        self._lock = threading.Lock()

    def _next_slot(self, now: float) -> float:
        slot = self._planned + self._interval
        if slot < now - self._catch_up:
            slot = now  # idle, or hopelessly late: start the plan afresh from here
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
            self._planned = slot
            self._granted.append(now)
            return now
