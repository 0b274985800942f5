"""A Lambda instance builds its clients once: the second invocation of each handler makes
none (a boto3 client costs tens of milliseconds and a credentials lookup)."""

from __future__ import annotations

import json
import urllib.parse

import boto3
import pytest
from chalice.test import Client
from moto import mock_aws
from support.safe_env import prepare_sender_aws

import app

S3_HANDLERS = [
    ("on_suppression_inbox", "suppressions/inbox/u1.json"),
    ("on_redrive_request", "requests/redrive/r1.json"),
    ("on_batch_control", "control/batches/b1/cancel"),
    ("on_job_cancel", "jobs/j1/cancel"),
]


def _clear_builders() -> None:
    for built in vars(app).values():
        if callable(getattr(built, "cache_clear", None)):
            built.cache_clear()


@pytest.fixture
def made():
    """The clients made while the test runs, by service."""
    with mock_aws():
        _clear_builders()
        prepare_sender_aws(app)
        _clear_builders()
        services: list[str] = []

        def record(event_name, **_):
            services.append(event_name.rpartition(".")[2])  # creating-client-class.<service>

        boto3.DEFAULT_SESSION or boto3.setup_default_session()
        boto3.DEFAULT_SESSION.events.register("creating-client-class", record)
        try:
            yield services
        finally:
            boto3.DEFAULT_SESSION.events.unregister("creating-client-class", record)
            _clear_builders()


def _twice(invoke) -> tuple[int, int]:
    return invoke(), invoke()


@pytest.mark.parametrize(("handler", "key"), S3_HANDLERS, ids=[h for h, _ in S3_HANDLERS])
def test_an_s3_handler_makes_its_clients_once(made, handler, key):
    def invoke() -> int:
        before = len(made)
        with Client(app.app) as client:
            client.lambda_.invoke(handler, client.events.generate_s3_event(
                app.BUCKET, urllib.parse.quote_plus(key)))  # gone: nothing to do
        return len(made) - before

    first, second = _twice(invoke)
    assert first > 0 and second == 0, made


def test_the_minutes_publishing_makes_its_clients_once(made):
    def invoke() -> int:
        before = len(made)
        with Client(app.app) as client:
            client.lambda_.invoke("publish_status", client.events.generate_cw_event(
                source="aws.events", detail_type="Scheduled Event", detail={}, resources=[]))
        return len(made) - before

    first, second = _twice(invoke)
    assert first > 0 and second == 0, made


def test_a_windows_capacity_asks_one_client(made):
    app.capacity()
    app.capacity()
    assert made.count("ses") == 1, made
    assert json.dumps(app.capacity())  # the rate and the quota left
