"""What the IAM policies (WordPress, the sender, the SES event recorder) allow and
refuse, asked of a small evaluator (tests/support/iam_eval.py), plus the
committed example policy files."""

from __future__ import annotations

import json
from functools import partial

import boto3
import pytest
from chalice.test import Client
from moto import mock_aws
from support.iam_eval import ALLOW, DENY, IMPLICIT_DENY, evaluate
from test_job_roles import new_instances

from chalicelib.config import Settings
from chalicelib.ledger import create_table
from postbag import chalice_config
from postbag.resources import policies, ses_events
from postbag.stack import (
    CONTROL_HANDLERS,
    DRAIN_HANDLER,
    EVENTS_HANDLER,
    HANDLER,
    INBOX_HANDLER,
    JOB_HANDLER,
    PUBLISH_HANDLER,
    REDRIVE_HANDLER,
    WORK_HANDLER,
    Stack,
)

STACK = Stack("prod", "eu-west-1", "site-mail", "111122223333")
SETTINGS = Settings.from_env(
    {
        "POSTBAG_ALLOWED_SENDERS": "example.org,news@example.com",
        "POSTBAG_DEFAULT_CONFIGURATION_SET": "postbag",
        "POSTBAG_LEDGER_TABLE": STACK.ledger_table,
    }
)
KEY = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
OBJ = "arn:aws:s3:::site-mail/"
SES = "arn:aws:ses:eu-west-1:111122223333:"


# A claim's key in the ledger: the namespace and a digest (what IAM calls the
# item's dynamodb:LeadingKeys, which every single-table request carries).
CLAIM = "postbag-sender#4e1f0c"


def ask(policy: dict, action: str, resource: str, sender: str | None = None,
        key: str = CLAIM) -> str:
    context: dict = {"ses:FromAddress": sender} if sender else {}
    if action.startswith("dynamodb:"):
        context["dynamodb:LeadingKeys"] = key
    return evaluate(policy, action, resource, context)


# -- the evaluator itself ---------------------------------------------------------


def test_evaluator_explicit_deny_beats_allow_and_wildcards_stop_at_the_pattern():
    policy = {
        "Statement": [
            {"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::b/*"},
            {"Effect": "Deny", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::b/x?"},
        ]
    }
    assert evaluate(policy, "S3:GetObject", "arn:aws:s3:::b/k") == ALLOW
    assert evaluate(policy, "s3:PutObject", "arn:aws:s3:::b/x1") == DENY
    assert evaluate(policy, "s3:PutObject", "arn:aws:s3:::b/x12") == ALLOW
    assert evaluate(policy, "s3:GetObject", "arn:aws:s3:::b-other/k") == IMPLICIT_DENY
    assert evaluate(policy, "sqs:SendMessage", "arn:aws:s3:::b/k") == IMPLICIT_DENY


def test_evaluator_for_all_values_checks_every_value_and_passes_a_missing_key():
    policy = {"Statement": [{
        "Effect": "Allow", "Action": "dynamodb:UpdateItem", "Resource": "t",
        "Condition": {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["n#rate#*"]}},
    }]}
    rate = {"dynamodb:LeadingKeys": "n#rate#1"}
    assert evaluate(policy, "dynamodb:UpdateItem", "t", rate) == ALLOW
    assert evaluate(policy, "dynamodb:UpdateItem", "t",
                    {"dynamodb:LeadingKeys": ["n#rate#1", "n#abc"]}) == IMPLICIT_DENY
    # As in IAM: a request without the key passes (hence ask() always gives one).
    assert evaluate(policy, "dynamodb:UpdateItem", "t") == ALLOW


# -- WordPress ----------------------------------------------------------------------

WP = policies.wordpress_policy(STACK)
WP_KMS = policies.wordpress_policy(STACK, KEY)


@pytest.mark.parametrize(
    "key", ["queue/b1.json", "queue/attachments/b1/m1/0"], ids=["batch", "attachment"]
)
def test_wordpress_may_upload_batches_and_attachments(key):
    assert ask(WP, "s3:PutObject", OBJ + key) == ALLOW


@pytest.mark.parametrize(
    "action,resource",
    [
        ("s3:GetObject", OBJ + "queue/b1.json"),
        ("s3:DeleteObject", OBJ + "queue/b1.json"),
        ("s3:PutObjectTagging", OBJ + "queue/b1.json"),
        ("s3:PutObjectAcl", OBJ + "queue/b1.json"),
        ("s3:ListBucket", "arn:aws:s3:::site-mail"),
        ("s3:PutObject", OBJ + "receipts/b1.json"),
        ("s3:PutObject", OBJ + "failed/b1.json"),
        ("s3:PutObject", OBJ + "b1.json"),
        ("s3:PutObject", OBJ + "queueX/b1.json"),
        ("s3:PutObject", "arn:aws:s3:::site-mail-other/queue/b1.json"),
        ("s3:PutBucketPolicy", "arn:aws:s3:::site-mail"),
        ("ses:SendEmail", SES + "identity/example.org"),
        ("kms:GenerateDataKey", KEY),
    ],
    ids=[
        "read-batch", "delete-batch", "tag-batch", "acl", "list", "receipts", "failed",
        "bucket-root", "lookalike-prefix", "lookalike-bucket", "bucket-policy", "ses", "kms",
    ],
)
def test_wordpress_may_do_nothing_else(action, resource):
    assert ask(WP, action, resource) != ALLOW


