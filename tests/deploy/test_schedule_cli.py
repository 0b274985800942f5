"""``postbag schedule list``, ``postbag reschedule`` and ``postbag cancel --batch`` against
a held batch: the requests they write are the ones the sender's handlers apply."""

from __future__ import annotations

import json
import urllib.parse
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from chalice.test import Client
from test_job_roles import REGION, app, stack_of  # noqa: F401  (app: a fixture)

from postbag import cli

BATCH = Path(__file__).resolve().parents[2] / "fixtures" / "batches" / "plain.json"


def _invoke(module, handler: str, bucket: str, key: str) -> None:
    with Client(module.app) as client:
        client.lambda_.invoke(handler, client.events.generate_s3_event(
            bucket, urllib.parse.quote_plus(key)))


def _in(hours: float) -> str:
    return (datetime.now(UTC) + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_list_reschedule_and_cancel_a_held_batch(app, capsys):  # noqa: F811
    module, session = app
    stack = stack_of(module)
    s3 = session.client("s3")
    doc = json.loads(BATCH.read_text()) | {"send_at": _in(2)}
    s3.put_object(Bucket=stack.bucket, Key="queue/plain.json", Body=json.dumps(doc).encode())
    _invoke(module, "on_batch_uploaded", stack.bucket, "queue/plain.json")
    where = ["--stage", stack.stage, "--bucket", stack.bucket, "--region", REGION]
    batch_id = doc["batch_id"]

    assert cli.main(["schedule", "list", *where]) == 0
    [line] = capsys.readouterr().out.splitlines()
    assert batch_id in line and doc["send_at"] in line and "held" in line

    later = _in(5)
    assert cli.main(["reschedule", "--batch", batch_id, "--at", later, *where]) == 0
    capsys.readouterr()
    _invoke(module, "on_batch_control", stack.bucket,
            f"control/batches/{batch_id}/schedule.json")
    assert cli.main(["schedule", "list", "--json", *where]) == 0
    [held] = json.loads(capsys.readouterr().out)
    assert (held["id"], held["due"], held["send_at"]) == (batch_id, later, later)

    assert cli.main(["cancel", "--batch", batch_id, *where]) == 0
    _invoke(module, "on_batch_control", stack.bucket, f"control/batches/{batch_id}/cancel")
    receipt = json.loads(s3.get_object(Bucket=stack.bucket, Key=f"receipts/{batch_id}.json")
                         ["Body"].read())
    assert set(receipt["counts"]) == {"cancelled"}
    result = json.loads(s3.get_object(Bucket=stack.bucket,
                                      Key=f"status/control/batches/{batch_id}.json")["Body"].read())
    assert (result["request"], result["outcome"]) == ("cancel", "cancelled")
    capsys.readouterr()
    assert cli.main(["schedule", "list", *where]) == 0
    assert capsys.readouterr().out.strip() == "nothing held"


@pytest.mark.parametrize("when, words", [
    (["--at", "2026-12-07T08:00:00"], "field send_at: send_at must be date-time"),
    (["--at", "2099-01-01T00:00:00Z"], "more than 90 days ahead"),
    (["--between", "2026-12-07T10:00:00Z", "2026-12-07T09:00:00Z"], "send_between.end"),
], ids=["no-offset", "too-far", "window-reversed"])
def test_a_reschedule_the_sender_would_refuse_is_refused_here(app, capsys, when, words):  # noqa: F811
    module, _ = app
    stack = stack_of(module)
    where = ["--stage", stack.stage, "--bucket", stack.bucket, "--region", REGION]
    assert cli.main(["reschedule", "--job", "j1", *when, *where]) == 1
    assert words in capsys.readouterr().err


def test_a_batch_is_not_rescheduled_over_a_window(app, capsys):  # noqa: F811
    module, _ = app
    stack = stack_of(module)
    where = ["--stage", stack.stage, "--bucket", stack.bucket, "--region", REGION]
    assert cli.main(["reschedule", "--batch", "b1", "--between", _in(1), _in(2), *where]) == 1
    assert "--between paces a notify job" in capsys.readouterr().err
