"""The notify job functions' roles against what their handlers really call.

``app.on_job_uploaded`` and ``app.on_work_item`` run under moto on the example
job (fixtures/jobs/new-post/); every AWS call they make is recorded (botocore's
``provide-client-params`` event) and asked of the role policy provisioning renders for
that function, with the resource and the item keys IAM would see. A handler
that starts calling something else fails here, not in production. Then the
same for a job that is cancelled, and one whose manifest is quarantined.
"""

from __future__ import annotations

import dataclasses
import json
import os
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from chalice.test import Client
from moto import mock_aws
from support.iam_eval import ALLOW, evaluate
from support.safe_env import prepare_sender_aws

from chalicelib.ledger import KEY_ATTRIBUTE
from postbag.resources import policies
from postbag.stack import Stack

JOB_DIR = Path(__file__).resolve().parents[2] / "fixtures" / "jobs" / "new-post"
REGION, ACCOUNT = "us-east-1", "123456789012"

Call = tuple[str, str, dict[str, Any]]  # service, operation, parameters


def new_instances(app) -> None:
    """Forget the app's clients and stages (every builder it caches), as a new Lambda
    instance starts without them: a client made earlier would not report its calls."""
    for built in vars(app).values():
        if callable(getattr(built, "cache_clear", None)):
            built.cache_clear()


@pytest.fixture
def app():
    import app

    with mock_aws():
        prepare_sender_aws(app)
        new_instances(app)  # every client made inside the mock
        test_session = boto3.session.Session()  # the test's own calls are not recorded
        test_session.client("sqs").create_queue(QueueName=app.SETTINGS.work_queue)
        yield app, test_session
        new_instances(app)


@pytest.fixture
def calls() -> Iterator[list[Call]]:
    made: list[Call] = []

    def record(model, params, **_):
        made.append((model.service_model.endpoint_prefix, model.name, params))

    boto3.DEFAULT_SESSION or boto3.setup_default_session()
    # The parameters as the caller gave them (before-call sees the serialised request).
    boto3.DEFAULT_SESSION.events.register("provide-client-params", record)
    try:
        yield made
    finally:
        boto3.DEFAULT_SESSION.events.unregister("provide-client-params", record)


def upload(session: boto3.session.Session, bucket: str, manifest: dict | None = None) -> str:
    s3 = session.client("s3")
    manifest_key = ""
    for path in sorted(JOB_DIR.rglob("*")):
        key = str(path.relative_to(JOB_DIR))
        if key.endswith(".gz"):
            s3.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())
        elif key.endswith("manifest.json"):
            manifest_key = key
    body = manifest if manifest is not None else json.loads((JOB_DIR / manifest_key).read_text())
    s3.put_object(Bucket=bucket, Key=manifest_key, Body=json.dumps(body).encode())
    return manifest_key


def split(app, bucket: str, key: str) -> None:
    with Client(app.app) as client:
        event = client.events.generate_s3_event(bucket, urllib.parse.quote_plus(key))
        client.lambda_.invoke("on_job_uploaded", event)


def send_work(app, session: boto3.session.Session) -> int:
    """Deliver every work item on the queue to on_work_item, as Lambda's poller would."""
    sqs = session.client("sqs")
    url = sqs.get_queue_url(QueueName=app.SETTINGS.work_queue)["QueueUrl"]
    delivered = 0
    with Client(app.app) as client:
        while True:
            messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages")
            if not messages:
                return delivered
            for message in messages:
                event = client.events.generate_sqs_event(
                    message_bodies=[message["Body"]], queue_name=app.SETTINGS.work_queue)
                client.lambda_.invoke("on_work_item", event)
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
                delivered += 1


# -- what IAM sees of a call ---------------------------------------------------------


def _keys(items: list[dict]) -> list[str]:
    return [item[KEY_ATTRIBUTE]["S"] for item in items]