def test_wordpress_with_sse_kms_may_only_make_data_keys():
    assert ask(WP_KMS, "kms:GenerateDataKey", KEY) == ALLOW
    assert ask(WP_KMS, "kms:Decrypt", KEY) != ALLOW
    assert ask(WP_KMS, "s3:GetObject", OBJ + "queue/b1.json") != ALLOW


# -- the sender (Lambda role) ---------------------------------------------------------

LAMBDA = policies.lambda_policy(STACK, SETTINGS)
TABLE = "arn:aws:dynamodb:eu-west-1:111122223333:table/postbag-prod-ledger"
QUEUE = "arn:aws:sqs:eu-west-1:111122223333:postbag-prod-failures"
LOGS = "arn:aws:logs:eu-west-1:111122223333:log-group:/aws/lambda/postbag-prod-on_batch_uploaded"


def _short(resource: str) -> str:
    return resource.rsplit("/", 1)[-1] if "/" in resource else resource.rsplit(":", 1)[-1]


SENDER_MAY = [
    ("s3:GetObject", OBJ + "queue/b1.json"),
    ("s3:GetObject", OBJ + "queue/attachments/b1/m1/0"),
    ("s3:PutObjectTagging", OBJ + "queue/b1.json"),
    ("s3:GetObjectTagging", OBJ + "queue/b1.json"),
    ("s3:DeleteObject", OBJ + "queue/b1.json"),
    ("s3:PutObject", OBJ + "queue/b1.part-2.json"),
    ("s3:PutObject", OBJ + "receipts/b1.json"),
    ("s3:PutObject", OBJ + "failed/b1.json"),
    ("s3:PutObject", OBJ + "quarantine/b1.json.error.json"),
    ("s3:ListBucket", "arn:aws:s3:::site-mail"),
    ("ses:GetSendQuota", "*"),
    # The SES account as it last saw it, for WordPress (chalicelib/account.py).
    ("ses:GetAccount", "*"),
    ("s3:PutObject", OBJ + "status/account.json"),
    ("dynamodb:PutItem", TABLE),
    ("dynamodb:BatchGetItem", TABLE),
    ("dynamodb:BatchWriteItem", TABLE),
    ("sqs:SendMessage", QUEUE),
    ("logs:CreateLogStream", LOGS + ":log-stream:2026/11/22/x"),
    ("logs:PutLogEvents", LOGS + ":log-stream:2026/11/22/x"),
]


@pytest.mark.parametrize(
    "action,resource", SENDER_MAY, ids=[f"{a}-{_short(r)}" for a, r in SENDER_MAY]
)
def test_sender_may_do_its_job(action, resource):
    assert ask(LAMBDA, action, resource) == ALLOW


@pytest.mark.parametrize(
    "action,resource",
    [
        ("s3:PutObject", OBJ + "queue/attachments/b1/m1/0"),
        ("s3:PutObject", OBJ + "queue/attachments/b1/m1/0.json"),
        ("s3:PutObject", OBJ + "queue/notes.txt"),
        ("s3:PutObject", OBJ + "b1.json"),
        ("s3:GetObject", OBJ + "receipts/b1.json"),
        ("s3:PutObject", OBJ + "status/feedback.json"),
        ("s3:GetObject", OBJ + "status/account.json"),
        ("ses:PutAccountDetails", "*"),
        ("s3:DeleteObject", OBJ + "failed/b1.json"),
        ("s3:DeleteObject", OBJ + "receipts/b1.json"),
        ("s3:GetObject", "arn:aws:s3:::someone-else/queue/b1.json"),
        ("s3:PutBucketPolicy", "arn:aws:s3:::site-mail"),
        ("s3:DeleteBucket", "arn:aws:s3:::site-mail"),
        ("dynamodb:Scan", TABLE),
        ("dynamodb:Query", TABLE),
        ("dynamodb:UpdateItem", TABLE),
        ("dynamodb:DeleteTable", TABLE),
        ("dynamodb:PutItem", TABLE.replace("prod", "dev")),
        ("sqs:ReceiveMessage", QUEUE),
        ("sqs:SendMessage", QUEUE.replace("failures", "other")),
        ("iam:PassRole", "*"),
        ("logs:PutLogEvents", LOGS.replace("postbag-prod", "someone") + ":log-stream:x"),
    ],
    ids=[
        "write-attachment", "write-attachment-json", "write-non-batch", "write-root",
        "read-receipts", "write-other-status", "read-account-status", "account-details",
        "delete-failed", "delete-receipts", "other-bucket", "bucket-policy",
        "delete-bucket", "scan-ledger", "query-ledger", "update-ledger", "drop-ledger",
        "other-table", "read-failure-queue", "other-queue", "iam", "other-logs",
    ],
)
def test_sender_may_do_nothing_else(action, resource):
    assert ask(LAMBDA, action, resource) != ALLOW


@pytest.mark.parametrize(
    "identity,sender,expected",
    [
        ("identity/example.org", "anyone@example.org", ALLOW),
        ("identity/news@example.com", "news@example.com", ALLOW),
        # example.com verified as a domain: only the listed address may use it.
        ("identity/example.com", "news@example.com", ALLOW),
        ("identity/example.com", "ceo@example.com", IMPLICIT_DENY),
        ("identity/evil.org", "news@evil.org", IMPLICIT_DENY),
        ("configuration-set/postbag", "anyone@example.org", ALLOW),
        ("configuration-set/other", "anyone@example.org", IMPLICIT_DENY),
    ],
    ids=[
        "listed-domain", "listed-address", "address-via-its-domain", "unlisted-address",
        "unlisted-domain", "configured-set", "other-set",
    ],
)
@pytest.mark.parametrize("action", ["ses:SendEmail", "ses:SendRawEmail"])
def test_sender_sends_only_as_the_configured_identities(action, identity, sender, expected):
    assert ask(LAMBDA, action, SES + identity, sender=sender) == expected


