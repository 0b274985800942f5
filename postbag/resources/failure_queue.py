"""The SQS queue that receives the events of invocations Lambda gave up on."""

from __future__ import annotations

import json
import sys
from typing import Any

from postbag.report import Report
from postbag.resources import queues
from postbag.stack import Stack


def queue_url(sqs: Any, stack: Stack) -> str | None:
    return queues.find_url(sqs, stack.failure_queue)


def ensure_failure_queue(sqs: Any, stack: Stack, days: int, report: Report) -> None:
    attributes = {
        "MessageRetentionPeriod": str(days * queues.DAY),
        "SqsManagedSseEnabled": "true",
    }
    queues.ensure(sqs, stack, stack.failure_queue, attributes, report)


def depth(sqs: Any, stack: Stack) -> int | None:
    """Messages waiting in the queue; None when there is no queue."""
    found = queues.counts(sqs, stack.failure_queue, queues.VISIBLE)
    return None if found is None else found[queues.VISIBLE]


def delete_failure_queue(sqs: Any, stack: Stack, report: Report) -> None:
    queues.delete(sqs, stack.failure_queue, report)


def _failed_invocation(body: str, stack: Stack) -> tuple[str, dict[str, Any]] | None:
    """The function and original event of a Lambda on-failure record of this
    stage, or None if the message is not one."""
    try:
        record = json.loads(body)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    payload = record.get("requestPayload")
    context = record.get("requestContext")
    arn = context.get("functionArn", "") if isinstance(context, dict) else ""
    # arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]
    parts = arn.split(":") if isinstance(arn, str) else []
    function = parts[6] if len(parts) > 6 else ""
    if function not in stack.async_function_names:
        return None
    return (function, payload) if isinstance(payload, dict) and "Records" in payload else None


def _describe(record: dict[str, Any]) -> str:
    """A batch's key for an S3 record; ``sns:<MessageId>`` for an SES event SNS delivered."""
    if "s3" in record:
        return record["s3"]["object"]["key"]
    return f"sns:{record.get('Sns', {}).get('MessageId', '?')}"


def redrive_invocations(sqs: Any, lambda_client: Any, stack: Stack) -> list[str]:
    """Invoke the function that failed again with each event Lambda gave up on.

    Returns what was re-driven: batch keys (the sender's S3 events) and SNS
    message ids (the event recorder's SES events). Safe to repeat: the ledger
    makes a second delivery of an event send nothing twice, and recording a
    Send event again changes nothing. A message that is not an on-failure
    record of one of the stage's functions stays in the queue for a person to
    look at.
    """
    url = queue_url(sqs, stack)
    keys: list[str] = []
    while url:
        messages = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=60, WaitTimeSeconds=0
        ).get("Messages", [])
        if not messages:
            break
        for message in messages:
            failed = _failed_invocation(message["Body"], stack)
            if failed is None:
                print(
                    "left in the queue, not an on-failure record of this stage: "
                    + message["MessageId"],
                    file=sys.stderr,
                )
                continue
            function, payload = failed
            lambda_client.invoke(
                FunctionName=function,
                InvocationType="Event",
                Payload=json.dumps(payload).encode(),
            )
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            keys += [_describe(r) for r in payload["Records"]]
    return keys