def _dynamodb(operation: str, params: dict) -> Iterator[tuple[str, str, dict]]:
    table = params.get("TableName", "")
    if operation == "TransactWriteItems":
        for entry in params["TransactItems"]:
            (kind, item), = entry.items()
            name = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem",
                    "ConditionCheck": "ConditionCheckItem"}[kind]
            key = item.get("Item") or item["Key"]
            yield f"dynamodb:{name}", item["TableName"], {"dynamodb:LeadingKeys": _keys([key])}
    elif operation in ("BatchGetItem", "BatchWriteItem"):
        for table, request in params["RequestItems"].items():
            if operation == "BatchGetItem":
                keys = _keys(request["Keys"])
            else:
                keys = _keys([next(iter(r.values())).get("Item") or next(iter(r.values()))["Key"]
                              for r in request])
            yield f"dynamodb:{operation}", table, {"dynamodb:LeadingKeys": keys}
    elif "Key" in params or "Item" in params:
        key = params.get("Key") or params["Item"]
        yield f"dynamodb:{operation}", table, {"dynamodb:LeadingKeys": _keys([key])}
    else:  # a table-level call (DescribeTable...): no item key
        yield f"dynamodb:{operation}", table, {}


def _s3(operation: str, params: dict) -> Iterator[tuple[str, str, dict]]:
    obj = f"arn:aws:s3:::{params.get('Bucket')}/{params.get('Key')}"
    if operation == "HeadObject":
        yield "s3:GetObject", obj, {}
    elif operation == "CopyObject":
        source = params["CopySource"]
        if isinstance(source, dict):
            source = f"{source['Bucket']}/{source['Key']}"
        yield "s3:GetObject", f"arn:aws:s3:::{source}", {}
        yield "s3:PutObject", obj, {}
    elif operation.startswith("ListObjects"):
        yield "s3:ListBucket", f"arn:aws:s3:::{params['Bucket']}", {}
    else:
        yield f"s3:{operation}", obj, {}


def requests(call: Call, stack: Stack) -> Iterator[tuple[str, str, dict]]:
    """The (action, resource, condition context) requests IAM authorises for ``call``."""
    service, operation, params = call
    if service == "s3":
        yield from _s3(operation, params)
    elif service == "sqs":
        name = params.get("QueueName") or params["QueueUrl"].rsplit("/", 1)[1]
        action = "SendMessage" if operation == "SendMessageBatch" else operation
        yield f"sqs:{action}", stack.arn("sqs", name), {}
    elif service == "dynamodb":
        for action, table, context in _dynamodb(operation, params):
            yield action, stack.arn("dynamodb", f"table/{table}"), context
    elif service == "email" and operation in ("SendEmail", "SendRawEmail"):
        sender = params.get("FromEmailAddress") or params.get("Source")
        context = {"ses:FromAddress": sender.rpartition("<")[2].rstrip(">")}
        yield f"ses:{operation}", stack.arn("ses", f"identity/{sender.rpartition('@')[2]}"
                                           .rstrip(">")), context
        if params.get("ConfigurationSetName"):
            yield f"ses:{operation}", stack.configuration_set_arn(
                params["ConfigurationSetName"]), context
    elif service == "email":  # SES, v1 and v2 alike
        yield f"ses:{operation}", "*", {}
    else:
        yield f"{service}:{operation}", "*", {}


def refused(calls: list[Call], policy: dict, stack: Stack) -> list[str]:
    """Each request of ``calls`` that ``policy`` does not allow."""
    return [
        f"{action} {resource} {context}"
        for call in calls for action, resource, context in requests(call, stack)
        if evaluate(policy, action, resource, context) != ALLOW
    ]


def stack_of(app) -> Stack:
    """The stage whose names the app under test was given (its work queue's prefix)."""
    stage = app.SETTINGS.work_queue.removeprefix("postbag-").removesuffix("-work")
    stack = Stack(stage, REGION, os.environ["POSTBAG_BUCKET"], ACCOUNT)
    assert stack.work_queue == app.SETTINGS.work_queue
    return stack