def test_only_the_send_quota_and_the_account_are_asked_of_every_resource():
    wide = [s for s in LAMBDA["Statement"] if "*" in s["Resource"]]
    assert [s["Action"] for s in wide] == [["ses:GetSendQuota", "ses:GetAccount"]]


def test_sender_reads_an_sse_kms_bucket_with_its_key():
    policy = policies.lambda_policy(STACK, SETTINGS, KEY)
    assert ask(policy, "kms:Decrypt", KEY) == ALLOW
    assert ask(policy, "kms:GenerateDataKey", KEY) == ALLOW
    assert ask(policy, "kms:Decrypt", KEY.replace("1234abcd", "ffffffff")) != ALLOW
    assert ask(LAMBDA, "kms:Decrypt", KEY) != ALLOW


# -- the SES event recorder (its own role) ----------------------------------------------

EVENTS = policies.events_policy(STACK, SETTINGS)
EVENTS_LOGS = LOGS.replace("on_batch_uploaded", "on_ses_event")


def test_event_recorder_may_record_send_events_and_report_failure():
    assert ask(EVENTS, "dynamodb:BatchWriteItem", TABLE) == ALLOW
    assert ask(EVENTS, "sqs:SendMessage", QUEUE) == ALLOW
    assert ask(EVENTS, "logs:PutLogEvents", EVENTS_LOGS + ":log-stream:x") == ALLOW


@pytest.mark.parametrize(
    "action,resource",
    [
        ("ses:SendEmail", SES + "identity/example.org"),
        ("ses:SendRawEmail", SES + "configuration-set/postbag"),
        ("s3:GetObject", OBJ + "queue/b1.json"),
        ("s3:PutObject", OBJ + "receipts/b1.json"),
        ("dynamodb:UpdateItem", TABLE),
        ("dynamodb:DeleteItem", TABLE),
        ("dynamodb:BatchGetItem", TABLE),
        ("dynamodb:GetItem", TABLE),
        ("dynamodb:BatchWriteItem", TABLE.replace("prod", "dev")),
        ("sns:Publish", "arn:aws:sns:eu-west-1:111122223333:postbag-prod-ses-events"),
        ("lambda:GetFunctionConcurrency", "*"),
        ("logs:PutLogEvents", LOGS + ":log-stream:x"),
    ],
    ids=[
        "send", "send-raw", "read-batch", "write-receipt", "update-ledger", "delete-ledger",
        "batch-read-ledger", "read-ledger", "other-table", "publish-events", "concurrency",
        "sender-logs",
    ],
)
def test_event_recorder_may_do_nothing_else(action, resource):
    assert ask(EVENTS, action, resource) != ALLOW


def test_event_recorder_policy_allows_every_call_the_handler_makes():
    """app.on_ses_event run under moto: each AWS call it makes, asked of its role policy
    (so a handler that starts calling something else fails here, not in production)."""
    import app

    calls: list[tuple[str, dict]] = []

    def record(model, params, **_):
        calls.append((f"{model.service_model.endpoint_prefix}:{model.name}", params))

    send_event = {"eventType": "Send", "send": {}, "mail": {
        "messageId": "0100018c-ses-m1", "tags": {"postbag-key": ["d1g35t"]}}}
    with mock_aws():
        create_table(boto3.client("dynamodb"), app.SETTINGS.ledger_table)
        create_table(boto3.client("dynamodb"), app.SETTINGS.suppression_table)
        new_instances(app)  # its clients must be made inside the mock, and report their calls
        # The call's parameters as the handler gave them (before-call sees them serialised).
        boto3.DEFAULT_SESSION.events.register("provide-client-params", record)
        try:
            with Client(app.app) as client:
                event = client.events.generate_sns_event(message=json.dumps(send_event))
                client.lambda_.invoke("on_ses_event", event)
        finally:
            boto3.DEFAULT_SESSION.events.unregister("provide-client-params", record)
            new_instances(app)
    stack = Stack("test", "us-east-1", "b", "123456789012")
    policy = policies.events_policy(stack, app.SETTINGS)
    table = stack.arn("dynamodb", f"table/{app.SETTINGS.ledger_table}")
    assert calls, "the handler recorded nothing"
    # The evidence in one batch write; the day's count, then the marks read and the mark
    # for the minute's run written (none there yet) as calls on their own items
    # (feedback.py, publisher.py), each asked with the key IAM sees.
    assert [a for a, _ in calls] == ["dynamodb:BatchWriteItem", "dynamodb:UpdateItem",
                                     "dynamodb:GetItem", "dynamodb:UpdateItem"]
    for action, params in calls:
        if action == "dynamodb:BatchWriteItem":
            assert set(params["RequestItems"]) == {app.SETTINGS.ledger_table}, params
            assert ask(policy, action, table) == ALLOW, action
        else:
            assert params["TableName"] == app.SETTINGS.ledger_table
            key = params["Key"]["id"]["S"]
            assert key.startswith(f"{app.SETTINGS.idempotency_namespace}#feedback#"), key
            assert ask(policy, action, table, key=key) == ALLOW, key
    # Those updates are allowed on feedback items only, never on a claim.
    assert ask(policy, "dynamodb:UpdateItem", table) != ALLOW


# -- notify jobs: WordPress, the splitter, the fan-out sender ----------------------------

