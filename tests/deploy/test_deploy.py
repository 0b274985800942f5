"""The whole deploy path against moto's server on 127.0.0.1: provision,
``chalice deploy``, wire, then every resource and setting checked; a second
run changes nothing; teardown removes it all.

moto's server is wrapped by ``tests/support/moto_server.py`` to accept S3's
``Prefix``/``Suffix`` filter-rule names, and by ``moto_ses.py`` here to keep
SES event destinations per configuration set (moto limitations, worked
around in the harness only).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import subprocess
import urllib.request
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto_ses import DeployAws
from support.deploy import BIN, ROOT, Shell, copy_chalice_app, shell_for

from chalicelib.outcome import object_name
from chalicelib.ratelimit import reserved_concurrency

pytestmark = pytest.mark.server

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's


# The tests' own credentials for the stand-in (its administrator, not a deployed principal).
TESTING = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def as_principal(aws: DeployAws, service: str, credentials: dict[str, str]) -> Any:
    return boto3.client(service, region_name=REGION, endpoint_url=aws.endpoint, **credentials)


@dataclass
class Deployed:
    aws: DeployAws
    shell: Shell
    app_dir: Path
    stage: str
    bucket: str
    provision_args: list[str]
    first_run: Any  # CompletedProcess of the first provision

    def client(self, service: str) -> Any:
        return as_principal(self.aws, service, TESTING)

    @property
    def function(self) -> str:
        return f"postbag-{self.stage}-on_batch_uploaded"

    @property
    def events_function(self) -> str:
        return f"postbag-{self.stage}-on_ses_event"

    @property
    def configuration_set(self) -> str:
        """As provisioned: named by --configuration-set, else postbag-<stage>."""
        config = json.loads((self.app_dir / ".chalice" / "config.json").read_text())
        env = config["stages"][self.stage]["environment_variables"]
        return env["POSTBAG_DEFAULT_CONFIGURATION_SET"]

    @property
    def events_topic(self) -> str:
        return f"arn:aws:sns:{REGION}:{ACCOUNT}:postbag-{self.stage}-ses-events"

    def postbag(self, command: str, *argv: str, check: bool = True):
        # The stage's defaults first, so that ``argv`` may override them.
        return self.shell.run(
            "postbag", command, "--stage", self.stage, "--chalice-dir", str(self.app_dir),
            *argv, check=check,
        )

    def chalice(self, *argv: str, check: bool = True):
        return self.shell.run("chalice", *argv, "--stage", self.stage, cwd=self.app_dir,
                              check=check)


def deploy(aws: DeployAws, tmp: Path, cache: Path, stage: str, bucket: str) -> Deployed:
    shell = shell_for(aws.client_env())
    app_dir = copy_chalice_app(tmp, cache)
    args = [
        "--bucket", bucket, "--region", REGION,
        "--sender-identity", "example.org", "--sender-identity", "news@example.com",
        # Named by the option (each stage its own: a set publishes to one stage's topic).
        "--configuration-set", f"site-{stage}",
        "--reserved-concurrency", "3",
        "--max-concurrency", "3",
        "--processed-days", "5", "--failed-days", "40", "--receipts-days", "60",
        "--alarm-email", "ops@example.org",
        "--create-wp-user",
    ]
    d = Deployed(aws, shell, app_dir, stage, bucket, args, None)
    d.first_run = d.postbag("provision", *args)
    d.chalice("deploy")
    d.postbag("wire")
    return d


# The SES identities the tests' stages send from (provision refuses one SES does not know;
# moto reports every identity it knows as verified).
VERIFIED_DOMAINS = ("example.org", "example.com")


@pytest.fixture(scope="module")
def aws():
    with DeployAws() as server:
        ses = as_principal(server, "ses", TESTING)
        for domain in VERIFIED_DOMAINS:
            ses.verify_domain_identity(Domain=domain)
        yield server


@pytest.fixture(scope="module")
def package_cache(request) -> Path:
    return request.config.cache.mkdir("chalice-deployments")


@pytest.fixture(scope="module")
def deployed(aws, tmp_path_factory, package_cache) -> Deployed:
    return deploy(aws, tmp_path_factory.mktemp("main"), package_cache, "ci", "postbag-ci-mail")


# -- the sender, as Chalice deployed it --------------------------------------


def test_function_runs_with_the_stage_settings(deployed):
    config = deployed.client("lambda").get_function_configuration(FunctionName=deployed.function)
    assert (config["Timeout"], config["MemorySize"]) == (300, 512)
    env = config["Environment"]["Variables"]
    assert env["POSTBAG_BUCKET"] == deployed.bucket
    assert env["POSTBAG_LEDGER_TABLE"] == "postbag-ci-ledger"
    assert env["POSTBAG_ALLOWED_SENDERS"] == "example.org,news@example.com"
    assert env["POSTBAG_DEFAULT_CONFIGURATION_SET"] == "site-ci"
    assert env["POSTBAG_SES_EVENTS_TOPIC"] == "postbag-ci-ses-events"
    tags = deployed.client("lambda").list_tags(Resource=config["FunctionArn"])["Tags"]
    assert tags["postbag-stage"] == "ci"


def test_uploaded_package_holds_the_app_and_its_requirements(deployed):
    config = deployed.client("lambda").get_function_configuration(FunctionName=deployed.function)
    packages = {
        base64.b64encode(hashlib.sha256(path.read_bytes()).digest()).decode(): path
        for path in (deployed.app_dir / ".chalice" / "deployments").glob("*.zip")
    }
    names = set(zipfile.ZipFile(packages[config["CodeSha256"]]).namelist())
    assert {
        "app.py",
        "chalicelib/pipeline.py",
        "chalicelib/formats/batch-v1.schema.json",  # read by the validator at run time
        "aws_lambda_powertools/__init__.py",
        "fastjsonschema/__init__.py",
    } <= names
    assert config["Runtime"] == "python3.11" and config["Handler"] == "app.on_batch_uploaded"


def test_reserved_concurrency_is_what_the_sender_reads(deployed):
    got = deployed.client("lambda").get_function_concurrency(FunctionName=deployed.function)
    assert got["ReservedConcurrentExecutions"] == 3
    assert reserved_concurrency(deployed.client("lambda"), deployed.function) == 3


def test_bucket_notifications_have_prefix_and_suffix(deployed):
    """Batches to the sender, jobs' manifests (uploaded last) to the splitter."""
    config = deployed.client("s3").get_bucket_notification_configuration(Bucket=deployed.bucket)
    found = {}
    for target in config["LambdaFunctionConfigurations"]:
        assert target["Events"] == ["s3:ObjectCreated:*"]
        # Names compared case-insensitively: the harness lower-cased them for moto.
        rules = {r["Name"].lower(): r["Value"] for r in target["Filter"]["Key"]["FilterRules"]}
        found[target["LambdaFunctionArn"].rsplit(":", 1)[1]] = rules
    assert found == {
        deployed.function: {"prefix": "queue/", "suffix": ".json"},
        f"postbag-{deployed.stage}-on_job_uploaded": {"prefix": "jobs/",
                                                      "suffix": "/manifest.json"},
        f"postbag-{deployed.stage}-on_suppression_inbox": {"prefix": "suppressions/inbox/",
                                                           "suffix": ".json"},
        f"postbag-{deployed.stage}-on_redrive_request": {"prefix": "requests/redrive/",
                                                         "suffix": ".json"},
        # Scheduled sends: cancel / reschedule requests (docs/scheduling.md).
        f"postbag-{deployed.stage}-on_batch_control": {"prefix": "control/batches/"},
        f"postbag-{deployed.stage}-on_job_schedule": {"prefix": "jobs/",
                                                      "suffix": "/schedule.json"},
        f"postbag-{deployed.stage}-on_job_cancel": {"prefix": "jobs/", "suffix": "/cancel"},
    }