def stage_settings(app) -> Any:
    """The settings provisioning renders the roles from: the example job sends with the
    configuration set ``postbag``, which the role allows only as the stage's own set
    (a job naming another set is refused by SES: see the policy tests)."""
    return dataclasses.replace(app.SETTINGS, default_configuration_set="postbag")


def operations(calls: list[Call]) -> set[str]:
    return {f"{service}:{operation}" for service, operation, _ in calls}


# -- the tests ---------------------------------------------------------------------------


def test_splitter_and_fanout_roles_allow_every_call_a_job_makes(app, calls):
    app, session = app
    stack = stack_of(app)
    split(app, stack.bucket, upload(session, stack.bucket))
    split_calls = list(calls)
    calls.clear()
    assert send_work(app, session) >= 1
    send_calls = list(calls)
    splitter = policies.splitter_policy(stack, stage_settings(app))
    fanout = policies.fanout_policy(stack, stage_settings(app))
    # The job went through: parts read, work queued, mail sent, status written.
    assert {"s3:GetObject", "sqs:SendMessageBatch", "s3:PutObject"} <= operations(split_calls)
    assert {"email:SendEmail", "s3:PutObject"} & operations(send_calls) == {
        "email:SendEmail", "s3:PutObject"}
    assert refused(split_calls, splitter, stack) == []
    assert refused(send_calls, fanout, stack) == []
    # The splitter's role could not have sent the mail.
    assert any(r.startswith("ses:SendEmail ") for r in refused(send_calls, splitter, stack))


def test_splitter_role_allows_quarantining_a_bad_manifest(app, calls):
    app, session = app
    stack = stack_of(app)
    manifest = json.loads(next(JOB_DIR.rglob("manifest.json")).read_text())
    manifest["recipients"] += 1  # the parts hold fewer rows
    key = upload(session, stack.bucket, manifest)
    calls.clear()
    split(app, stack.bucket, key)
    assert "s3:CopyObject" in operations(calls) and "s3:DeleteObject" in operations(calls)
    assert refused(calls, policies.splitter_policy(stack, stage_settings(app)), stack) == []
    # Moving a manifest out of the way is the splitter's alone.
    fanout = policies.fanout_policy(stack, stage_settings(app))
    assert any(r.startswith("s3:DeleteObject ") for r in refused(calls, fanout, stack))


def test_roles_allow_what_a_cancelled_job_calls(app, calls):
    app, session = app
    stack = stack_of(app)
    key = upload(session, stack.bucket)
    split(app, stack.bucket, key)
    session.client("s3").put_object(Bucket=stack.bucket, Key=key.replace("manifest.json",
                                                                          "cancel"), Body=b"")
    new_instances(app)  # the fan-out runs in instances of its own, which never saw the job
    calls.clear()
    send_work(app, session)
    assert "email:SendEmail" not in operations(calls)
    assert refused(calls, policies.fanout_policy(stack, stage_settings(app)), stack) == []


def test_the_batch_senders_role_allows_every_call_a_batch_makes(app, calls):
    """The batch sender now shares SES's rate with the fan-out through the ledger's table:
    its role allows that (rate items only), and everything else a batch calls."""
    app, session = app
    stack = stack_of(app)
    batch = Path(__file__).resolve().parents[2] / "fixtures" / "batches" / "plain.json"
    session.client("s3").put_object(Bucket=stack.bucket, Key="queue/plain.json",
                                    Body=batch.read_bytes())
    with Client(app.app) as client:
        event = client.events.generate_s3_event(stack.bucket, "queue/plain.json")
        client.lambda_.invoke("on_batch_uploaded", event)
    made = operations(calls)
    assert "dynamodb:UpdateItem" in made  # the rate lease
    assert {"email:SendEmail", "email:SendRawEmail"} & made
    assert refused(calls, policies.lambda_policy(stack, stage_settings(app)), stack) == []