JOB = "jobs/7d3f0c2a-9b1e-4f5a-8c6d-2e4b1a0f9c01/"
WORK_QUEUE = "arn:aws:sqs:eu-west-1:111122223333:postbag-prod-work"
WORK_DLQ = WORK_QUEUE + "-dlq"
S3_VIA = {"kms:ViaService": "s3.eu-west-1.amazonaws.com"}


@pytest.mark.parametrize(
    "action,key",
    [
        ("s3:PutObject", JOB + "part-00001.ndjson.gz"),
        ("s3:PutObject", JOB + "part-12345.ndjson.gz"),
        ("s3:PutObject", JOB + "manifest.json"),
        ("s3:PutObject", JOB + "cancel"),
        ("s3:PutObject", JOB + "schedule.json"),
        ("s3:GetObject", JOB + "status.json"),
        ("s3:PutObject", "control/batches/6f1c2f4e-2b0a-4d7e-9b1e-0c9d8a7b6c5d/cancel"),
        ("s3:PutObject", "control/batches/6f1c2f4e-2b0a-4d7e-9b1e-0c9d8a7b6c5d/schedule.json"),
    ],
    ids=["part", "part-many", "manifest", "cancel", "reschedule", "read-status",
         "cancel-batch", "reschedule-batch"],
)
def test_wordpress_may_post_a_job_cancel_it_and_read_its_status(action, key):
    assert ask(WP, action, OBJ + key) == ALLOW


@pytest.mark.parametrize(
    "action,resource",
    [
        ("s3:GetObject", OBJ + JOB + "schedule.json"),
        ("s3:DeleteObject", OBJ + JOB + "schedule.json"),
        ("s3:GetObject", OBJ + "control/batches/b1/cancel"),
        ("s3:DeleteObject", OBJ + "control/batches/b1/schedule.json"),
        ("s3:PutObject", OBJ + "control/batches/b1/notes.txt"),
        ("s3:PutObject", OBJ + "control/other/b1/cancel"),
        ("s3:PutObject", OBJ + "control/batches/cancel"),
    ],
    ids=["read-reschedule", "delete-reschedule", "read-batch-cancel", "delete-batch-reschedule",
         "other-control-file", "other-control-kind", "cancel-outside-a-batch"],
)
def test_wordpress_may_do_nothing_else_with_held_mail(action, resource):
    assert ask(WP, action, resource) != ALLOW


@pytest.mark.parametrize(
    "action,resource",
    [
        ("s3:GetObject", OBJ + JOB + "manifest.json"),
        ("s3:GetObject", OBJ + JOB + "part-00001.ndjson.gz"),
        ("s3:GetObject", OBJ + JOB + "cancel"),
        ("s3:PutObject", OBJ + JOB + "status.json"),
        ("s3:PutObject", OBJ + JOB + "part-00001.ndjson"),
        ("s3:PutObject", OBJ + JOB + "notes.txt"),
        ("s3:PutObject", OBJ + "jobs/manifest.json"),
        ("s3:DeleteObject", OBJ + JOB + "manifest.json"),
        ("s3:DeleteObject", OBJ + JOB + "cancel"),
        ("s3:GetObject", OBJ + "failed/" + JOB + "0.json"),
        ("s3:PutObject", OBJ + "failed/" + JOB + "0.json"),
        ("s3:GetObject", "arn:aws:s3:::site-mail-other/" + JOB + "status.json"),
        ("sqs:SendMessage", WORK_QUEUE),
    ],
    ids=[
        "read-manifest", "read-part", "read-cancel", "forge-status", "uncompressed-part",
        "other-file", "manifest-outside-a-job", "delete-manifest", "delete-cancel",
        "read-failed", "write-failed", "other-bucket", "queue-work",
    ],
)
def test_wordpress_may_do_nothing_else_with_jobs(action, resource):
    assert ask(WP, action, resource) != ALLOW


def test_wordpress_decrypts_job_status_through_s3_only():
    assert evaluate(WP_KMS, "kms:Decrypt", KEY, S3_VIA) == ALLOW
    assert evaluate(WP_KMS, "kms:Decrypt", KEY, {"kms:ViaService": "sqs.eu-west-1.amazonaws.com"}
                    ) != ALLOW
    assert ask(WP_KMS, "kms:Decrypt", KEY) != ALLOW  # asking KMS itself
    assert ask(WP, "kms:Decrypt", KEY) != ALLOW


@pytest.mark.parametrize(
    "action,key",
    [
        ("s3:GetObject", "receipts/b1.json"),
        ("s3:GetObject", "receipts/b1.redrive-1.part-2.json"),
        ("s3:GetObject", "status/account.json"),
        ("s3:GetObject", "status/feedback.json"),
        ("s3:PutObject", "requests/redrive/6f1c2f4e-2b0a-4d7e-9b1e-0c9d8a7b6c5d.json"),
    ],
    ids=["receipt", "continuation-receipt", "account", "feedback", "request-redrive"],
)
def test_wordpress_may_read_outcomes_and_request_a_redrive(action, key):
    assert ask(WP, action, OBJ + key) == ALLOW
    assert ask(WP_KMS, action, OBJ + key) == ALLOW


