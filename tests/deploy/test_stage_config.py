"""Units of the operator's tool that need no AWS: stage settings, names, rules."""

from __future__ import annotations

import argparse
import copy

import pytest

from chalicelib.config import Settings
from postbag import chalice_config
from postbag.cli import stage_name
from postbag.resources import policies
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
    assert "POSTBAG_RESERVED_CONCURRENCY" not in env  # the sender asks Lambda (ratelimit)
    stage = config["stages"]["staging"]
    assert (stage["reserved_concurrency"], stage["iam_policy_file"]) == (4, "policy-staging.json")
    assert stage["tags"]["postbag-stage"] == "staging"


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
    assert {"failed/", "quarantine/", "receipts/", "queue/attachments/"} <= prefixes
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