@pytest.mark.parametrize("handler", ["on_batch_uploaded", "on_job_uploaded",
                                     "on_redrive_request"])
def test_s3_may_invoke_the_function_for_this_bucket_only(deployed, handler):
    policy = json.loads(deployed.client("lambda").get_policy(
        FunctionName=f"postbag-{deployed.stage}-{handler}")["Policy"])
    (statement,) = policy["Statement"]
    assert statement["Action"] == "lambda:InvokeFunction"
    assert statement["Principal"] == {"Service": "s3.amazonaws.com"}
    assert statement["Condition"]["ArnLike"]["AWS:SourceArn"] == f"arn:aws:s3:::{deployed.bucket}"


# Invoked asynchronously.
HANDLERS = ["on_batch_uploaded", "on_ses_event", "on_job_uploaded", "on_redrive_request"]
ROLES = [
    ("on_batch_uploaded", "policy-ci.json"),
    ("on_ses_event", "policy-ci-on_ses_event.json"),
    ("on_job_uploaded", "policy-ci-on_job_uploaded.json"),
    ("on_work_item", "policy-ci-on_work_item.json"),
    ("on_redrive_request", "policy-ci-on_redrive_request.json"),
]


@pytest.mark.parametrize("handler,policy_file", ROLES, ids=[h for h, _ in ROLES])
def test_each_role_carries_exactly_its_rendered_policy(deployed, handler, policy_file):
    """Chalice makes one role per function; the event recorder's policy is its own."""
    iam = deployed.client("iam")
    role = f"postbag-{deployed.stage}-{handler}"
    names = iam.list_role_policies(RoleName=role)["PolicyNames"]
    documents = [iam.get_role_policy(RoleName=role, PolicyName=n)["PolicyDocument"] for n in names]
    rendered = json.loads((deployed.app_dir / ".chalice" / policy_file).read_text())
    assert documents == [rendered]
    assert iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"] == []


def test_log_group_has_retention(deployed):
    groups = deployed.client("logs").describe_log_groups(
        logGroupNamePrefix=f"/aws/lambda/{deployed.function}"
    )["logGroups"]
    assert [g["retentionInDays"] for g in groups] == [30]


@pytest.mark.parametrize("handler", HANDLERS)
def test_failed_invocations_go_to_the_failure_queue(deployed, handler):
    config = deployed.client("lambda").get_function_event_invoke_config(
        FunctionName=f"postbag-{deployed.stage}-{handler}"
    )
    queue_arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:postbag-ci-failures"
    assert config["DestinationConfig"]["OnFailure"]["Destination"] == queue_arn
    assert config["MaximumRetryAttempts"] == 2
    assert config["MaximumEventAgeInSeconds"] == 6 * 3600


# -- SES's evidence: configuration set, events topic, event recorder ------------


# Send for the ledger's evidence; the rest for the suppression list and the feedback counts.
# Open and click only with --tracking, which the stage was not provisioned with.
EVENT_TYPES = ["send", "bounce", "complaint", "delivery", "reject", "renderingFailure"]


def test_configuration_set_publishes_send_events_to_the_stage_topic(deployed):
    described = deployed.client("ses").describe_configuration_set(
        ConfigurationSetName=deployed.configuration_set,
        ConfigurationSetAttributeNames=["eventDestinations"],
    )
    assert described["EventDestinations"] == [{
        "Name": "postbag-ledger",
        "Enabled": True,
        "MatchingEventTypes": EVENT_TYPES,
        "SNSDestination": {"TopicARN": deployed.events_topic},
    }]


def test_only_ses_may_publish_to_the_events_topic_for_this_set(deployed):
    sns = deployed.client("sns")
    attributes = sns.get_topic_attributes(TopicArn=deployed.events_topic)["Attributes"]
    (statement,) = json.loads(attributes["Policy"])["Statement"]
    assert statement["Effect"] == "Allow" and statement["Action"] == "sns:Publish"
    assert statement["Principal"] == {"Service": "ses.amazonaws.com"}
    assert statement["Resource"] == deployed.events_topic
    assert statement["Condition"] == {"StringEquals": {
        "AWS:SourceAccount": ACCOUNT,
        "AWS:SourceArn": f"arn:aws:ses:{REGION}:{ACCOUNT}:configuration-set/site-ci",
    }}
    assert "KmsMasterKeyId" not in attributes  # no SSE, by choice: see docs/deploy.md
    tags = sns.list_tags_for_resource(ResourceArn=deployed.events_topic)["Tags"]
    assert {"Key": "postbag-stage", "Value": "ci"} in tags


def test_the_event_recorder_is_subscribed_to_the_topic(deployed):
    lam = deployed.client("lambda")
    config = lam.get_function_configuration(FunctionName=deployed.events_function)
    assert config["Handler"] == "app.on_ses_event"
    env = config["Environment"]["Variables"]
    assert env["POSTBAG_LEDGER_TABLE"] == "postbag-ci-ledger"
    subscriptions = deployed.client("sns").list_subscriptions_by_topic(
        TopicArn=deployed.events_topic
    )["Subscriptions"]
    assert [(s["Protocol"], s["Endpoint"]) for s in subscriptions] == [
        ("lambda", config["FunctionArn"])
    ]
    (statement,) = json.loads(lam.get_policy(FunctionName=deployed.events_function)["Policy"])[
        "Statement"
    ]
    assert statement["Principal"] == {"Service": "sns.amazonaws.com"}
    assert statement["Condition"]["ArnLike"]["AWS:SourceArn"] == deployed.events_topic


# -- the bucket ----------------------------------------------------------------


