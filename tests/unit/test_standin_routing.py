"""The stand-in builds each of moto's REST routers once, however many requests ask at once.

moto caches a service's router with ``functools.cache``, which does not lock: requests
arriving together each built their own, and 128 such builds held the stand-in's SES
for over a minute (``serial_router_building``)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import pytest
from moto.core import responses, routing

from standin.server import serial_router_building

THREADS = 16


@pytest.fixture
def builds(monkeypatch):
    """Counts moto's builds of a service model and of a protocol router, each made slow
    enough for every thread to arrive while the first is still building."""
    counted: Counter[str] = Counter()
    model, router_class = routing.get_service_model, routing.get_router_class

    def get_service_model(name: str) -> Any:
        counted["model"] += 1
        time.sleep(0.05)
        return model.__wrapped__(name)

    def get_router_class(service: str, protocol: str) -> Any:
        built = router_class(service, protocol)

        def build(*args: Any) -> Any:
            counted["router"] += 1
            time.sleep(0.05)
            return built(*args)

        return build

    monkeypatch.setattr(routing, "get_service_model", get_service_model)
    monkeypatch.setattr(routing, "get_router_class", get_router_class)
    routing.get_service_router.cache_clear()
    yield counted
    routing.get_service_router.cache_clear()  # the next caller builds a real one


def test_requests_arriving_together_build_the_router_once(builds):
    serial_router_building()
    start = threading.Barrier(THREADS)
    routers = []

    def first_request() -> None:
        start.wait()
        routers.append(responses.get_service_router("sesv2")._get_router("rest-json"))

    threads = [threading.Thread(target=first_request) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert builds == {"model": 1, "router": 1}
    assert len({id(router) for router in routers}) == 1
