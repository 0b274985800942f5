"""Shared test set-up: safe AWS defaults and one way to read fixtures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support.safe_env import use_safe_env

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
LEDGER_TABLE = "postbag-ledger"

use_safe_env(bucket="postbag-test", function_name="postbag-test-on_batch_uploaded")


def fixture_bytes(relative: str) -> bytes:
    """A file under ``fixtures/``: the contract the PHP and Python halves share."""
    return (FIXTURES / relative).read_bytes()


def load_fixture(relative: str) -> Any:
    return json.loads(fixture_bytes(relative))


def parse_fixture(relative: str, settings, **kwargs: Any):
    """The batch file at ``relative`` through the sender's parser, named by its path."""
    from chalicelib.formats import parse_batch

    return parse_batch(fixture_bytes(relative), relative, settings, **kwargs)


@pytest.fixture(autouse=True, scope="session")
def heap_never_frozen():
    """The test process is no Lambda instance: its heap, full of other tests' state, is
    never frozen (heap.py), whichever test first builds stages; test_heap.py resets the
    moments for its own tests."""
    from chalicelib import heap

    heap._reached.update((heap.STAGES_BUILT, heap.FIRST_INVOCATION))


@pytest.fixture
def clock():
    from support.clock import FakeClock

    return FakeClock()


@pytest.fixture
def settings():
    from chalicelib.config import Settings

    return Settings(allowed_senders=("example.org",))


@pytest.fixture
def dynamodb():
    """A moto DynamoDB client (in process) with the ledger's table, ``LEDGER_TABLE``."""
    import boto3
    from moto import mock_aws

    from chalicelib.ledger import create_table

    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_table(client, LEDGER_TABLE)
        yield client