def test_notify_then_redrive_job_puts_the_failed_recipients_back_on_the_work_queue(
    app, tmp_path, capsys
):
    """A job posted with ``postbag notify`` is split and sent by the handlers; the
    recipient without the template's variable fails (StrictUndefined) and is kept under
    failed/jobs/; ``postbag redrive --job`` queues it again, as redrive 1."""
    from postbag import cli

    app, session = app
    stack = stack_of(app)
    spec = tmp_path / "code.json"
    spec.write_text(json.dumps({
        "meta": {"from": "news@example.org"},
        "template": {"subject": "Your code", "html": "<p>{{ code }}</p>"},
        "recipients": [{"email": "ann@example.net", "vars": {"code": "A1"}},
                       {"email": "bob@example.net"}],
    }))
    region = ["--stage", stack.stage, "--bucket", stack.bucket, "--region", REGION]
    assert cli.main(["notify", str(spec), *region]) == 0
    job_id = capsys.readouterr().out.strip()
    split(app, stack.bucket, f"jobs/{job_id}/manifest.json")
    send_work(app, session)
    capsys.readouterr()  # the handlers' log lines
    s3, sqs = session.client("s3"), session.client("sqs")
    failed = s3.list_objects_v2(Bucket=stack.bucket, Prefix=f"failed/jobs/{job_id}/")
    assert failed["KeyCount"] == 1
    assert cli.main(["status", "--job", job_id, "--json", *region]) == 0
    status = json.loads(capsys.readouterr().out)
    assert (status["state"], status["sent"], status["failed"]) == ("done", 1, 1)
    assert cli.main(["redrive", "--job", job_id, *region]) == 0
    assert capsys.readouterr().out.splitlines() == [f"{job_id} redrive 1: 1 recipient(s)",
                                                    "re-driven: 1"]
    url = sqs.get_queue_url(QueueName=stack.work_queue)["QueueUrl"]
    [message] = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert "bob@example.net" in message["Body"] and "ann@" not in message["Body"]
    assert s3.list_objects_v2(Bucket=stack.bucket, Prefix="failed/jobs/")["KeyCount"] == 0
    # Nothing failed is left: a second run queues nothing.
    assert cli.main(["redrive", "--job", job_id, *region]) == 0
    assert capsys.readouterr().out == "re-driven: 0\n"


def test_redrive_job_without_a_work_queue_says_to_provision(app, capsys):
    from postbag import cli

    app, _ = app
    code = cli.main(["redrive", "--job", "j1", "--stage", "other", "--bucket", "b",
                     "--region", REGION])
    assert code == 1
    assert "no work queue postbag-other-work" in capsys.readouterr().err


# -- the suppression list: the inbox, SES's feedback, the minute's publishing -----------


def _invoke_s3(app, bucket: str, key: str, handler: str) -> None:
    with Client(app.app) as client:
        client.lambda_.invoke(handler, client.events.generate_s3_event(
            bucket, urllib.parse.quote_plus(key)))


