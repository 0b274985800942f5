"""The scheduling functions' roles against what their handlers really call.

``on_batch_uploaded``, ``on_job_uploaded``, ``drain_held``, ``on_batch_control`` and
``on_job_schedule`` run under moto (as in test_job_roles.py): a held batch and a held job
are uploaded (held, past, windowed, replayed, after a request), cancelled or moved, and
released by the drainer once the app's clock says they are due. Every AWS call made is
asked of the role policy provisioning renders for that function.
"""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path

import pytest
from chalice.test import Client
from support.iam_eval import ALLOW
from test_job_roles import (
    JOB_DIR,
    app,  # noqa: F401  (a fixture)
    calls,  # noqa: F401  (a fixture)
    new_instances,
    operations,
    refused,
    split,
    stack_of,
    stage_settings,
)
from test_policies import OBJ, SETTINGS, STACK, ask

from chalicelib.schedule import MAX_AHEAD
from postbag.resources import policies
from postbag.resources.bucket import Retention, lifecycle_rules

BATCH = Path(__file__).resolve().parents[2] / "fixtures" / "batches" / "plain.json"
DUE = "2026-12-01T08:00:00Z"
BEFORE, AFTER = 1_796_108_400.0, 1_796_112_000.0  # 07:00 and 08:00 UTC that day


@pytest.fixture
def clock(app):  # noqa: F811
    module, _ = app
    module.clock = lambda: BEFORE
    module.hold_book.cache_clear()
    yield module
    module.clock = __import__("time").time
    module.hold_book.cache_clear()


def _s3_event(module, handler: str, bucket: str, key: str) -> None:
    with Client(module.app) as client:
        client.lambda_.invoke(handler, client.events.generate_s3_event(
            bucket, urllib.parse.quote_plus(key)))


def _drain(module) -> None:
    with Client(module.app) as client:
        client.lambda_.invoke("drain_held", client.events.generate_cw_event(
            source="aws.events", detail_type="Scheduled Event", detail={}, resources=[]))


def _held_batch(module, session, stack, send_at: str = DUE) -> None:
    doc = json.loads(BATCH.read_text()) | {"send_at": send_at}
    session.client("s3").put_object(Bucket=stack.bucket, Key="queue/plain.json",
                                    Body=json.dumps(doc).encode())
    _s3_event(module, "on_batch_uploaded", stack.bucket, "queue/plain.json")


def _held_job(session, stack, manifest_changes: dict) -> str:
    s3 = session.client("s3")
    manifest_key = ""
    for path in sorted(JOB_DIR.rglob("*")):
        key = str(path.relative_to(JOB_DIR))
        if key.endswith(".gz"):
            s3.put_object(Bucket=stack.bucket, Key=key, Body=path.read_bytes())
        elif key.endswith("manifest.json"):
            manifest_key = key
    manifest = json.loads((JOB_DIR / manifest_key).read_text()) | manifest_changes
    s3.put_object(Bucket=stack.bucket, Key=manifest_key, Body=json.dumps(manifest).encode())
    return manifest_key


def test_the_drainers_role_allows_releasing_a_batch_and_a_windowed_job(app, calls, clock):  # noqa: F811
    app, session = app
    stack = stack_of(app)
    _held_batch(app, session, stack)
    split(app, stack.bucket, _held_job(session, stack, {"send_between": {
        "start": DUE, "end": "2026-12-01T09:00:00Z"}}))
    app.clock = lambda: AFTER
    new_instances(app)
    calls.clear()
    _drain(app)
    made = operations(calls)
    assert {"email:SendEmail", "sqs:SendMessageBatch", "dynamodb:UpdateItem",
            "s3:DeleteObject"} <= made, made
    drainer = policies.drainer_policy(stack, stage_settings(app))
    assert refused(calls, drainer, stack) == []
    # The splitter's role could not have released the batch: it sends nothing.
    splitter = policies.splitter_policy(stack, stage_settings(app))
    assert any(r.startswith("ses:SendEmail ") for r in refused(calls, splitter, stack))


