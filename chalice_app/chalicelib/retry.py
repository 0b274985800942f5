"""The retry policy: which errors are worth another try, how often, and how long to wait.

Backoff is exponential with "full jitter" (a random wait between zero and the
exponential cap), which spreads competing senders apart better than a fixed
or equal-jitter delay after SES throttles all of them at once. ``sleep`` and
``random`` are injected so tests never wait.
"""

from __future__ import annotations

import random as _random
import time
from collections.abc import Callable
from typing import TypeVar

from chalicelib.errors import SesUnavailable, StorageUnavailable, Throttled

T = TypeVar("T")

# Named on purpose: SendingPaused is transient too, but retrying it within one
# invocation only burns time (the account stays paused for hours).
RETRYABLE: tuple[type[Exception], ...] = (Throttled, SesUnavailable, StorageUnavailable)


class RetryPolicy:
    """Calls a function until it succeeds, raises a non-retryable error, or attempts run out."""

    def __init__(
        self,
        attempts: int = 5,
        base_delay: float = 0.1,
        max_delay: float = 5.0,
        retryable: tuple[type[Exception], ...] = RETRYABLE,
        sleep: Callable[[float], None] = time.sleep,
        random: Callable[[], float] = _random.random,
    ):
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.attempts = attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.retryable = retryable
        self._sleep = sleep
        self._random = random

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (0 for the first retry)."""
        return self._random() * min(self.max_delay, self.base_delay * 2**retry)

    def pause(self, retry: int) -> None:
        """Wait before retry number ``retry``, for callers that decide themselves what to retry."""
        self._sleep(self.delay(retry))

    def call(
        self,
        fn: Callable[[], T],
        on_retry: Callable[[Exception, int, float], None] | None = None,
    ) -> T:
        """``fn()``'s result; the last retryable error once ``attempts`` calls have failed.

        ``on_retry(error, retry, delay)`` runs before each wait (for logs and metrics).
        """
        for retry in range(self.attempts - 1):
            try:
                return fn()
            except self.retryable as exc:
                wait = self.delay(retry)
                if on_retry is not None:
                    on_retry(exc, retry, wait)
                self._sleep(wait)
        return fn()  # the last attempt: its error, if any, is the caller's
