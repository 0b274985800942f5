"""Units of the operator's tool that need no AWS: stage settings, names, rules."""

from __future__ import annotations

import argparse
import copy
import io
import json

import boto3
import pytest
from botocore.stub import Stubber
from support.iam_eval import DENY, evaluate

from chalicelib.config import Settings
from postbag import chalice_config
from postbag.aws import CommandError
from postbag.cli import stage_name
from postbag.provision import Options, check_retention
from postbag.report import Report
from postbag.resources import alarms, policies, ses_events, work_queue
from postbag.resources.bucket import Retention, lifecycle_rules
from postbag.stack import Stack

STACK = Stack("staging", "eu-west-1", "site-mail", "111122223333")


def committed() -> dict:
    return chalice_config.load(chalice_config.CHALICE_DIR)


def test_a_new_stage_gets_its_values_and_inherits_the_rest():
    config = committed()
    chalice_config.configure_stage(config, STACK, ["example.org"], "postbag", 4)
    env = chalice_config.stage_env(config, "staging")
    assert env["POSTBAG_BUCKET"] == "site-mail"
    assert env["POSTBAG_LEDGER_TABLE"] == "postbag-staging-ledger"
    assert env["POSTBAG_ALLOWED_SENDERS"] == "example.org"
    assert env["POSTBAG_DEFAULT_CONFIGURATION_SET"] == "postbag"
    assert env["POSTBAG_SES_EVENTS_TOPIC"] == "postbag-staging-ses-events"
    assert "POSTBAG_RESERVED_CONCURRENCY" not in env  # the sender asks Lambda (ratelimit)
    stage = config["stages"]["staging"]
    assert (stage["reserved_concurrency"], stage["iam_policy_file"]) == (4, "policy-staging.json")
    assert stage["lambda_functions"]["on_ses_event"] == {
        "iam_policy_file": "policy-staging-on_ses_event.json"
    }
    assert stage["tags"]["postbag-stage"] == "staging"


def test_the_configuration_set_is_postbags_own_unless_named():
    config = committed()
    chalice_config.configure_stage(config, STACK, ["example.org"], None, None)
    env = config["stages"]["staging"]["environment_variables"]
    assert env["POSTBAG_DEFAULT_CONFIGURATION_SET"] == "postbag-staging"
    chalice_config.configure_stage(config, STACK, [], "site-mail", None)
    assert env["POSTBAG_DEFAULT_CONFIGURATION_SET"] == "site-mail"
    chalice_config.configure_stage(config, STACK, [], None, None)  # a later run keeps it
    assert env["POSTBAG_DEFAULT_CONFIGURATION_SET"] == "site-mail"


def test_every_name_of_the_ses_evidence_derives_from_the_stage():
    assert (STACK.configuration_set, STACK.ses_events_topic, STACK.events_function_name) == (
        "postbag-staging", "postbag-staging-ses-events", "postbag-staging-on_ses_event"
    )
    assert STACK.ses_events_topic_arn == (
        "arn:aws:sns:eu-west-1:111122223333:postbag-staging-ses-events"
    )
    assert STACK.configuration_set_arn("site-mail") == (
        "arn:aws:ses:eu-west-1:111122223333:configuration-set/site-mail"
    )


def test_configuring_again_with_no_options_keeps_everything():
    config = committed()
    chalice_config.configure_stage(config, STACK, ["example.org"], "postbag", 4)
    again = copy.deepcopy(config)
    chalice_config.configure_stage(again, STACK, [], None, None)
    assert again == config


def test_other_stages_are_left_alone():
    config = committed()
    before = copy.deepcopy(config["stages"]["prod"])
    chalice_config.configure_stage(config, STACK, ["example.org"], None, 9)
    assert config["stages"]["prod"] == before


def test_stage_values_win_over_the_top_level():
    config = {
        "environment_variables": {"A": "top", "B": "top"},
        "reserved_concurrency": 2,
        "stages": {"s": {"environment_variables": {"A": "stage"}, "reserved_concurrency": 7,
                         "lambda_functions": {"on_batch_uploaded": {
                             "environment_variables": {"A": "function"}}}}},
    }
    assert chalice_config.stage_env(config, "s")["A"] == "function"
    chalice_config.configure_stage(config, Stack("s", "r", "b", "1"), [], None, None)
    assert chalice_config.stage_env(config, "s")["B"] == "top"
    assert config["stages"]["s"]["reserved_concurrency"] == 7  # written once, by the stage