def test_the_control_roles_allow_cancelling_a_batch_moving_and_cancelling_a_job(app, calls, clock):  # noqa: F811
    app, session = app
    stack = stack_of(app)
    s3 = session.client("s3")
    _held_batch(app, session, stack)
    manifest_key = _held_job(session, stack, {"send_at": DUE})
    split(app, stack.bucket, manifest_key)
    calls.clear()
    batch_id = json.loads(BATCH.read_text())["batch_id"]
    s3.put_object(Bucket=stack.bucket, Key=f"control/batches/{batch_id}/cancel", Body=b"")
    _s3_event(app, "on_batch_control", stack.bucket, f"control/batches/{batch_id}/cancel")
    receipt = json.loads(s3.get_object(Bucket=stack.bucket, Key=f"receipts/{batch_id}.json")
                         ["Body"].read())
    assert set(receipt["counts"]) == {"cancelled"}
    assert refused(calls, policies.control_policy(stack, stage_settings(app),
                                                  "on_batch_control"), stack) == []
    calls.clear()
    request = manifest_key.replace("manifest.json", "schedule.json")
    s3.put_object(Bucket=stack.bucket, Key=request, Body=json.dumps({
        "version": 1, "send_at": None, "send_between": {
            "start": DUE, "end": "2026-12-01T10:00:00Z"},
        "requested_at": "2026-12-01T07:00:00Z"}).encode())
    _s3_event(app, "on_job_schedule", stack.bucket, request)
    status = json.loads(s3.get_object(Bucket=stack.bucket, Key=manifest_key.replace(
        "manifest.json", "status.json"))["Body"].read())
    assert (status["state"], status["send_between"]["end"]) == ("scheduled",
                                                                 "2026-12-01T10:00:00Z")
    control = policies.control_policy(stack, stage_settings(app), "on_job_schedule")
    assert refused(calls, control, stack) == []
    assert not any(r.startswith("ses:Send") for r in refused(calls, control, stack))
    assert "email:SendEmail" not in operations(calls)
    calls.clear()
    cancel = manifest_key.replace("manifest.json", "cancel")
    s3.put_object(Bucket=stack.bucket, Key=cancel, Body=b"")
    _s3_event(app, "on_job_cancel", stack.bucket, cancel)
    status = json.loads(s3.get_object(Bucket=stack.bucket, Key=manifest_key.replace(
        "manifest.json", "status.json"))["Body"].read())
    assert status["state"] == "cancelled"
    assert refused(calls, policies.control_policy(stack, stage_settings(app), "on_job_cancel"),
                   stack) == []


@pytest.mark.parametrize("send_at", [DUE, "2026-12-01T06:00:00Z"], ids=["held", "past"])
def test_the_upload_roles_allow_holding_and_replaying_a_batch_and_a_job(app, calls, clock,  # noqa: F811
                                                                         send_at):
    app, session = app
    stack = stack_of(app)
    sender = policies.lambda_policy(stack, stage_settings(app))
    splitter = policies.splitter_policy(stack, stage_settings(app))
    for replay in (False, True):
        calls.clear()
        _held_batch(app, session, stack, send_at)
        made = operations(calls)
        assert "dynamodb:PutItem" in made or replay, made
        assert refused(calls, sender, stack) == [], f"batch (replay: {replay})"
        calls.clear()
        split(app, stack.bucket, _held_job(session, stack, {"send_at": send_at}))
        assert refused(calls, splitter, stack) == [], f"job (replay: {replay})"


def test_the_splitters_role_allows_planning_and_replaying_a_window(app, calls, clock):  # noqa: F811
    app, session = app
    stack = stack_of(app)
    splitter = policies.splitter_policy(stack, stage_settings(app))
    window = {"send_between": {"start": DUE, "end": "2026-12-01T09:00:00Z"}}
    for _ in range(2):  # the upload, and its replay
        calls.clear()
        split(app, stack.bucket, _held_job(session, stack, window))
        assert refused(calls, splitter, stack) == []
        assert "email:GetSendQuota" in operations(calls), "the window planned"
    app.clock = lambda: AFTER
    new_instances(app)
    _drain(app)
    calls.clear()
    split(app, stack.bucket, _held_job(session, stack, window))  # replayed while paced
    assert refused(calls, splitter, stack) == []


def test_a_request_before_the_upload_is_kept_then_applied_by_the_upload_role(app, calls, clock):  # noqa: F811
    app, session = app
    stack = stack_of(app)
    s3 = session.client("s3")
    batch_id = json.loads(BATCH.read_text())["batch_id"]
    request = f"control/batches/{batch_id}/cancel"
    s3.put_object(Bucket=stack.bucket, Key=request,
                  Body=b'{"requested_at": "2026-12-01T07:00:00.500Z"}')
    calls.clear()
    _s3_event(app, "on_batch_control", stack.bucket, request)
    assert refused(calls, policies.control_policy(stack, stage_settings(app),
                                                  "on_batch_control"), stack) == []
    calls.clear()
    _held_batch(app, session, stack)
    assert refused(calls, policies.lambda_policy(stack, stage_settings(app)), stack) == []
    result = json.loads(s3.get_object(Bucket=stack.bucket,
                                      Key=f"status/control/batches/{batch_id}.json")["Body"].read())
    assert (result["outcome"], result["requested_at"]) == ("cancelled", "2026-12-01T07:00:00.500Z")


@pytest.mark.parametrize("failed_days", [1, 30, 400])
def test_jobs_and_attachments_outlive_the_furthest_send_at_by_the_failed_days(failed_days):
    rules = {rule["ID"]: rule["Expiration"]["Days"]
             for rule in lifecycle_rules(Retention(failed=failed_days)) if "Expiration" in rule}
    for kept in ("postbag-jobs", "postbag-attachments"):
        assert rules[kept] == MAX_AHEAD.days + failed_days > MAX_AHEAD.days


@pytest.mark.parametrize("handler", ["on_batch_control", "on_job_schedule", "on_job_cancel"])
def test_the_control_roles_read_a_jobs_control_files_never_its_recipients(handler):
    policy = policies.control_policy(STACK, SETTINGS, handler)
    for name, allowed in (("manifest.json", True), ("cancel", True), ("schedule.json", True),
                          ("status.json", True), ("part-0.ndjson.gz", False)):
        answer = ask(policy, "s3:GetObject", f"{OBJ}jobs/j1/{name}")
        assert (answer == ALLOW) is allowed, (name, answer)
