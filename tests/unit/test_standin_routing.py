"""The stand-in builds each of moto's REST routers, and loads each service model, once,
however many requests ask at once.

moto caches them with ``functools.cache``, which does not lock: requests arriving
together each built their own, and 128 such builds held the stand-in's SES for over a
minute (``serial_router_building``)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from moto.core import responses, routing, utils

from standin.server import MOTO_MODEL_CACHES, serial_router_building

THREADS = 16


@pytest.fixture
def builds(monkeypatch):
    """Counts moto's builds of a service model and of a protocol router, each made slow
    enough for every thread to arrive while the first is still building; moto is put
    back as it was afterwards, unpatched by ``serial_router_building``."""
    for module in (responses, routing, utils):
        for name in MOTO_MODEL_CACHES:
            if hasattr(module, name):
                monkeypatch.setattr(module, name, getattr(module, name))
    monkeypatch.setattr(responses, "get_service_router", responses.get_service_router)
    monkeypatch.setattr(routing.ServiceOperationRouter, "_get_router",
                        routing.ServiceOperationRouter._get_router)
    counted: Counter[str] = Counter()
    model, router_class = utils.get_service_model, routing.get_router_class

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

    monkeypatch.setattr(utils, "get_service_model", get_service_model)
    monkeypatch.setattr(routing, "get_router_class", get_router_class)
    routing.get_service_router.cache_clear()
    yield counted
    routing.get_service_router.cache_clear()  # the next caller builds a real one


def together(request: Callable[[], Any]) -> list[Any]:
    """What ``request`` returned in each of THREADS threads, all started at once."""
    start = threading.Barrier(THREADS)
    answers = []

    def run() -> None:
        start.wait()
        answers.append(request())

    threads = [threading.Thread(target=run) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def test_requests_arriving_together_build_the_router_once(builds):
    serial_router_building()
    routers = together(lambda: responses.get_service_router("sesv2")._get_router("rest-json"))
    assert len(routers) == THREADS
    assert builds == {"model": 1, "router": 1}
    assert len({id(router) for router in routers}) == 1


def test_requests_arriving_together_load_the_model_once(builds):
    serial_router_building()
    models = together(lambda: responses.get_service_model("ses"))
    assert len(models) == THREADS
    assert builds == {"model": 1}
    assert len({id(model) for model in models}) == 1