def test_the_fixed_prefixes_reach_the_rules_and_both_policies():
    settings = Settings.from_env({"POSTBAG_ALLOWED_SENDERS": "example.org"})
    prefixes = {r["Filter"].get("Prefix") for r in lifecycle_rules(Retention())}
    assert {"failed/", "quarantine/", "receipts/", "queue/attachments/", "jobs/"} <= prefixes
    resources = [
        r for s in policies.lambda_policy(STACK, settings)["Statement"] for r in s["Resource"]
    ]
    assert "arn:aws:s3:::site-mail/queue/*.json" in resources
    assert {"arn:aws:s3:::site-mail/receipts/*", "arn:aws:s3:::site-mail/failed/*",
            "arn:aws:s3:::site-mail/quarantine/*"} <= set(resources)
    wp = policies.wordpress_policy(STACK)["Statement"][0]["Resource"]
    assert wp == ["arn:aws:s3:::site-mail/queue/*"]


def test_the_sender_may_read_its_own_concurrency_and_nothing_else_of_lambda():
    settings = Settings.from_env({"POSTBAG_ALLOWED_SENDERS": "example.org"})
    statements = policies.lambda_policy(STACK, settings)["Statement"]
    lambda_statements = [s for s in statements if any(a.startswith("lambda:") for a in s["Action"])]
    assert [(s["Action"], s["Resource"]) for s in lambda_statements] == [(
        ["lambda:GetFunctionConcurrency"],
        ["arn:aws:lambda:eu-west-1:111122223333:function:postbag-staging-on_batch_uploaded"],
    )]


def test_retention_days_reach_the_rules():
    rules = {r["ID"]: r for r in lifecycle_rules(Retention(3, 45, 90))}
    assert rules["postbag-sent-batches"]["Expiration"] == {"Days": 3}
    assert rules["postbag-failed-batches"]["Expiration"] == {"Days": 45}
    assert rules["postbag-receipts"]["Expiration"] == {"Days": 90}


@pytest.mark.parametrize("good", ["prod", "dev", "eu-1", "a" * 30])
def test_stage_names_that_fit_every_resource_name(good):
    assert stage_name(good) == good


@pytest.mark.parametrize(
    "bad", ["", "Prod", "-x", "a_b", "a/b", "a" * 31, "pröd"],
    ids=["empty", "upper", "leading-hyphen", "underscore", "slash", "too-long", "non-ascii"],
)
def test_stage_names_refused(bad):
    with pytest.raises(argparse.ArgumentTypeError):
        stage_name(bad)


# -- teardown of the SES events, where moto cannot show it (one destination per set) --


def destination(name: str, topic: str) -> dict:
    return {"Name": name, "Enabled": True, "MatchingEventTypes": ["send"],
            "SNSDestination": {"TopicARN": topic}}


def teardown_events(*destinations: dict, **expected_calls: dict) -> str:
    """``ses_events.delete`` against stubbed SES and SNS; answers what it reported."""
    ses = boto3.client("ses", region_name="eu-west-1")
    sns = boto3.client("sns", region_name="eu-west-1")
    out = io.StringIO()
    with Stubber(ses) as ses_stub, Stubber(sns) as sns_stub:
        ses_stub.add_response(
            "describe_configuration_set",
            {"ConfigurationSet": {"Name": "site-mail"}, "EventDestinations": list(destinations)},
            {"ConfigurationSetName": "site-mail",
             "ConfigurationSetAttributeNames": ["eventDestinations"]},
        )
        for operation, params in expected_calls.items():
            ses_stub.add_response(operation, {}, params)
        topic = {"TopicArn": STACK.ses_events_topic_arn}
        sns_stub.add_response("get_topic_attributes", {"Attributes": {}}, topic)
        sns_stub.add_response("delete_topic", {}, topic)
        ses_events.delete(sns, ses, STACK, "site-mail", Report(out))
        ses_stub.assert_no_pending_responses()
        sns_stub.assert_no_pending_responses()
    return out.getvalue()


def test_teardown_keeps_a_set_that_holds_the_operators_own_destinations():
    reported = teardown_events(
        destination("postbag-ledger", STACK.ses_events_topic_arn),
        destination("bounces", "arn:aws:sns:eu-west-1:111122223333:ops"),
        delete_configuration_set_event_destination={
            "ConfigurationSetName": "site-mail", "EventDestinationName": "postbag-ledger"},
    )
    assert "deleted   SES event destination site-mail/postbag-ledger" in reported
    assert "kept      SES configuration set site-mail (holds bounces)" in reported