def test_bucket_blocks_public_access_and_encrypts(deployed):
    s3 = deployed.client("s3")
    block = s3.get_public_access_block(Bucket=deployed.bucket)["PublicAccessBlockConfiguration"]
    assert all(block.values()) and len(block) == 4
    rule = s3.get_bucket_encryption(Bucket=deployed.bucket)[
        "ServerSideEncryptionConfiguration"
    ]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    ownership = s3.get_bucket_ownership_controls(Bucket=deployed.bucket)
    assert ownership["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]


def test_bucket_refuses_plain_http(deployed):
    policy = json.loads(deployed.client("s3").get_bucket_policy(Bucket=deployed.bucket)["Policy"])
    (statement,) = policy["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Principal"] == "*" and statement["Action"] == "s3:*"
    assert set(statement["Resource"]) == {
        f"arn:aws:s3:::{deployed.bucket}", f"arn:aws:s3:::{deployed.bucket}/*"
    }
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_lifecycle_rules_follow_the_options(deployed):
    rules = deployed.client("s3").get_bucket_lifecycle_configuration(Bucket=deployed.bucket)[
        "Rules"
    ]
    by_id = {r["ID"]: r for r in rules}
    assert all(r["Status"] == "Enabled" for r in rules)

    def expiry(rule_id: str) -> tuple[dict, int]:
        return by_id[rule_id]["Filter"], by_id[rule_id]["Expiration"]["Days"]

    tag = {"Key": "postbag-state"}
    assert expiry("postbag-sent-batches") == ({"Tag": {**tag, "Value": "done"}}, 5)
    assert expiry("postbag-failed-batches") == ({"Tag": {**tag, "Value": "failed"}}, 40)
    assert expiry("postbag-failed-mail") == ({"Prefix": "failed/"}, 40)
    assert expiry("postbag-quarantine") == ({"Prefix": "quarantine/"}, 40)
    assert expiry("postbag-receipts") == ({"Prefix": "receipts/"}, 60)
    # Held up to 90 days (send_at), then kept as long as failed mail.
    assert expiry("postbag-attachments") == ({"Prefix": "queue/attachments/"}, 130)
    assert expiry("postbag-jobs") == ({"Prefix": "jobs/"}, 130)
    assert expiry("postbag-control-requests") == ({"Prefix": "control/batches/"}, 40)
    assert expiry("postbag-control-results") == ({"Prefix": "status/control/"}, 60)
    assert expiry("postbag-redrive-results") == ({"Prefix": "status/redrive/"}, 60)
    abort = by_id["postbag-abort-multipart"]["AbortIncompleteMultipartUpload"]
    assert abort == {"DaysAfterInitiation": 1}


# -- ledger, failure queue, alarms --------------------------------------------


def test_ledger_table_is_on_demand_with_ttl(deployed):
    ddb = deployed.client("dynamodb")
    table = ddb.describe_table(TableName="postbag-ci-ledger")["Table"]
    assert table["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    ttl = ddb.describe_time_to_live(TableName="postbag-ci-ledger")["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expiration"}


def test_failure_queue_keeps_messages_fourteen_days(deployed):
    sqs = deployed.client("sqs")
    url = sqs.get_queue_url(QueueName="postbag-ci-failures")["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["MessageRetentionPeriod"] == str(14 * 24 * 3600)
    assert attributes["SqsManagedSseEnabled"] == "true"


# -- notify jobs: the work queue, its dead-letter queue, the fan-out sender ---------


def queue_attributes(d: Deployed, name: str) -> dict[str, str]:
    sqs = d.client("sqs")
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]


def test_work_queue_hides_a_message_six_timeouts_and_gives_up_after_five(deployed):
    work = queue_attributes(deployed, "postbag-ci-work")
    dlq = queue_attributes(deployed, "postbag-ci-work-dlq")
    assert work["VisibilityTimeout"] == str(6 * 300)
    assert work["MessageRetentionPeriod"] == str(4 * 24 * 3600)
    assert json.loads(work["RedrivePolicy"]) in (
        {"deadLetterTargetArn": dlq["QueueArn"], "maxReceiveCount": 5},
        {"deadLetterTargetArn": dlq["QueueArn"], "maxReceiveCount": "5"},
    )
    assert dlq["MessageRetentionPeriod"] == str(14 * 24 * 3600)
    for attributes in (work, dlq):
        assert attributes["SqsManagedSseEnabled"] == "true"
        [statement] = json.loads(attributes["Policy"])["Statement"]
        assert (statement["Effect"], statement["Condition"]) == (
            "Deny", {"Bool": {"aws:SecureTransport": "false"}})
        assert statement["Resource"] == attributes["QueueArn"]


def work_mappings(d: Deployed) -> list[dict[str, Any]]:
    """The fan-out sender's SQS event sources (moto filters by function name poorly)."""
    function = f":function:postbag-{d.stage}-on_work_item"
    found = d.client("lambda").list_event_source_mappings()["EventSourceMappings"]
    return [m for m in found if m["FunctionArn"].endswith(function)]


def test_fanout_sender_takes_one_work_item_at_a_time_within_its_concurrency(deployed):
    lam = deployed.client("lambda")
    name = f"postbag-{deployed.stage}-on_work_item"
    config = lam.get_function_configuration(FunctionName=name)
    assert (config["Timeout"], config["MemorySize"]) == (300, 512)
    assert config["Environment"]["Variables"]["POSTBAG_WORK_QUEUE"] == "postbag-ci-work"
    maximum = int(config["Environment"]["Variables"]["POSTBAG_MAX_CONCURRENCY"])
    assert lam.get_function_concurrency(FunctionName=name)[
        "ReservedConcurrentExecutions"] == maximum == 3
    [mapping] = work_mappings(deployed)
    assert mapping["EventSourceArn"] == f"arn:aws:sqs:{REGION}:{ACCOUNT}:postbag-ci-work"
    assert mapping["BatchSize"] == 1
    assert mapping["ScalingConfig"] == {"MaximumConcurrency": maximum}
    splitter = lam.get_function_configuration(
        FunctionName=f"postbag-{deployed.stage}-on_job_uploaded")
    assert (splitter["Timeout"], splitter["MemorySize"]) == (300, 1024)


def test_alarms_watch_failures_the_queue_and_late_mail(deployed):
    alarms = deployed.client("cloudwatch").describe_alarms(AlarmNamePrefix="postbag-ci-")[
        "MetricAlarms"
    ]
    watched = {
        a["AlarmName"]: (a["Namespace"], a["MetricName"], a["Dimensions"]) for a in alarms
    }
    assert watched == {
        "postbag-ci-mails-failed": ("Postbag", "MailsFailed", [
            {"Name": "service", "Value": "postbag"}
        ]),
        "postbag-ci-failure-queue": ("AWS/SQS", "ApproximateNumberOfMessagesVisible", [
            {"Name": "QueueName", "Value": "postbag-ci-failures"}
        ]),
        "postbag-ci-batches-waiting": ("AWS/Lambda", "AsyncEventAge", [
            {"Name": "FunctionName", "Value": deployed.function}
        ]),
        "postbag-ci-mail-late": ("Postbag", "QueueDelay", [
            {"Name": "service", "Value": "postbag"}
        ]),
        "postbag-ci-work-dead-letters": ("AWS/SQS", "ApproximateNumberOfMessagesVisible", [
            {"Name": "QueueName", "Value": "postbag-ci-work-dlq"}
        ]),
        "postbag-ci-work-queue-age": ("AWS/SQS", "ApproximateAgeOfOldestMessage", [
            {"Name": "QueueName", "Value": "postbag-ci-work"}
        ]),
        "postbag-ci-bounce-rate": ("Postbag", "BounceRate7d", [
            {"Name": "service", "Value": "postbag"}
        ]),
        "postbag-ci-complaint-rate": ("Postbag", "ComplaintRate7d", [
            {"Name": "service", "Value": "postbag"}
        ]),
        "postbag-ci-held-failed": ("Postbag", "HeldReleasesFailed", [
            {"Name": "service", "Value": "postbag"}
        ]),
    }
    thresholds = {a["AlarmName"]: a["Threshold"] for a in alarms}
    # Before SES reviews the account (10% bounces, 0.5% complaints), at or over.
    assert (thresholds["postbag-ci-bounce-rate"], thresholds["postbag-ci-complaint-rate"]) == (
        5.0, 0.1)
    assert {a["ComparisonOperator"] for a in alarms if a["AlarmName"].endswith("-rate")} == {
        "GreaterThanOrEqualToThreshold"}
    assert thresholds["postbag-ci-batches-waiting"] == 15 * 60 * 1000  # ms
    assert thresholds["postbag-ci-mail-late"] == 15 * 60  # s
    assert thresholds["postbag-ci-work-queue-age"] == 6 * 3600  # s
    topic = f"arn:aws:sns:{REGION}:{ACCOUNT}:postbag-ci-alarms"
    assert all(a["AlarmActions"] == [topic] for a in alarms)
    subscriptions = deployed.client("sns").list_subscriptions_by_topic(TopicArn=topic)
    assert [s["Endpoint"] for s in subscriptions["Subscriptions"]] == ["ops@example.org"]


# -- the WordPress side ---------------------------------------------------------


def test_wordpress_user_gets_only_the_upload_policy(deployed):
    iam = deployed.client("iam")
    user = "postbag-ci-wordpress"
    attached = iam.list_attached_user_policies(UserName=user)["AttachedPolicies"]
    assert [p["PolicyArn"] for p in attached] == [
        f"arn:aws:iam::{ACCOUNT}:policy/postbag/postbag-ci-wordpress"
    ]
    assert iam.list_user_policies(UserName=user)["PolicyNames"] == []
    (key,) = iam.list_access_keys(UserName=user)["AccessKeyMetadata"]
    printed = deployed.first_run.stdout
    assert f"define( 'POSTBAG_AWS_ACCESS_KEY_ID', '{key['AccessKeyId']}' );" in printed
    assert f"define( 'POSTBAG_BUCKET', '{deployed.bucket}' );" in printed
    assert f"define( 'POSTBAG_REGION', '{REGION}' );" in printed
    assert 'POSTBAG_PREFIX' not in printed  # the plugin's queue/ prefix is fixed


def test_secret_key_is_printed_once_and_never_written(deployed):
    secret = re.search(
        r"POSTBAG_AWS_SECRET_ACCESS_KEY', '([^']+)'", deployed.first_run.stdout
    ).group(1)
    again = deployed.postbag("provision", *deployed.provision_args)
    assert "POSTBAG_AWS_SECRET_ACCESS_KEY" not in again.stdout
    for path in deployed.app_dir.rglob("*"):
        if path.is_file() and path.suffix != ".zip":
            assert secret not in path.read_text(errors="replace"), path


# -- idempotence, status ----------------------------------------------------------


def snapshot(d: Deployed) -> dict[str, Any]:
    """Every setting provisioning and wiring own, as the stand-in reports them."""
    s3, iam, sqs = d.client("s3"), d.client("iam"), d.client("sqs")
    lam, ddb = d.client("lambda"), d.client("dynamodb")
    b = d.bucket
    url = sqs.get_queue_url(QueueName=f"postbag-{d.stage}-failures")["QueueUrl"]
    policy_arn = f"arn:aws:iam::{ACCOUNT}:policy/postbag/postbag-{d.stage}-wordpress"
    found: dict[str, Any] = {
        "block": s3.get_public_access_block(Bucket=b)["PublicAccessBlockConfiguration"],
        "encryption": s3.get_bucket_encryption(Bucket=b)["ServerSideEncryptionConfiguration"],
        "policy": s3.get_bucket_policy(Bucket=b)["Policy"],
        "lifecycle": s3.get_bucket_lifecycle_configuration(Bucket=b)["Rules"],
        "notification": s3.get_bucket_notification_configuration(Bucket=b)[
            "LambdaFunctionConfigurations"
        ],
        "bucket_tags": s3.get_bucket_tagging(Bucket=b)["TagSet"],
        "table": ddb.describe_table(TableName=f"postbag-{d.stage}-ledger")["Table"],
        "ttl": ddb.describe_time_to_live(TableName=f"postbag-{d.stage}-ledger"),
        "queue": sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"],
        "work_queue": queue_attributes(d, f"postbag-{d.stage}-work"),
        "work_dlq": queue_attributes(d, f"postbag-{d.stage}-work-dlq"),
        "alarms": d.client("cloudwatch").describe_alarms(AlarmNamePrefix=f"postbag-{d.stage}-")[
            "MetricAlarms"
        ],
        "topics": d.client("sns").list_topics()["Topics"],
        "subscriptions": d.client("sns").list_subscriptions()["Subscriptions"],
        "wp_policy": iam.get_policy(PolicyArn=policy_arn)["Policy"],
        "wp_versions": iam.list_policy_versions(PolicyArn=policy_arn)["Versions"],
        "wp_keys": iam.list_access_keys(UserName=f"postbag-{d.stage}-wordpress"),
        "function": lam.get_function_configuration(FunctionName=d.function),
        "invoke_config": lam.get_function_event_invoke_config(FunctionName=d.function),
        "events_function": lam.get_function_configuration(FunctionName=d.events_function),
        "events_invoke_config": lam.get_function_event_invoke_config(
            FunctionName=d.events_function
        ),
        "events_topic": d.client("sns").get_topic_attributes(TopicArn=d.events_topic),
        "job_functions": [
            {k: v for k, v in lam.get_function_configuration(
                FunctionName=f"postbag-{d.stage}-{h}").items() if k != "ResponseMetadata"}
            for h in ("on_job_uploaded", "on_work_item")
        ],
        "work_mappings": work_mappings(d),
        "configuration_set": d.client("ses").describe_configuration_set(
            ConfigurationSetName=d.configuration_set,
            ConfigurationSetAttributeNames=["eventDestinations"],
        ),
        "files": {
            p.name: p.read_text() for p in (d.app_dir / ".chalice").glob("*.json")
        },
    }
    for value in found.values():
        if isinstance(value, dict):
            value.pop("ResponseMetadata", None)
    return found


def test_second_provision_and_wire_change_nothing(deployed):
    before = snapshot(deployed)
    again = deployed.postbag("provision", *deployed.provision_args)
    rewired = deployed.postbag("wire")
    assert snapshot(deployed) == before
    actions = re.findall(r"^  (\w+) ", again.stderr + rewired.stderr, re.MULTILINE)
    assert actions and set(actions) == {"unchanged"}


def allow_plain_http(d: Deployed) -> None:
    """moto ignores the policy's aws:SecureTransport condition and so refuses every
    object request to a TLS-only bucket; our stand-in speaks plain HTTP. Tests
    that write objects drop the policy first (its content is checked above)."""
    d.client("s3").delete_bucket_policy(Bucket=d.bucket)


def provisioned(aws: DeployAws, tmp: Path, stage: str, *args: str) -> Deployed:
    """A stage provisioned but not deployed (enough for everything but the function)."""
    d = Deployed(aws, shell_for(aws.client_env()), copy_chalice_app(tmp, tmp),
                 stage, f"postbag-{stage}-mail", list(args), None)
    d.first_run = d.postbag("provision", "--bucket", d.bucket, "--region", REGION, *args)
    return d


def test_status_counts_queued_sent_failed_and_quarantined(aws, tmp_path):
    d = provisioned(aws, tmp_path, "watched", "--sender-identity", "example.org")
    allow_plain_http(d)
    s3 = d.client("s3")
    put = {"Bucket": d.bucket, "Body": b"{}"}
    s3.put_object(Key="queue/waiting.json", **put)
    s3.put_object(Key="queue/sent.json", Tagging="postbag-state=done", **put)
    s3.put_object(Key="queue/given-up.json", Tagging="postbag-state=failed", **put)
    s3.put_object(Key="queue/attachments/waiting/m1/0", **put)
    s3.put_object(Key="failed/b1.json", **put)
    s3.put_object(Key="quarantine/b2.json", **put)
    s3.put_object(Key="quarantine/b2.json.error.json", **put)
    sqs = d.client("sqs")
    url = sqs.get_queue_url(QueueName="postbag-watched-failures")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="{}")
    work = sqs.get_queue_url(QueueName="postbag-watched-work")["QueueUrl"]
    for body in ("w1", "w2", "w3"):
        sqs.send_message(QueueUrl=work, MessageBody=body)
    sqs.receive_message(QueueUrl=work, MaxNumberOfMessages=1)  # one being sent
    dead = sqs.get_queue_url(QueueName="postbag-watched-work-dlq")["QueueUrl"]
    sqs.send_message(QueueUrl=dead, MessageBody="w0")
    counts = json.loads(d.postbag("status", "--json").stdout)
    assert 0 <= counts.pop("oldest_queued_seconds") < 60
    # A quarantined batch counts once, not with its error document; sent: tagged done.
    assert counts == {"queued": 1, "sent": 1, "failed": 1, "quarantined": 1, "failure_queue": 1,
                      "work_queued": 2, "work_in_flight": 1, "work_dead_letters": 1,
                      "ses_events": "enabled"}


def test_redrive_puts_failed_mail_back_in_the_queue(aws, tmp_path):
    d = provisioned(aws, tmp_path, "again", "--sender-identity", "example.org")
    allow_plain_http(d)
    s3 = d.client("s3")
    failed = {"version": 1, "batch_id": "b1", "emails": [{"id": "m1"}]}
    s3.put_object(Bucket=d.bucket, Key="failed/b1.json", Body=json.dumps(failed).encode())
    s3.put_object(Bucket=d.bucket, Key="failed/b10.json", Body=json.dumps(
        {**failed, "batch_id": "b10"}).encode())

    done = d.postbag("redrive", "--batch", "b1")
    target = f"queue/{object_name('b1', 1, 0)}.json"
    # The keys, then the result, all on stdout (the sender's log goes to stderr).
    assert done.stdout.splitlines() == [target, "re-driven: 1"]
    requeued = json.loads(s3.get_object(Bucket=d.bucket, Key=target)["Body"].read())
    assert (requeued["redrive"], requeued["emails"]) == (1, [{"id": "m1"}])
    left = s3.list_objects_v2(Bucket=d.bucket, Prefix="failed/")["Contents"]
    assert [o["Key"] for o in left] == ["failed/b10.json"]


# -- provisioning options and refusals ------------------------------------------


def test_sse_kms_role_and_existing_topic(aws, tmp_path):
    kms, iam, sns = (as_principal(aws, name, TESTING) for name in ("kms", "iam", "sns"))
    key_arn = kms.create_key()["KeyMetadata"]["Arn"]
    iam.create_role(RoleName="web-server", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
            "Action": "sts:AssumeRole"}]}))
    topic = sns.create_topic(Name="ops-pager")["TopicArn"]
    d = provisioned(aws, tmp_path, "sealed", "--sender-identity", "example.org",
                    "--kms-key", key_arn.rsplit("/", 1)[1], "--attach-to-role", "web-server",
                    "--sns-topic", topic)

    rule = d.client("s3").get_bucket_encryption(Bucket=d.bucket)[
        "ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_arn}
    assert rule["BucketKeyEnabled"] is True
    policy_arn = f"arn:aws:iam::{ACCOUNT}:policy/postbag/postbag-sealed-wordpress"
    attached = iam.list_attached_role_policies(RoleName="web-server")["AttachedPolicies"]
    assert [p["PolicyArn"] for p in attached] == [policy_arn]
    version = iam.get_policy(PolicyArn=policy_arn)["Policy"]["DefaultVersionId"]
    document = iam.get_policy_version(PolicyArn=policy_arn, VersionId=version)
    statements = document["PolicyVersion"]["Document"]["Statement"]
    assert {"Sid": "EncryptUploads", "Effect": "Allow", "Action": ["kms:GenerateDataKey"],
            "Resource": [key_arn]} in statements
    for role in ("policy-sealed.json", "policy-sealed-on_job_uploaded.json",
                 "policy-sealed-on_work_item.json"):
        role_policy = json.loads((d.app_dir / ".chalice" / role).read_text())
        assert any(s["Resource"] == [key_arn] for s in role_policy["Statement"]), role
    # The notify jobs' queues are encrypted with the stage's key too.
    for queue in ("postbag-sealed-work", "postbag-sealed-work-dlq"):
        attributes = queue_attributes(d, queue)
        assert (attributes["KmsMasterKeyId"], attributes["SqsManagedSseEnabled"]) == (
            key_arn, "false")
    assert f"define( 'POSTBAG_KMS_KEY_ID', '{key_arn}' );" in d.first_run.stdout
    assert "define( 'POSTBAG_SSE', 'aws:kms' );" in d.first_run.stdout
    assert "ACCESS_KEY" not in d.first_run.stdout  # no user was asked for
    alarms = d.client("cloudwatch").describe_alarms(AlarmNamePrefix="postbag-sealed-")
    assert {tuple(a["AlarmActions"]) for a in alarms["MetricAlarms"]} == {(topic,)}

    # A later run without the options keeps the key, the role and the topic.
    again = d.postbag("provision", "--region", REGION)
    assert set(re.findall(r"^  (\w+) ", again.stderr, re.MULTILINE)) == {"unchanged"}

    d.postbag("teardown")
    assert iam.list_attached_role_policies(RoleName="web-server")["AttachedPolicies"] == []
    assert iam.get_role(RoleName="web-server")  # the role is the user's: kept
    assert sns.get_topic_attributes(TopicArn=topic)  # so is the topic


def test_ses_events_default_to_the_stage_set_converge_and_go(aws, tmp_path):
    """Without --configuration-set the stage gets its own set; what drifted is put
    back; another stage may not take the set over; teardown removes it all."""
    d = provisioned(aws, tmp_path / "own", "evidence", "--sender-identity", "example.org")
    ses, sns = d.client("ses"), d.client("sns")
    assert d.configuration_set == "postbag-evidence"
    role_policy = json.loads((d.app_dir / ".chalice" / "policy-evidence.json").read_text())
    set_arn = f"arn:aws:ses:{REGION}:{ACCOUNT}:configuration-set/postbag-evidence"
    assert any(set_arn in s["Resource"] for s in role_policy["Statement"])

    def destinations() -> list[dict]:
        return ses.describe_configuration_set(
            ConfigurationSetName="postbag-evidence",
            ConfigurationSetAttributeNames=["eventDestinations"],
        )["EventDestinations"]

    def topic_policy() -> dict:
        attributes = sns.get_topic_attributes(TopicArn=d.events_topic)["Attributes"]
        return json.loads(attributes["Policy"])

    wanted, wanted_policy = destinations(), topic_policy()
    assert wanted == [{"Name": "postbag-ledger", "Enabled": True,
                       "MatchingEventTypes": EVENT_TYPES,
                       "SNSDestination": {"TopicARN": d.events_topic}}]
    assert wanted_policy["Statement"][0]["Condition"]["StringEquals"]["AWS:SourceArn"] == set_arn

    # Someone disables the destination and opens the topic: provision puts both back.
    ses.update_configuration_set_event_destination(
        ConfigurationSetName="postbag-evidence", EventDestination={**wanted[0], "Enabled": False}
    )
    sns.set_topic_attributes(TopicArn=d.events_topic, AttributeName="Policy", AttributeValue=(
        json.dumps({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": "*", "Action": "sns:Publish",
            "Resource": d.events_topic}]})))
    again = d.postbag("provision", "--region", REGION).stderr
    assert re.search(r"^  updated +SES event destination postbag-evidence/postbag-ledger",
                     again, re.MULTILINE)
    assert re.search(r"^  updated +SNS topic postbag-evidence-ses-events policy",
                     again, re.MULTILINE)
    assert (destinations(), topic_policy()) == (wanted, wanted_policy)

    # A set publishes to one stage's topic: another stage is refused, nothing made.
    other = Deployed(aws, d.shell, copy_chalice_app(tmp_path / "other", tmp_path / "other"),
                     "intruder", "postbag-intruder-mail", [], None)
    refused = other.postbag("provision", "--bucket", other.bucket, "--region", REGION,
                            "--sender-identity", "example.org",
                            "--configuration-set", "postbag-evidence", check=False)
    assert refused.returncode == 1, refused.stderr
    assert "give each stage its own --configuration-set" in refused.stderr
    assert gone(lambda: other.client("s3").head_bucket(Bucket=other.bucket), "404")
    assert gone(lambda: sns.get_topic_attributes(TopicArn=other.events_topic), "NotFound")
    assert destinations() == wanted

    d.postbag("teardown")
    assert gone(destinations, "ConfigurationSetDoesNotExist")
    assert gone(topic_policy, "NotFound")


