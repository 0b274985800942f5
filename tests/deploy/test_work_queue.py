"""The work queue and its dead-letter queue converged under moto (in process): created,
left alone, switched between SQS's keys and the stage's KMS key, counted, deleted."""

from __future__ import annotations

import io
import json
import re

import boto3
import pytest
from moto import mock_aws

from postbag.report import Report
from postbag.resources import work_queue
from postbag.stack import Stack

STACK = Stack("jobs", "us-east-1", "site-mail", "123456789012")
KEY = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


@pytest.fixture
def sqs():
    with mock_aws():
        yield boto3.client("sqs", region_name="us-east-1")


def ensure(sqs, kms_key: str = "", days: int = 4) -> list[tuple[str, str]]:
    out = io.StringIO()
    work_queue.ensure(sqs, STACK, 300, days, kms_key, Report(out))
    return re.findall(r"^  (\w+)\s+(.+)$", out.getvalue(), re.MULTILINE)


def attributes(sqs, name: str) -> dict[str, str]:
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]


def test_created_once_then_left_alone(sqs):
    assert ensure(sqs) == [("created", "SQS queue postbag-jobs-work-dlq"),
                           ("created", "SQS queue postbag-jobs-work")]
    assert ensure(sqs) == [("unchanged", "SQS queue postbag-jobs-work-dlq attributes"),
                           ("unchanged", "SQS queue postbag-jobs-work attributes")]
    work = attributes(sqs, "postbag-jobs-work")
    assert json.loads(work["RedrivePolicy"])["deadLetterTargetArn"] == (
        attributes(sqs, "postbag-jobs-work-dlq")["QueueArn"])
    assert work["VisibilityTimeout"] == "1800"


def test_changed_options_update_both_queues_and_converge(sqs):
    ensure(sqs)
    assert [action for action, _ in ensure(sqs, KEY)] == ["updated", "updated"]
    for name in ("postbag-jobs-work", "postbag-jobs-work-dlq"):
        found = attributes(sqs, name)
        assert (found["KmsMasterKeyId"], found["SqsManagedSseEnabled"]) == (KEY, "false")
    assert [action for action, _ in ensure(sqs, KEY)] == ["unchanged", "unchanged"]
    assert [action for action, _ in ensure(sqs, "", days=7)] == ["updated", "updated"]
    work = attributes(sqs, "postbag-jobs-work")
    assert work["SqsManagedSseEnabled"] == "true" and not work.get("KmsMasterKeyId")
    assert work["MessageRetentionPeriod"] == str(7 * 24 * 3600)


def test_counts_waiting_in_flight_and_dead(sqs):
    assert work_queue.status(sqs, STACK) == {
        "work_queued": None, "work_in_flight": None, "work_dead_letters": None}
    ensure(sqs)
    url = sqs.get_queue_url(QueueName="postbag-jobs-work")["QueueUrl"]
    for body in ("a", "b"):
        sqs.send_message(QueueUrl=url, MessageBody=body)
    sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1)
    assert work_queue.status(sqs, STACK) == {
        "work_queued": 1, "work_in_flight": 1, "work_dead_letters": 0}


def test_deleted_then_reported_absent(sqs):
    ensure(sqs)
    out = io.StringIO()
    work_queue.delete(sqs, STACK, Report(out))
    work_queue.delete(sqs, STACK, Report(out))
    assert re.findall(r"^  (\w+) ", out.getvalue(), re.MULTILINE) == [
        "deleted", "deleted", "absent", "absent"]
