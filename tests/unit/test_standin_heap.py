"""The stand-in servers' freezing of long-lived objects (``standin.heap``): what is alive
is frozen, young cyclic garbage is still freed first."""

from __future__ import annotations

import gc
import time
import weakref

import pytest

from standin.heap import freeze_long_lived

INTERVAL_S = 0.05


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector frees it


@pytest.fixture
def freezing():
    stop = freeze_long_lived(INTERVAL_S)
    yield
    stop.set()
    gc.unfreeze()  # the rest of the test session's heap as it was


def _after_a_tick() -> None:
    time.sleep(INTERVAL_S * 4)


def test_what_is_alive_is_frozen(freezing):
    kept = [Node() for _ in range(100)]
    _after_a_tick()
    assert gc.get_freeze_count() >= len(kept)


def test_young_cyclic_garbage_is_freed_not_frozen(freezing):
    garbage = weakref.ref(Node())  # unreachable at once, but a cycle
    _after_a_tick()
    assert garbage() is None