def test_help_names_every_command(aws):
    done = shell_for(aws.client_env()).run("postbag", "--help")
    for command in ("provision", "wire", "status", "redrive", "notify", "cancel", "teardown"):
        assert re.search(rf"^    {command}\b", done.stdout, re.MULTILINE), command


@pytest.mark.parametrize(
    "argv,message",
    [
        (["provision", "--region", REGION], "pass --bucket"),
        (["provision", "--region", REGION, "--bucket", "postbag-refused-mail"],
         "--sender-identity"),
        (["wire", "--region", REGION, "--bucket", "postbag-refused-mail"], "chalice deploy"),
        (["status", "--region", REGION, "--chalice-dir", "/nonexistent"], "no Chalice project"),
        (["provision", "--region", REGION, "--bucket", "postbag-refused-mail",
          "--sender-identity", "news@unknown.example"],
         "no identity for news@unknown.example: create and verify it first "
         "(`aws sesv2 create-email-identity --email-identity unknown.example`"),
    ],
    ids=["no-bucket", "no-sender-identity", "wire-before-deploy", "no-chalice-project",
         "unknown-sender-identity"],
)
def test_commands_refuse_with_a_reason_and_change_nothing(aws, tmp_path, argv, message):
    d = Deployed(aws, shell_for(aws.client_env()), copy_chalice_app(tmp_path, tmp_path),
                 "refused", "postbag-refused-mail", [], None)
    generated = d.app_dir / ".chalice" / "config.json"
    assert not generated.exists()  # a fresh clone's: no stage provisioned yet
    done = d.postbag(*argv, check=False)
    assert done.returncode == 1
    assert message in done.stderr and "Traceback" not in done.stderr
    assert not generated.exists()
    assert gone(lambda: d.client("s3").head_bucket(Bucket=d.bucket), "404")