def test_suppression_roles_allow_every_call_the_inbox_feedback_and_publisher_make(app, calls):
    app, session = app
    stack = stack_of(app)
    settings = stage_settings(app)
    s3 = session.client("s3")
    change = {"version": 1, "action": "add", "scope": "list:new-posts",
              "address": "zoe@example.net", "reason": "unsubscribe", "source": "site",
              "site": "https://blog.example.org", "at": "2026-11-30T00:40:00Z"}
    s3.put_object(Bucket=stack.bucket, Key="suppressions/inbox/u1.json",
                  Body=json.dumps(change).encode())
    s3.put_object(Bucket=stack.bucket, Key="suppressions/inbox/bad.json", Body=b"{}")
    for key in ("suppressions/inbox/u1.json", "suppressions/inbox/bad.json"):
        _invoke_s3(app, stack.bucket, key, "on_suppression_inbox")
    inbox_calls = list(calls)
    calls.clear()
    bounce = {"eventType": "Bounce", "mail": {"timestamp": "2026-11-30T00:41:00Z",
                                              "messageId": "m-1", "tags": {"postbag-job": ["j"]}},
              "bounce": {"bounceType": "Permanent",
                         "bouncedRecipients": [{"emailAddress": "gone@example.net"}]}}
    with Client(app.app) as client:
        client.lambda_.invoke("on_ses_event", client.events.generate_sns_event(
            message=json.dumps(bounce)))
        events_calls = list(calls)
        calls.clear()
        client.lambda_.invoke("publish_status", client.events.generate_cw_event(
            source="aws.events", detail_type="Scheduled Event", detail={}, resources=[]))
    publish_calls = list(calls)
    # What each did: the change applied and the bad document quarantined; the bounce
    # suppressed; the export and the feedback status written.
    assert {"s3:DeleteObject", "s3:CopyObject", "dynamodb:UpdateItem"} <= operations(inbox_calls)
    assert "dynamodb:UpdateItem" in operations(events_calls)
    written = {params["Key"] for service, op, params in publish_calls if op == "PutObject"}
    assert {"suppressions/export.json", "status/feedback.json"} <= written
    assert refused(inbox_calls, policies.inbox_policy(stack, settings), stack) == []
    assert refused(events_calls, policies.events_policy(stack, settings), stack) == []
    assert refused(publish_calls, policies.publisher_policy(stack, settings), stack) == []
    # None of them could send mail or touch a batch.
    for policy in (policies.inbox_policy(stack, settings),
                   policies.publisher_policy(stack, settings)):
        assert evaluate(policy, "ses:SendEmail", "*", {}) != ALLOW
        assert evaluate(policy, "s3:GetObject", f"{stack.bucket_arn}/queue/b.json", {}) != ALLOW


def test_the_senders_roles_allow_the_suppression_lookup_and_nothing_more(app):
    app, _ = app
    stack = stack_of(app)
    table = stack.arn("dynamodb", f"table/{app.SETTINGS.suppression_table}")
    for policy in (policies.lambda_policy(stack, stage_settings(app)),
                   policies.fanout_policy(stack, stage_settings(app))):
        assert evaluate(policy, "dynamodb:BatchGetItem", table, {}) == ALLOW
        assert evaluate(policy, "dynamodb:UpdateItem", table, {}) != ALLOW
        assert evaluate(policy, "dynamodb:Scan", table, {}) != ALLOW


def test_redrive_request_role_allows_every_call_a_request_makes(app, calls):
    """WordPress's "Send again": a batch's failed mail requeued, a bad request quarantined."""
    app, session = app
    stack = stack_of(app)
    s3 = session.client("s3")
    failed = {"version": 1, "batch_id": "b1", "emails": [{"id": "m1"}]}
    s3.put_object(Bucket=stack.bucket, Key="failed/b1.json", Body=json.dumps(failed).encode())
    request = {"version": 1, "kind": "batch", "id": "b1", "mail_ids": ["m1"],
               "requested_at": "2026-11-30T01:00:00Z"}
    s3.put_object(Bucket=stack.bucket, Key="requests/redrive/r1.json",
                  Body=json.dumps(request).encode())
    s3.put_object(Bucket=stack.bucket, Key="requests/redrive/bad.json", Body=b"{}")
    for key in ("requests/redrive/r1.json", "requests/redrive/bad.json"):
        _invoke_s3(app, stack.bucket, key, "on_redrive_request")
    written = {params["Key"] for _, op, params in calls if op == "PutObject"}
    assert {"queue/b1.redrive-1.json", "status/redrive/r1.json",
            "quarantine/requests/redrive/bad.json.error.json"} <= written
    policy = policies.redrive_request_policy(stack, stage_settings(app))
    assert refused(calls, policy, stack) == []