def test_teardown_leaves_a_set_that_publishes_to_another_stage():
    """Its stage would lose SES's evidence and resend every ambiguous mail."""
    other = STACK.ses_events_topic_arn.replace("staging", "prod")
    reported = teardown_events(destination("postbag-ledger", other))
    assert "kept      SES configuration set site-mail (publishes to another topic)" in reported


# -- notify jobs: the work queue, the fan-out sender's concurrency -----------------------


def test_a_new_stage_gets_its_work_queue_and_job_functions():
    config = committed()
    chalice_config.configure_stage(config, STACK, ["example.org"], None, None)
    env = chalice_config.stage_env(config, "staging")
    assert env["POSTBAG_WORK_QUEUE"] == STACK.work_queue == "postbag-staging-work"
    assert env["POSTBAG_CHUNK_ROWS"] == "500"
    assert env["POSTBAG_MAX_CONCURRENCY"] == "2"  # Chalice's least
    settings = chalice_config.stage_settings(config, "staging")
    assert (settings.work_queue, settings.chunk_rows) == ("postbag-staging-work", 500)
    functions = config["stages"]["staging"]["lambda_functions"]
    assert functions["on_job_uploaded"] == {
        "iam_policy_file": "policy-staging-on_job_uploaded.json"
    }
    assert functions["on_work_item"] == {
        "iam_policy_file": "policy-staging-on_work_item.json", "reserved_concurrency": 2
    }


def test_max_concurrency_is_also_the_fanout_senders_reserved_concurrency():
    config = committed()
    chalice_config.configure_stage(config, STACK, ["example.org"], None, None, 8)
    stage = config["stages"]["staging"]
    assert stage["environment_variables"]["POSTBAG_MAX_CONCURRENCY"] == "8"
    assert stage["lambda_functions"]["on_work_item"]["reserved_concurrency"] == 8
    chalice_config.configure_stage(config, STACK, [], None, None)  # a later run keeps it
    assert stage["lambda_functions"]["on_work_item"]["reserved_concurrency"] == 8


@pytest.mark.parametrize("bad", [0, 1, 1001], ids=["zero", "one", "above-lambda"])
def test_max_concurrency_outside_what_sqs_takes_is_refused(bad):
    with pytest.raises(CommandError, match="--max-concurrency must be 2-1000"):
        chalice_config.configure_stage(committed(), STACK, ["example.org"], None, None, bad)


def test_a_max_concurrency_that_is_no_number_is_refused():
    config = committed()
    config["stages"]["prod"]["environment_variables"]["POSTBAG_MAX_CONCURRENCY"] = "lots"
    with pytest.raises(CommandError, match="'lots', not a number"):
        chalice_config.configure_stage(config, Stack("prod", "r", "b", "1"), [], None, None)


def test_an_operators_chunk_size_is_kept():
    config = committed()
    config["stages"]["prod"]["environment_variables"]["POSTBAG_CHUNK_ROWS"] = "200"
    chalice_config.configure_stage(config, Stack("prod", "r", "b", "1"), [], None, None)
    assert chalice_config.stage_env(config, "prod")["POSTBAG_CHUNK_ROWS"] == "200"


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_committed_stages_run_job_functions_as_chalice_will(stage):
    """Chalice's order: the stage's function entry, the stage, the top-level function
    entry, the top level. The fan-out sender's reserved concurrency must be at least
    its maximum concurrency (fewer would throttle SQS's pollers, and each throttled
    delivery counts towards the dead-letter queue)."""
    config = committed()
    env = chalice_config.stage_env(config, stage)
    maximum = int(env["POSTBAG_MAX_CONCURRENCY"])
    assert maximum >= 2
    reserved = chalice_config.function_setting(config, stage, "on_work_item",
                                               "reserved_concurrency")
    assert reserved >= maximum
    assert chalice_config.function_timeout(config, stage, "on_work_item") == 300
    assert chalice_config.function_timeout(config, stage, "on_job_uploaded") == 300
    assert env["POSTBAG_WORK_QUEUE"] == Stack(stage, "us-east-1", "b").work_queue
    for handler in ("on_job_uploaded", "on_work_item"):
        assert chalice_config.function_setting(config, stage, handler, "iam_policy_file") == (
            f"policy-{stage}-{handler}.json"
        )