# -- IAM as moto enforces it ------------------------------------------------------


@contextmanager
def iam_enforced(aws: DeployAws):
    """moto checks signatures and IAM policies only while this is on."""
    def allow_unchecked(count: bytes) -> None:
        # text/plain: a form content type would hide the body from moto.
        urllib.request.urlopen(urllib.request.Request(
            f"{aws.endpoint}/moto-api/reset-auth", data=count, method="POST",
            headers={"Content-Type": "text/plain"},
        )).close()

    allow_unchecked(b"0")
    try:
        yield
    finally:
        allow_unchecked(b"inf")


def denied(call) -> bool:
    return gone(call, "AccessDenied", "403")


def test_policies_hold_where_moto_enforces_them(aws, tmp_path, package_cache):
    """The WordPress key and the sender's role, used for real against moto's
    IAM enforcement (S3 only; SES conditions are left to test_policies.py)."""
    d = deploy(aws, tmp_path, package_cache, "enforced", "postbag-enforced-mail")
    allow_plain_http(d)
    printed = dict(re.findall(r"define\( '(POSTBAG_AWS_\w+)', '([^']+)' \);", d.first_run.stdout))
    wordpress = as_principal(aws, "s3", {
        "aws_access_key_id": printed["POSTBAG_AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": printed["POSTBAG_AWS_SECRET_ACCESS_KEY"],
    })
    role = f"arn:aws:iam::{ACCOUNT}:role/postbag-enforced-on_batch_uploaded"
    assumed = d.client("sts").assume_role(RoleArn=role, RoleSessionName="test")["Credentials"]
    sender = as_principal(aws, "s3", {
        "aws_access_key_id": assumed["AccessKeyId"],
        "aws_secret_access_key": assumed["SecretAccessKey"],
        "aws_session_token": assumed["SessionToken"],
    })
    b = {"Bucket": d.bucket}
    with iam_enforced(aws):
        wordpress.put_object(Key="queue/b1.json", Body=b"{}", **b)
        wordpress.put_object(Key="queue/attachments/b1/m1/0", Body=b"x", **b)
        assert denied(lambda: wordpress.put_object(Key="receipts/b1.json", Body=b"{}", **b))
        assert denied(lambda: wordpress.get_object(Key="queue/b1.json", **b))
        assert denied(lambda: wordpress.delete_object(Key="queue/b1.json", **b))
        assert denied(lambda: wordpress.list_objects_v2(**b))

        assert sender.get_object(Key="queue/b1.json", **b)["Body"].read() == b"{}"
        assert sender.get_object(Key="queue/attachments/b1/m1/0", **b)["Body"].read() == b"x"
        sender.put_object(Key="queue/b1.part-1.json", Body=b"{}", **b)
        sender.put_object(Key="receipts/b1.json", Body=b"{}", **b)
        sender.put_object_tagging(Key="queue/b1.json", Tagging={"TagSet": [
            {"Key": "postbag-state", "Value": "done"}]}, **b)
        assert denied(lambda: sender.put_object(Key="queue/attachments/b1/m1/0", Body=b"", **b))
        assert denied(lambda: sender.get_object(Key="receipts/b1.json", **b))
        assert denied(lambda: sender.delete_object(Key="receipts/b1.json", **b))
    d.chalice("delete")
    d.postbag("teardown", "--force")


# -- teardown -------------------------------------------------------------------


def gone(call, *codes: str) -> bool:
    try:
        call()
    except ClientError as exc:
        return exc.response["Error"]["Code"] in codes
    return False


def test_teardown_refuses_then_removes_everything(aws, tmp_path, package_cache):
    d = deploy(aws, tmp_path, package_cache, "doomed", "postbag-doomed-mail")
    allow_plain_http(d)
    d.client("s3").put_object(Bucket=d.bucket, Key="queue/unsent.json", Body=b"{}")
    d.client("s3").put_object(Bucket=d.bucket, Key="queue/sent.json", Body=b"{}",
                              Tagging="postbag-state=done")

    def refusal(*argv: str) -> str:
        done = d.postbag("teardown", *argv, check=False)
        assert done.returncode == 1, done.stderr
        assert d.client("s3").head_bucket(Bucket=d.bucket)  # nothing removed on refusal
        assert d.client("dynamodb").describe_table(TableName="postbag-doomed-ledger")
        return done.stderr

    # Unsent batches are reported first, while the function can still send them.
    assert "1 unsent batch(es) under queue/ (e.g. queue/unsent.json)" in refusal()
    assert "chalice delete" in refusal("--force")  # --force is about batches only
    d.chalice("delete")
    assert "1 unsent batch" in refusal()

    d.postbag("teardown", "--force")
    s3, iam, cw = d.client("s3"), d.client("iam"), d.client("cloudwatch")
    assert gone(lambda: s3.head_bucket(Bucket=d.bucket), "404")
    assert gone(
        lambda: d.client("dynamodb").describe_table(TableName="postbag-doomed-ledger"),
        "ResourceNotFoundException",
    )
    for queue in ("failures", "work", "work-dlq"):
        assert gone(
            lambda q=queue: d.client("sqs").get_queue_url(QueueName=f"postbag-doomed-{q}"),
            "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist",
        )
    assert cw.describe_alarms(AlarmNamePrefix="postbag-doomed-")["MetricAlarms"] == []
    assert not [t for t in d.client("sns").list_topics()["Topics"] if "doomed" in t["TopicArn"]]
    assert gone(
        lambda: d.client("ses").describe_configuration_set(ConfigurationSetName="site-doomed"),
        "ConfigurationSetDoesNotExist",
    )
    policy_arn = f"arn:aws:iam::{ACCOUNT}:policy/postbag/postbag-doomed-wordpress"
    assert gone(lambda: iam.get_policy(PolicyArn=policy_arn), "NoSuchEntity")
    assert gone(lambda: iam.get_user(UserName="postbag-doomed-wordpress"), "NoSuchEntity")
    # A second teardown finds nothing to do and says so.
    again = d.postbag("teardown")
    assert set(re.findall(r"^  (\w+) ", again.stderr, re.MULTILINE)) == {"absent"}


def git(repo: Path, *argv: str) -> str:
    return subprocess.run(["git", "-c", "user.name=test", "-c", "user.email=test@example.org",
                           *argv], cwd=repo, capture_output=True, text=True, check=True,
                          timeout=60).stdout


def test_provision_deploy_and_wire_leave_a_clone_clean(aws, tmp_path, package_cache):
    """Deployment state is generated and git-ignored: after provision, chalice deploy and
    wire, a clone of the repository's chalice_app/ has nothing to commit."""
    repo = tmp_path / "clone"
    for name in git(ROOT, "ls-files", "chalice_app", ".gitignore").split():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, repo / name, follow_symlinks=False)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "clone")
    app_dir = repo / "chalice_app"
    # The packages Chalice built before, as a real folder (a link is no folder to git).
    shutil.copytree(package_cache, app_dir / ".chalice" / "deployments")
    d = Deployed(aws, shell_for(aws.client_env()), app_dir, "tidy", "postbag-tidy-mail", [], None)
    d.postbag("provision", "--bucket", d.bucket, "--region", REGION,
              "--sender-identity", "example.org")
    d.chalice("deploy")
    d.postbag("wire")
    assert (app_dir / ".chalice" / "config.json").exists()
    assert (app_dir / ".chalice" / "policy-tidy.json").exists()
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""
    d.chalice("delete")
    d.postbag("teardown", "--force")


