"""An instance freezes its cold start's heap once (``chalicelib.heap``), after its first
invocation, through the app's middleware: what was alive then is out of every later
full collection, cyclic garbage is freed first, and what comes later is collected."""

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


def collected(obj: object) -> bool:
    """Whether ``obj`` is in one of the collector's generations (frozen ones are not)."""
    return any(o is obj for o in gc.get_objects())


@pytest.fixture
def cold(monkeypatch):
    """A process whose first invocation is still to come; its heap as it was afterwards."""
    monkeypatch.setattr(heap, "_frozen", False)
    yield
    gc.unfreeze()


def test_the_cold_start_is_frozen_after_its_garbage_is_freed(cold):
    garbage = weakref.ref(Node())
    kept = Node()
    heap.freeze_cold_start()
    assert garbage() is None
    assert not collected(kept)


def test_only_the_first_call_freezes(cold):
    heap.freeze_cold_start()
    later = Node()
    heap.freeze_cold_start()
    assert collected(later)


def test_a_handler_invocation_freezes_the_cold_start(cold):
    with mock_aws():
        prepare_sender_aws(app)
        app.fanout_stages.cache_clear()
        before = Node()
        with Client(app.app) as client:
            client.lambda_.invoke("on_work_item", {"Records": []})
        app.fanout_stages.cache_clear()
    assert not collected(before)
