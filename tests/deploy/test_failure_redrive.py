"""Re-driving invocations Lambda gave up on: the failure queue's events go back to
the function that failed (the sender, or the SES event recorder)."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.stub import Stubber
from conftest import load_fixture
from moto import mock_aws

from postbag.resources.failure_queue import redrive_invocations
from postbag.stack import Stack

STACK = Stack("test", "us-east-1", "postbag-test", "123456789012")


def on_failure_record(event: dict, function: str = STACK.function_name) -> str:
    """What Lambda sends to an on-failure destination after its last retry."""
    return json.dumps(
        {
            "version": "1.0",
            "requestContext": {
                "requestId": "e4b46cbf-b738-xmpl-8880-a18cdf61200e",
                "functionArn": f"arn:aws:lambda:us-east-1:123456789012:function:{function}:$LATEST",
                "condition": "RetriesExhausted",
                "approximateInvokeCount": 3,
            },
            "requestPayload": event,
            "responseContext": {"statusCode": 200, "functionError": "Unhandled"},
            "responsePayload": {"errorMessage": "batch b: 2 mail(s) not settled yet"},
        }
    )


def waiting(sqs, url) -> dict[str, int]:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return {
        "visible": int(attributes["ApproximateNumberOfMessages"]),
        "in_flight": int(attributes["ApproximateNumberOfMessagesNotVisible"]),
    }


@pytest.fixture
def queue():
    with mock_aws():
        sqs = boto3.client("sqs")
        url = sqs.create_queue(QueueName=STACK.failure_queue)["QueueUrl"]
        yield sqs, url


def test_each_given_up_event_is_invoked_again_and_removed(queue):
    sqs, url = queue
    event = load_fixture("events/s3-object-created.json")
    sqs.send_message(QueueUrl=url, MessageBody=on_failure_record(event))
    lambda_client = boto3.client("lambda", region_name="us-east-1")
    with Stubber(lambda_client) as stubber:
        stubber.add_response(
            "invoke",
            {"StatusCode": 202},
            {
                "FunctionName": STACK.function_name,
                "InvocationType": "Event",
                "Payload": json.dumps(event).encode(),
            },
        )
        keys = redrive_invocations(sqs, lambda_client, STACK)
        stubber.assert_no_pending_responses()
    assert keys == ["queue/0b7e9c1e-5a55-4c1d-9a43-3f1b8f2e7a01.json"]
    assert waiting(sqs, url) == {"visible": 0, "in_flight": 0}, "deleted, not just hidden"


def test_a_given_up_ses_event_goes_back_to_the_event_recorder(queue):
    sqs, url = queue
    event = {"Records": [{"EventSource": "aws:sns", "Sns": {"MessageId": "95df01b4-ee98",
                                                           "Message": "{}"}}]}
    sqs.send_message(
        QueueUrl=url, MessageBody=on_failure_record(event, STACK.events_function_name)
    )
    lambda_client = boto3.client("lambda", region_name="us-east-1")
    with Stubber(lambda_client) as stubber:
        stubber.add_response(
            "invoke",
            {"StatusCode": 202},
            {
                "FunctionName": "postbag-test-on_ses_event",
                "InvocationType": "Event",
                "Payload": json.dumps(event).encode(),
            },
        )
        assert redrive_invocations(sqs, lambda_client, STACK) == ["sns:95df01b4-ee98"]
        stubber.assert_no_pending_responses()
    assert waiting(sqs, url) == {"visible": 0, "in_flight": 0}


@pytest.mark.parametrize(
    "body",
    ["hello", on_failure_record({"Records": []}, "postbag-other-on_batch_uploaded")],
    ids=["not-json-record", "another-stage"],
)
def test_a_message_that_is_no_failure_record_stays_for_a_person(queue, capsys, body):
    sqs, url = queue
    sqs.send_message(QueueUrl=url, MessageBody=body)
    lambda_client = boto3.client("lambda", region_name="us-east-1")
    with Stubber(lambda_client):  # any invoke would fail: none is stubbed
        assert redrive_invocations(sqs, lambda_client, STACK) == []
    assert "not an on-failure record" in capsys.readouterr().err
    assert waiting(sqs, url) == {"visible": 0, "in_flight": 1}