def test_provision_checks_ses_and_names_the_next_commands_as_they_run(aws, tmp_path):
    """Without --create-wp-user no credentials are shown, so none are said to be; the
    next step runs as printed from a fresh clone (the venv's chalice, not activated)."""
    d = provisioned(aws, tmp_path, "fresh", "--sender-identity", "news@example.com")
    out, err = d.first_run.stdout, d.first_run.stderr
    assert "SES identity news@example.com: verified" in err
    # moto answers no GetAccount: said so, with where to look.
    assert "SES account: production access unknown" in err
    assert "shown this once" not in out and "ACCESS_KEY" not in out
    chalice, postbag = BIN / "chalice", BIN / "postbag"
    assert f"{chalice} deploy --stage fresh" in out
    assert f"{postbag} wire --stage fresh --region {REGION}" in out
    assert chalice.exists() and postbag.exists()


def test_provision_refuses_a_new_bucket_for_a_stage_unless_asked(aws, tmp_path):
    d = provisioned(aws, tmp_path, "moving", "--sender-identity", "example.org")
    config = (d.app_dir / ".chalice" / "config.json").read_text()
    refused = d.postbag("provision", "--region", REGION, "--bucket", "postbag-moving-new",
                        check=False)
    assert refused.returncode == 1
    assert ("stage moving uses bucket postbag-moving-mail, not postbag-moving-new: switching "
            "would leave postbag-moving-mail and the mail it holds behind") in refused.stderr
    assert "--switch-bucket" in refused.stderr
    assert (d.app_dir / ".chalice" / "config.json").read_text() == config
    assert gone(lambda: d.client("s3").head_bucket(Bucket="postbag-moving-new"), "404")

    moved = d.postbag("provision", "--region", REGION, "--bucket", "postbag-moving-new",
                      "--switch-bucket")
    assert ("WARNING: stage moving moves from bucket postbag-moving-mail to postbag-moving-new"
            in moved.stderr)
    assert d.client("s3").head_bucket(Bucket="postbag-moving-new")
    assert d.client("s3").head_bucket(Bucket="postbag-moving-mail")  # kept, as said
    env = json.loads((d.app_dir / ".chalice" / "config.json").read_text())["stages"]["moving"]
    assert env["environment_variables"]["POSTBAG_BUCKET"] == "postbag-moving-new"


