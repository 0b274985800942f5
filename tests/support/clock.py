"""A simulated clock for tests: ``sleep`` moves time on at once, from any thread."""

from __future__ import annotations

import threading


class FakeClock:
    def __init__(self, start: float = 1000.0):
        self.now = start
        self.slept = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.now += max(0.0, seconds)
            self.slept += max(0.0, seconds)


def busiest_second(times: list[float]) -> int:
    """The most events in any window ``[t, t + 1)`` (a window starting at an event is the worst)."""
    ordered = sorted(times)
    best, end = 0, 0
    for start, t in enumerate(ordered):
        while end < len(ordered) and ordered[end] < t + 1.0:
            end += 1
        best = max(best, end - start)
    return best
