"""Shared test set-up: safe AWS defaults and one way to read fixtures."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"

# Dummy credentials so that nothing can reach a real account; set before any
# client (or app.py, which reads its settings at import) is made.
for name, value in {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "POSTBAG_BUCKET": "postbag-test",
    "POSTBAG_ALLOWED_SENDERS": "example.org",
    "POSTBAG_MAX_SEND_RATE": "1000",
    # chalice.test.Client gives the handler a 3-second Lambda context.
    "POSTBAG_DEADLINE_MARGIN_MS": "1000",
    "AWS_LAMBDA_FUNCTION_NAME": "postbag-test-on_batch_uploaded",
    "POWERTOOLS_METRICS_NAMESPACE": "Postbag",
    "POWERTOOLS_SERVICE_NAME": "postbag",
}.items():
    os.environ[name] = value
os.environ.pop("AWS_ENDPOINT_URL", None)
os.environ.pop("AWS_PROFILE", None)


def fixture_bytes(relative: str) -> bytes:
    """A file under ``fixtures/``: the contract the PHP and Python halves share."""
    return (FIXTURES / relative).read_bytes()


def load_fixture(relative: str) -> Any:
    return json.loads(fixture_bytes(relative))


def parse_fixture(relative: str, settings, **kwargs: Any):
    """The batch file at ``relative`` through the sender's parser, named by its path."""
    from chalicelib.batch import parse_batch

    return parse_batch(fixture_bytes(relative), relative, settings, **kwargs)


@pytest.fixture
def clock():
    from clock import FakeClock

    return FakeClock()


@pytest.fixture
def settings():
    from chalicelib.config import Settings

    return Settings(allowed_senders=("example.org",))