@pytest.mark.parametrize(
    "action,resource",
    [
        ("s3:PutObject", OBJ + "status/account.json"),
        ("s3:DeleteObject", OBJ + "receipts/b1.json"),
        ("s3:GetObject", OBJ + "receiptsX/b1.json"),
        ("s3:GetObject", OBJ + "failed/b1.json"),
        ("s3:GetObject", OBJ + "quarantine/b1.json"),
        ("s3:GetObject", OBJ + "quarantine/b1.json.error.json"),
        ("s3:GetObject", OBJ + "requests/redrive/r1.json"),
        ("s3:DeleteObject", OBJ + "requests/redrive/r1.json"),
        ("s3:PutObject", OBJ + "requests/other/r1.json"),
        ("s3:PutObject", OBJ + "requests/redrive"),
        ("s3:GetObject", "arn:aws:s3:::site-mail-other/receipts/b1.json"),
    ],
    ids=[
        "forge-account", "delete-receipt", "lookalike-receipts", "read-failed", "read-quarantine",
        "read-quarantine-error", "read-redrive-request", "delete-redrive-request",
        "other-request", "request-prefix-itself", "other-bucket",
    ],
)
def test_wordpress_may_do_nothing_else_with_outcomes(action, resource):
    assert ask(WP, action, resource) != ALLOW


SPLITTER = policies.splitter_policy(STACK, SETTINGS)
FANOUT = policies.fanout_policy(STACK, SETTINGS)
SPLITTER_LOGS = LOGS.replace("on_batch_uploaded", "on_job_uploaded")
FANOUT_LOGS = LOGS.replace("on_batch_uploaded", "on_work_item")

SPLITTER_MAY = [
    ("s3:GetObject", OBJ + JOB + "manifest.json"),
    ("s3:GetObject", OBJ + JOB + "part-00001.ndjson.gz"),
    ("s3:GetObject", OBJ + JOB + "cancel"),
    ("s3:ListBucket", "arn:aws:s3:::site-mail"),
    ("s3:PutObject", OBJ + JOB + "status.json"),
    ("s3:PutObject", OBJ + "quarantine/" + JOB + "manifest.json"),
    ("s3:PutObject", OBJ + "quarantine/" + JOB + "manifest.json.error.json"),
    ("s3:DeleteObject", OBJ + JOB + "manifest.json"),
    ("sqs:SendMessage", WORK_QUEUE),
    ("sqs:GetQueueUrl", WORK_QUEUE),
    ("sqs:SendMessage", QUEUE),
    ("logs:PutLogEvents", SPLITTER_LOGS + ":log-stream:x"),
]


@pytest.mark.parametrize(
    "action,resource", SPLITTER_MAY, ids=[f"{a}-{_short(r)}" for a, r in SPLITTER_MAY]
)
def test_splitter_may_do_its_job(action, resource):
    assert ask(SPLITTER, action, resource) == ALLOW


@pytest.mark.parametrize(
    "action,resource",
    [
        ("s3:PutObject", OBJ + JOB + "manifest.json"),
        ("s3:PutObject", OBJ + JOB + "part-00001.ndjson.gz"),
        ("s3:PutObject", OBJ + JOB + "cancel"),
        ("s3:DeleteObject", OBJ + JOB + "part-00001.ndjson.gz"),
        ("s3:DeleteObject", OBJ + JOB + "cancel"),
        ("s3:PutObject", OBJ + "quarantine/b1.json"),
        ("s3:GetObject", OBJ + "queue/b1.json"),
        ("s3:PutObject", OBJ + "failed/" + JOB + "0.json"),
        ("sqs:ReceiveMessage", WORK_QUEUE),
        ("sqs:DeleteMessage", WORK_QUEUE),
        ("sqs:SendMessage", WORK_DLQ),
        ("sqs:PurgeQueue", WORK_QUEUE),
        ("ses:SendEmail", SES + "identity/example.org"),
        ("ses:SendRawEmail", SES + "identity/example.org"),
        ("dynamodb:Scan", TABLE),
        ("dynamodb:DeleteItem", TABLE),
        ("dynamodb:PutItem", TABLE),
        ("dynamodb:UpdateItem", TABLE),
        ("dynamodb:PutItem", TABLE.replace("prod", "dev")),
        ("logs:PutLogEvents", FANOUT_LOGS + ":log-stream:x"),
    ],
    ids=[
        "write-manifest", "write-part", "write-cancel", "delete-part", "delete-cancel",
        "quarantine-batch", "read-batch", "write-failed", "receive-work", "delete-work",
        "send-dead-letter", "purge", "send", "send-raw", "scan-ledger", "delete-ledger",
        "claim", "update-claim", "other-table", "sender-logs",
    ],
)
def test_splitter_may_do_nothing_else(action, resource):
    assert ask(SPLITTER, action, resource) != ALLOW


FANOUT_MAY = [
    ("s3:GetObject", OBJ + JOB + "manifest.json"),
    ("s3:GetObject", OBJ + JOB + "part-00001.ndjson.gz"),
    ("s3:GetObject", OBJ + JOB + "cancel"),
    ("s3:GetObject", OBJ + "queue/attachments/j1/0"),
    ("s3:ListBucket", "arn:aws:s3:::site-mail"),
    ("s3:PutObject", OBJ + JOB + "status.json"),
    ("s3:PutObject", OBJ + "failed/" + JOB + "0.json"),
    ("sqs:ReceiveMessage", WORK_QUEUE),
    ("sqs:DeleteMessage", WORK_QUEUE),
    ("sqs:GetQueueAttributes", WORK_QUEUE),
    ("sqs:ChangeMessageVisibility", WORK_QUEUE),
    ("sqs:SendMessage", WORK_QUEUE),
    ("sqs:GetQueueUrl", WORK_QUEUE),
    ("ses:GetSendQuota", "*"),
    ("ses:GetAccount", "*"),
    ("s3:PutObject", OBJ + "status/account.json"),
    ("dynamodb:PutItem", TABLE),
    ("dynamodb:BatchGetItem", TABLE),
    ("dynamodb:BatchWriteItem", TABLE),
    ("logs:PutLogEvents", FANOUT_LOGS + ":log-stream:x"),
]