def test_function_settings_follow_chalices_order():
    config = {
        "lambda_timeout": 60, "lambda_functions": {"f": {"lambda_timeout": 120}},
        "stages": {"a": {}, "b": {"lambda_timeout": 200},
                   "c": {"lambda_timeout": 200, "lambda_functions": {"f": {"lambda_timeout": 30}}}},
    }
    assert [chalice_config.function_timeout(config, s, "f") for s in "abc"] == [120, 200, 30]
    assert chalice_config.function_timeout(config, "a", "g") == 60
    assert chalice_config.function_timeout({}, "a", "g") == 60  # Chalice's default


def test_work_queue_waits_six_function_timeouts_and_dies_after_five_receives():
    attributes = work_queue.queue_attributes(STACK, 300, 4, "")
    assert attributes["VisibilityTimeout"] == "1800"
    assert attributes["MessageRetentionPeriod"] == str(4 * 24 * 3600)
    assert json.loads(attributes["RedrivePolicy"]) == {
        "deadLetterTargetArn": "arn:aws:sqs:eu-west-1:111122223333:postbag-staging-work-dlq",
        "maxReceiveCount": 5,
    }
    dlq = work_queue.dlq_attributes(STACK, "")
    assert dlq["MessageRetentionPeriod"] == str(14 * 24 * 3600)


@pytest.mark.parametrize("days", [0, 14, 15], ids=["none", "as-long-as-the-dlq", "longer"])
def test_work_queue_keeps_messages_less_long_than_its_dead_letter_queue(days):
    with pytest.raises(ValueError, match="less than its dead-letter queue"):
        work_queue.queue_attributes(STACK, 300, days, "")


@pytest.mark.parametrize(
    "kms_key,expected",
    [
        ("", {"KmsMasterKeyId": "", "SqsManagedSseEnabled": "true"}),
        ("arn:aws:kms:eu-west-1:111122223333:key/k1",
         {"KmsMasterKeyId": "arn:aws:kms:eu-west-1:111122223333:key/k1",
          "SqsManagedSseEnabled": "false"}),
    ],
    ids=["sqs-managed", "stage-key"],
)
def test_both_queues_are_encrypted_with_the_stage_key_if_any(kms_key, expected):
    for attributes in (work_queue.queue_attributes(STACK, 300, 4, kms_key),
                       work_queue.dlq_attributes(STACK, kms_key)):
        assert {k: attributes[k] for k in expected} == expected


def test_both_queues_refuse_plain_http():
    for arn, attributes in ((STACK.work_queue_arn, work_queue.queue_attributes(STACK, 300, 4, "")),
                            (STACK.work_dlq_arn, work_queue.dlq_attributes(STACK, ""))):
        policy = json.loads(attributes["Policy"])
        plain = {"aws:SecureTransport": "false"}
        assert evaluate(policy, "sqs:SendMessage", arn, plain) == DENY
        assert evaluate(policy, "sqs:ReceiveMessage", arn, plain) == DENY
        assert evaluate(policy, "sqs:SendMessage", arn, {"aws:SecureTransport": "true"}) != DENY


def test_job_alarms_watch_the_dead_letters_and_the_oldest_work():
    found = {a["AlarmName"]: a for a in alarms.alarm_definitions(STACK, 15, 6)}
    dead = found["postbag-staging-work-dead-letters"]
    assert (dead["Namespace"], dead["MetricName"], dead["Threshold"]) == (
        "AWS/SQS", "ApproximateNumberOfMessagesVisible", 0.0)
    assert dead["Dimensions"] == [{"Name": "QueueName", "Value": "postbag-staging-work-dlq"}]
    age = found["postbag-staging-work-queue-age"]
    assert (age["MetricName"], age["Threshold"]) == ("ApproximateAgeOfOldestMessage", 6 * 3600.0)
    assert age["Dimensions"] == [{"Name": "QueueName", "Value": "postbag-staging-work"}]
    assert set(found) == {STACK.alarm(what) for what in alarms.ALARMS}


@pytest.mark.parametrize(
    ("failed_days", "work_queue_days", "refused"),
    [(30, 4, False), (5, 4, False), (4, 4, True), (1, 4, True)],
    ids=["default", "one-day-longer", "equal", "shorter"],
)
def test_notify_jobs_outlive_their_work_items(failed_days, work_queue_days, refused):
    opts = Options(stage="dev", bucket="b", retention=Retention(failed=failed_days),
                   work_queue_days=work_queue_days)
    if not refused:
        check_retention(opts)
        return
    with pytest.raises(CommandError, match="--failed-days .* must be more than --work-queue-days"):
        check_retention(opts)
