"""The stand-in delivers every S3 notification the sender declares (``app_routes``), each
new object once, to the handler whose prefix and suffix match, as S3 would."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import boto3
import pytest
from conftest import ROOT
from moto import mock_aws

import app
from standin.lambda_runtime import LocalDispatcher, app_routes

BUCKET = "postbag-routes"


def _declared_s3_handlers() -> set[str]:
    """The functions app.py decorates with ``@app.on_s3_event``, read from its source."""
    tree = ast.parse(Path(ROOT, "chalice_app", "app.py").read_text(encoding="utf-8"))
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)
            for decorator in node.decorator_list if isinstance(decorator, ast.Call)
            and ast.unparse(decorator.func) == "app.on_s3_event"}


def test_every_s3_handler_app_py_declares_is_routed():
    routed = {route.handler.func.__name__ for route in app_routes(app)}
    assert _declared_s3_handlers() == routed
    assert {"on_batch_control", "on_job_schedule", "on_job_cancel", "on_redrive_request"} <= routed


# (key put in the bucket, the handler S3 would invoke, or None)
KEYS = [
    ("queue/b1.json", "on_batch_uploaded"),
    ("jobs/j1/manifest.json", "on_job_uploaded"),
    ("jobs/j1/part-0.ndjson.gz", None),
    ("jobs/j1/schedule.json", "on_job_schedule"),
    ("jobs/j1/cancel", "on_job_cancel"),
    ("control/batches/b1/cancel", "on_batch_control"),
    ("suppressions/inbox/u1.json", "on_suppression_inbox"),
    ("requests/redrive/u1.json", "on_redrive_request"),
    ("receipts/b1.json", None),
]


@pytest.fixture
def delivered() -> Any:
    """A stand-in ``app`` module whose S3 handlers note the keys they were given."""
    calls: list[tuple[str, str]] = []

    class Recording:
        def __init__(self) -> None:
            self.app = app.app
            for route in app_routes(app):
                name = route.handler.func.__name__
                setattr(self, name, lambda event, context, name=name: calls.extend(
                    (name, unquote_plus(record["s3"]["object"]["key"]))
                    for record in event["Records"]))

    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        yield s3, LocalDispatcher(s3, BUCKET, app_routes(Recording())), calls


def test_each_new_object_goes_once_to_the_handler_s3_would_invoke(delivered):
    s3, dispatcher, calls = delivered
    for key, _ in KEYS:
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"{}")
    dispatcher.run()
    assert sorted(calls) == sorted((handler, key) for key, handler in KEYS if handler)
    calls.clear()
    dispatcher.run()  # nothing new
    s3.put_object(Bucket=BUCKET, Key="jobs/j1/cancel", Body=b"again")  # a new version
    dispatcher.run()
    assert calls == [("on_job_cancel", "jobs/j1/cancel")]
