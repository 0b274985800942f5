"""An instance freezes its heap twice (``chalicelib.heap``): once its sending stages are
built, and after its first invocation, each once per process: what was alive then is out
of every later full collection, cyclic garbage is freed first, and what comes later is
collected."""

from __future__ import annotations

import gc
import weakref

import pytest
from chalice.test import Client
from moto import mock_aws
from support.safe_env import prepare_sender_aws

import app
from chalicelib import heap


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector frees it


def walked(obj: object) -> bool:
    """Whether full collections still walk ``obj``: it is in one of the collector's
    generations, not frozen."""
    return any(o is obj for o in gc.get_objects())


@pytest.fixture
def cold(monkeypatch):
    """A process that has reached neither moment yet; its heap as it was afterwards."""
    monkeypatch.setattr(heap, "_reached", set())
    yield
    gc.unfreeze()


def test_what_is_alive_is_frozen_after_the_garbage_is_freed(cold):
    garbage = weakref.ref(Node())
    kept = Node()
    heap.freeze_once(heap.STAGES_BUILT)
    assert garbage() is None
    assert not walked(kept)


def test_each_moment_freezes_only_the_first_time(cold):
    heap.freeze_once(heap.STAGES_BUILT)
    later = Node()
    heap.freeze_once(heap.STAGES_BUILT)
    assert walked(later)
    heap.freeze_once(heap.FIRST_INVOCATION)
    assert not walked(later)
    last = Node()
    heap.freeze_once(heap.FIRST_INVOCATION)
    assert walked(last)


@pytest.fixture
def sender_aws():
    with mock_aws():
        prepare_sender_aws(app)
        app.fanout_stages.cache_clear()
        yield
        app.fanout_stages.cache_clear()
        app.stages.cache_clear()


@pytest.mark.parametrize("build", [app.fanout_stages, app.stages],
                         ids=["notify jobs", "batches"])
def test_building_the_stages_freezes_them_before_any_send(cold, sender_aws, build):
    before = Node()
    built = build()
    assert not walked(before)
    assert not walked(getattr(built, "mail", built).dispatcher)


def test_a_first_invocation_freezes_what_it_made(cold, sender_aws):
    app.fanout_stages()
    with Client(app.app) as client:
        made = Node()  # made after the stages were built, as a first invocation's caches are
        client.lambda_.invoke("on_work_item", {"Records": []})
    assert not walked(made)