@pytest.mark.parametrize(
    "action,resource", FANOUT_MAY, ids=[f"{a}-{_short(r)}" for a, r in FANOUT_MAY]
)
def test_fanout_sender_may_do_its_job(action, resource):
    assert ask(FANOUT, action, resource) == ALLOW


@pytest.mark.parametrize(
    "action,resource",
    [
        ("s3:PutObject", OBJ + JOB + "manifest.json"),
        ("s3:PutObject", OBJ + JOB + "part-00001.ndjson.gz"),
        ("s3:PutObject", OBJ + JOB + "cancel"),
        ("s3:DeleteObject", OBJ + JOB + "manifest.json"),
        ("s3:DeleteObject", OBJ + JOB + "cancel"),
        ("s3:PutObject", OBJ + "queue/attachments/j1/0"),
        ("s3:PutObject", OBJ + "failed/b1.json"),
        ("s3:PutObject", OBJ + "quarantine/" + JOB + "manifest.json"),
        ("s3:GetObject", OBJ + "queue/b1.json"),
        ("s3:GetObject", OBJ + "failed/" + JOB + "0.json"),
        ("s3:PutObject", OBJ + "status/feedback.json"),
        ("sqs:ReceiveMessage", WORK_DLQ),
        ("sqs:SendMessage", WORK_DLQ),
        ("sqs:SendMessage", QUEUE),
        ("sqs:PurgeQueue", WORK_QUEUE),
        ("sqs:SetQueueAttributes", WORK_QUEUE),
        ("sqs:ReceiveMessage", WORK_QUEUE.replace("prod", "dev")),
        ("dynamodb:Scan", TABLE),
        ("dynamodb:DeleteItem", TABLE),
        ("dynamodb:UpdateItem", TABLE),
        ("dynamodb:UpdateItem", TABLE.replace("prod", "dev")),
        ("lambda:GetFunctionConcurrency", "*"),
        ("logs:PutLogEvents", SPLITTER_LOGS + ":log-stream:x"),
    ],
    ids=[
        "write-manifest", "write-part", "write-cancel", "delete-manifest", "delete-cancel",
        "write-attachment", "write-failed-batch", "quarantine", "read-batch",
        "read-failed", "write-other-status", "receive-dead-letters", "send-dead-letter",
        "failure-queue", "purge",
        "set-attributes", "other-stage-queue", "scan-ledger", "delete-ledger", "update-claim",
        "other-table",
        "concurrency", "splitter-logs",
    ],
)
def test_fanout_sender_may_do_nothing_else(action, resource):
    assert ask(FANOUT, action, resource) != ALLOW


def _counter(kind: str) -> str:
    return {"claim": CLAIM, "evidence": "postbag-sender#ses#4e1f0c"}.get(
        kind, f"postbag-sender#{kind}#j1:0:p1-0")


COUNTERS = [
    # The batch sender: the shared send rate only.
    ("batch", "dynamodb:UpdateItem", "rate", ALLOW),
    ("batch", "dynamodb:UpdateItem", "claim", IMPLICIT_DENY),
    ("batch", "dynamodb:UpdateItem", "job", IMPLICIT_DENY),
    ("batch", "dynamodb:GetItem", "rate", IMPLICIT_DENY),
    # The splitter: its jobs' progress items only.
    ("splitter", "dynamodb:PutItem", "job", ALLOW),
    ("splitter", "dynamodb:GetItem", "job", ALLOW),
    ("splitter", "dynamodb:UpdateItem", "job", ALLOW),
    ("splitter", "dynamodb:PutItem", "claim", IMPLICIT_DENY),
    ("splitter", "dynamodb:UpdateItem", "rate", IMPLICIT_DENY),
    ("splitter", "dynamodb:UpdateItem", "tally", IMPLICIT_DENY),
    ("splitter", "dynamodb:DeleteItem", "job", IMPLICIT_DENY),
    # The fan-out sender: claims as the batch sender does, and the three counters.
    ("fanout", "dynamodb:PutItem", "claim", ALLOW),
    ("fanout", "dynamodb:UpdateItem", "rate", ALLOW),
    ("fanout", "dynamodb:UpdateItem", "job", ALLOW),
    ("fanout", "dynamodb:UpdateItem", "tally", ALLOW),
    ("fanout", "dynamodb:GetItem", "job", ALLOW),
    ("fanout", "dynamodb:GetItem", "tally", ALLOW),
    ("fanout", "dynamodb:UpdateItem", "claim", IMPLICIT_DENY),
    ("fanout", "dynamodb:UpdateItem", "evidence", IMPLICIT_DENY),
    ("fanout", "dynamodb:GetItem", "claim", IMPLICIT_DENY),
    ("fanout", "dynamodb:DeleteItem", "tally", IMPLICIT_DENY),
]


@pytest.mark.parametrize(
    "who,action,kind,expected", COUNTERS,
    ids=[f"{w}-{a.split(':')[1]}-{k}" for w, a, k, _ in COUNTERS],
)
def test_counters_in_the_ledger_table_are_each_updated_by_their_functions(
    who, action, kind, expected
):
    policy = {"batch": LAMBDA, "splitter": SPLITTER, "fanout": FANOUT}[who]
    assert ask(policy, action, TABLE, key=_counter(kind)) == expected
    # Another stage's namespace is not this one's, even for the same kind of item.
    other = _counter(kind).replace("postbag-sender", "postbag-other")
    assert ask(policy, action, TABLE, key=other) != ALLOW or kind == "claim"