def test_teardown_refuses_while_failed_or_quarantined_mail_remains(aws, tmp_path):
    d = provisioned(aws, tmp_path, "keeper", "--sender-identity", "example.org")
    allow_plain_http(d)
    s3 = d.client("s3")
    put = {"Bucket": d.bucket, "Body": b"{}"}
    s3.put_object(Key="failed/b1.json", **put)

    def refusal() -> str:
        done = d.postbag("teardown", check=False)
        assert done.returncode == 1, done.stderr
        assert s3.head_bucket(Bucket=d.bucket)  # nothing removed on refusal
        return done.stderr

    assert ("still holds 1 failed mail document(s) under failed/ and 0 quarantined batch(es) "
            "under quarantine/ (e.g. failed/b1.json)") in refusal()
    assert "postbag redrive" in refusal()
    s3.delete_object(Bucket=d.bucket, Key="failed/b1.json")
    s3.put_object(Key="quarantine/b2.json", **put)
    s3.put_object(Key="quarantine/b2.json.error.json", **put)
    assert "0 failed mail document(s) under failed/ and 1 quarantined batch(es)" in refusal()

    done = d.postbag("teardown", "--force")
    assert "emptying  s3://postbag-keeper-mail: 2 under quarantine/" in done.stderr
    assert gone(lambda: s3.head_bucket(Bucket=d.bucket), "404")


