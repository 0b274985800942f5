"""A simulated clock for tests: ``sleep`` moves time on at once, from any thread. And what
a list of event times shows of their pace (the tests' checks, bench/fanout.py's figures)."""

from __future__ import annotations

import math
import threading
from collections import Counter
from itertools import pairwise


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


def per_full_second(times: list[float]) -> list[int]:
    """Events in each whole second (of ``time.time()``) after the first event's second and
    before the last's, which are partial; a second without events counts 0."""
    counts = Counter(math.floor(t) for t in times)
    if not counts:
        return []
    return [counts[second] for second in range(min(counts) + 1, max(counts))]


def pauses(times: list[float], longer_than: float) -> list[float]:
    """The gaps between consecutive events longer than ``longer_than`` seconds, in time order."""
    return [after - before for before, after in pairwise(sorted(times))
            if after - before > longer_than]