@pytest.mark.parametrize(
    "identity,sender,expected",
    [
        ("identity/example.org", "anyone@example.org", ALLOW),
        ("identity/example.com", "news@example.com", ALLOW),
        ("identity/example.com", "ceo@example.com", IMPLICIT_DENY),
        ("identity/evil.org", "news@evil.org", IMPLICIT_DENY),
        ("configuration-set/postbag", "anyone@example.org", ALLOW),
        ("configuration-set/other", "anyone@example.org", IMPLICIT_DENY),
    ],
    ids=["listed-domain", "address-via-its-domain", "unlisted-address", "unlisted-domain",
         "configured-set", "other-set"],
)
@pytest.mark.parametrize("action", ["ses:SendEmail", "ses:SendRawEmail"])
def test_fanout_sender_sends_only_as_the_configured_identities(action, identity, sender, expected):
    """SES v2 SendEmail is authorised as ses:SendEmail on the same identity and set ARNs."""
    assert ask(FANOUT, action, SES + identity, sender=sender) == expected


@pytest.mark.parametrize("render", [policies.splitter_policy, policies.fanout_policy],
                         ids=["splitter", "fanout"])
def test_job_functions_use_the_stage_key_only(render):
    policy = render(STACK, SETTINGS, KEY)
    assert ask(policy, "kms:Decrypt", KEY) == ALLOW
    assert ask(policy, "kms:GenerateDataKey", KEY) == ALLOW
    assert ask(policy, "kms:Decrypt", KEY.replace("1234abcd", "ffffffff")) != ALLOW
    assert ask(render(STACK, SETTINGS), "kms:Decrypt", KEY) != ALLOW


def test_only_the_send_quota_and_the_account_are_asked_of_every_resource_by_job_functions():
    # The splitter reads the quota only to plan a send window (app.capacity).
    for policy, actions in ((SPLITTER, [["ses:GetSendQuota"]]),
                            (FANOUT, [["ses:GetSendQuota", "ses:GetAccount"]])):
        wide = [s for s in policy["Statement"] if "*" in s["Resource"]]
        assert [s["Action"] for s in wide] == actions


# -- the events topic (a resource policy: the principal is checked in test_deploy) ---------

TOPIC = "arn:aws:sns:eu-west-1:111122223333:postbag-prod-ses-events"


@pytest.mark.parametrize(
    "source_account,source_set,expected",
    [
        ("111122223333", "postbag-prod", ALLOW),
        ("111122223333", "postbag-dev", IMPLICIT_DENY),
        ("444455556666", "postbag-prod", IMPLICIT_DENY),
    ],
    ids=["this-set", "another-set", "another-account"],
)
def test_ses_publishes_to_the_events_topic_only_for_the_stage_set(
    source_account, source_set, expected
):
    policy = ses_events.topic_policy(STACK, "postbag-prod")
    context = {
        "AWS:SourceAccount": source_account,
        "AWS:SourceArn": f"arn:aws:ses:eu-west-1:{source_account}:configuration-set/{source_set}",
    }
    assert evaluate(policy, "sns:Publish", TOPIC, context) == expected
    assert evaluate(policy, "sns:Subscribe", TOPIC, context) != ALLOW


def test_a_policy_without_sender_identities_is_refused():
    with pytest.raises(ValueError, match="--sender-identity"):
        policies.lambda_policy(STACK, Settings())


def _control_policy(stack: Stack, settings: Settings, handler: str) -> dict:
    return policies.control_policy(stack, settings, handler)


@pytest.mark.parametrize("handler", [HANDLER, EVENTS_HANDLER, JOB_HANDLER, WORK_HANDLER,
                                     INBOX_HANDLER, PUBLISH_HANDLER, DRAIN_HANDLER,
                                     *CONTROL_HANDLERS, REDRIVE_HANDLER])
@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_committed_example_policies_are_what_provisioning_renders(stage, handler):
    """The example policies in chalice_app/examples are rendered, never hand-edited."""
    config = chalice_config.load(chalice_config.CHALICE_DIR)
    env = chalice_config.stage_env(config, stage)
    stack = Stack(stage, "us-east-1", env["POSTBAG_BUCKET"], "123456789012")
    settings = chalice_config.stage_settings(config, stage)
    render = {
        HANDLER: policies.lambda_policy,
        EVENTS_HANDLER: policies.events_policy,
        JOB_HANDLER: policies.splitter_policy,
        WORK_HANDLER: policies.fanout_policy,
        INBOX_HANDLER: policies.inbox_policy,
        PUBLISH_HANDLER: policies.publisher_policy,
        DRAIN_HANDLER: policies.drainer_policy,
        **{name: partial(_control_policy, handler=name) for name in CONTROL_HANDLERS},
        REDRIVE_HANDLER: policies.redrive_request_policy,
    }[handler]
    path = chalice_config.example_policy_path(chalice_config.CHALICE_DIR, stage, handler)
    stage_cfg = config["stages"][stage]
    # How Chalice finds a function's policy file: its own entry first, then the stage's.
    named = stage_cfg.get("lambda_functions", {}).get(handler, {}).get("iam_policy_file")
    assert (named or stage_cfg["iam_policy_file"]) == path.name
    assert path.read_text() == json.dumps(render(stack, settings), indent=2) + "\n"


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_committed_stages_are_deployable(stage):
    """Chalice wants strings in the environment, the concurrency is reserved
    (the sender shares SES's rate by it), the role policy is hand-kept."""
    config = chalice_config.load(chalice_config.CHALICE_DIR)
    assert config["app_name"] == "postbag" and config["autogen_policy"] is False
    env = chalice_config.stage_env(config, stage)
    assert all(isinstance(v, str) for v in env.values())
    reserved = config["stages"][stage].get("reserved_concurrency", config["reserved_concurrency"])
    assert reserved >= 1 and "POSTBAG_RESERVED_CONCURRENCY" not in env
    stack = Stack(stage, "us-east-1", "b")
    assert env["POSTBAG_LEDGER_TABLE"] == stack.ledger_table
    # Every mail goes through the stage's set, whose Send events reach on_ses_event.
    assert env["POSTBAG_DEFAULT_CONFIGURATION_SET"] == stack.configuration_set
    assert env["POSTBAG_SES_EVENTS_TOPIC"] == stack.ses_events_topic