def test_teardown_refuses_while_mail_is_held_or_the_suppression_list_has_entries(aws, tmp_path):
    d = provisioned(aws, tmp_path, "holder", "--sender-identity", "example.org")
    allow_plain_http(d)
    s3 = d.client("s3")
    s3.put_object(Bucket=d.bucket, Key="held/2026-12-01T08:00:00Z/batch/b1", Body=b"")

    def refusal() -> str:
        done = d.postbag("teardown", check=False)
        assert done.returncode == 1, done.stderr
        assert s3.head_bucket(Bucket=d.bucket)  # nothing removed on refusal
        return done.stderr

    assert ("still holds 1 batch(es) or job(s) held until their time under held/ "
            "(e.g. held/2026-12-01T08:00:00Z/batch/b1)") in refusal()
    s3.delete_object(Bucket=d.bucket, Key="held/2026-12-01T08:00:00Z/batch/b1")
    for address in ("gone@example.net", "angry@example.net"):
        d.shell.run("postbag", "suppression", "add", "--stage", d.stage, "--chalice-dir",
                    str(d.app_dir), address)
    said = refusal()
    assert "postbag-holder-suppression holds 2 suppression(s)" in said
    assert "postbag suppression list --json --stage holder" in said
    done = d.postbag("teardown", "--force")
    assert "deleting  DynamoDB table postbag-holder-suppression: 2 suppression(s)" in done.stderr
    assert gone(lambda: d.client("dynamodb").describe_table(
        TableName="postbag-holder-suppression"), "ResourceNotFoundException")


def test_teardown_refuses_while_notify_work_waits(aws, tmp_path):
    """Not deployed: moto would run the fan-out sender on each message sent to its queue
    (and keeps running a deleted mapping), so the work is queued to a stage without it."""
    d = provisioned(aws, tmp_path, "busy", "--sender-identity", "example.org")
    sqs = d.client("sqs")
    sqs.send_message(QueueUrl=sqs.get_queue_url(QueueName="postbag-busy-work")["QueueUrl"],
                     MessageBody="w1")
    done = d.postbag("teardown", check=False)
    assert done.returncode == 1
    assert "postbag-busy-work still holds 1 notify work item(s)" in done.stderr
    assert "postbag cancel --job" in done.stderr
    assert sqs.get_queue_url(QueueName="postbag-busy-work")  # nothing removed
    d.postbag("teardown", "--force")
    assert gone(lambda: sqs.get_queue_url(QueueName="postbag-busy-work"),
                "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist")
