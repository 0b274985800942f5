"""Notify jobs' fan-out: every recipient exactly once, whatever SQS and SES do.

S3 and DynamoDB are moto; SES is the fake (faults on demand); the work queue is
``support.jobs.FakeSqs`` (each message delivered when the test says); time is a
simulated clock. Mails are told apart by their recipient's address.
"""

from __future__ import annotations

import threading

import boto3
import pytest
from moto import mock_aws
from support.fakes import FakeSes
from support.jobs import BUCKET, SETTINGS, JobWorld, assert_each_once, recipients

from chalicelib.ledger import create_table


@pytest.fixture
def aws():
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        create_table(boto3.client("dynamodb", region_name="us-east-1"), SETTINGS.ledger_table)
        yield s3


@pytest.fixture
def world(aws, clock):
    return JobWorld(aws, FakeSes(clock=clock, sleep=clock.sleep), clock)


def emails(rows: list[dict]) -> list[str]:
    return [row["email"] for row in rows]


def test_a_job_is_sent_to_every_recipient_once_and_counted(world):
    rows = recipients(10)
    job = world.upload_job([rows[:6], rows[6:]])
    assert len(world.sqs.messages) == 3  # chunks of 4 rows: 4 + 2 of part 1, 4 of part 2
    world.drain()
    assert_each_once(world, emails(rows))
    status = world.status(job)
    assert (status["state"], status["sent"], status["remaining"]) == ("done", 10, 0)