@pytest.mark.parametrize(
    "action,key",
    [
        ("s3:PutObject", "suppressions/inbox/6f1c2f4e-2b0a-4d7e-9b1e-0c9d8a7b6c5d.json"),
        ("s3:GetObject", "suppressions/export.json"),
    ],
    ids=["unsubscribe-or-manual-change", "read-the-export"],
)
def test_wordpress_may_drop_suppression_changes_and_read_the_export(action, key):
    assert ask(WP, action, OBJ + key) == ALLOW
    assert ask(WP_KMS, action, OBJ + key) == ALLOW


@pytest.mark.parametrize(
    "action,resource",
    [
        ("s3:GetObject", OBJ + "suppressions/inbox/u1.json"),
        ("s3:DeleteObject", OBJ + "suppressions/inbox/u1.json"),
        ("s3:PutObject", OBJ + "suppressions/export.json"),
        ("s3:PutObject", OBJ + "suppressions/other/u1.json"),
        ("s3:GetObject", OBJ + "suppressions/export.json.bak"),
        ("s3:PutObject", "arn:aws:s3:::site-mail-other/suppressions/inbox/u1.json"),
    ],
    ids=["read-an-inbox-change", "delete-an-inbox-change", "forge-the-export", "other-prefix",
         "lookalike-export", "other-bucket"],
)
def test_wordpress_may_do_nothing_else_with_suppressions(action, resource):
    assert ask(WP, action, resource) != ALLOW


# -- WordPress's re-drive requests (on_redrive_request) ------------------------------------

REDRIVE = policies.redrive_request_policy(STACK, SETTINGS)
REQUEST = OBJ + "requests/redrive/6f1c2f4e-2b0a-4d7e-9b1e-0c9d8a7b6c5d.json"
REDRIVER_MAY = [
    ("s3:GetObject", REQUEST),
    ("s3:DeleteObject", REQUEST),
    ("s3:ListBucket", "arn:aws:s3:::site-mail"),
    ("s3:GetObject", OBJ + "failed/b1.json"),
    ("s3:DeleteObject", OBJ + "failed/b1.json"),
    ("s3:GetObject", OBJ + "failed/jobs/j1/redrive-0/0.json"),
    ("s3:DeleteObject", OBJ + "failed/jobs/j1/redrive-0/0.json"),
    ("s3:PutObject", OBJ + "queue/b1.redrive-1.json"),
    ("s3:PutObject", OBJ + "status/redrive/6f1c2f4e-2b0a-4d7e-9b1e-0c9d8a7b6c5d.json"),
    ("s3:PutObject", OBJ + "quarantine/requests/redrive/r1.json.error.json"),
    ("sqs:SendMessage", WORK_QUEUE),
    ("sqs:GetQueueUrl", WORK_QUEUE),
    ("sqs:SendMessage", QUEUE),  # its failed invocations, as every async function's
]


@pytest.mark.parametrize("action,resource", REDRIVER_MAY,
                         ids=[f"{a}-{_short(r)}" for a, r in REDRIVER_MAY])
def test_redrive_requests_may_requeue_failed_mail_and_report(action, resource):
    assert ask(REDRIVE, action, resource) == ALLOW


@pytest.mark.parametrize(
    "action,resource",
    [
        ("s3:PutObject", OBJ + "queue/attachments/b1/m1/0"),
        ("s3:PutObject", OBJ + "queue/attachments/b1/m1/0.json"),
        ("s3:PutObject", OBJ + "receipts/b1.json"),
        ("s3:PutObject", OBJ + "status/account.json"),
        ("s3:PutObject", OBJ + "jobs/j1/manifest.json"),
        ("s3:GetObject", OBJ + "queue/b1.json"),
        ("s3:GetObject", OBJ + "receipts/b1.json"),
        ("s3:DeleteObject", OBJ + "queue/b1.json"),
        ("s3:PutObject", OBJ + "quarantine/b1.json"),
        ("ses:SendEmail", "*"),
        ("ses:SendRawEmail", "*"),
        ("sqs:ReceiveMessage", WORK_QUEUE),
        ("sqs:SendMessage", WORK_QUEUE.replace("prod", "dev")),
        ("dynamodb:PutItem", TABLE),
    ],
    ids=["write-attachment", "write-attachment-json", "write-receipt", "write-account",
         "write-manifest", "read-batch", "read-receipt", "delete-batch", "quarantine-batch",
         "send", "send-raw", "take-work", "other-stage-queue", "ledger"],
)
def test_redrive_requests_may_do_nothing_else(action, resource):
    assert ask(REDRIVE, action, resource) != ALLOW
