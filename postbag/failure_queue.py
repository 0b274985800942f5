"""The SQS queue that receives the events of invocations Lambda gave up on."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from postbag.aws import error_code
from postbag.report import ABSENT, CREATED, DELETED, Report
from postbag.stack import Stack


def queue_url(sqs: Any, stack: Stack) -> str | None:
    try:
        return sqs.get_queue_url(QueueName=stack.failure_queue)["QueueUrl"]
    except ClientError as exc:
        if error_code(exc) in ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"):
            return None
        raise


def ensure_failure_queue(sqs: Any, stack: Stack, days: int, report: Report) -> None:
    attributes = {
        "MessageRetentionPeriod": str(days * 24 * 3600),
        "SqsManagedSseEnabled": "true",
    }
    what = f"SQS queue {stack.failure_queue}"
    url = queue_url(sqs, stack)
    if url is None:
        sqs.create_queue(QueueName=stack.failure_queue, Attributes=attributes, tags=stack.tags)
        report.add(what, CREATED)
        return
    report.converge(
        what + " attributes",
        lambda: sqs.get_queue_attributes(QueueUrl=url, AttributeNames=list(attributes))[
            "Attributes"
        ],
        attributes,
        lambda: sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes),
    )


def depth(sqs: Any, stack: Stack) -> int | None:
    """Messages waiting in the queue; None when there is no queue."""
    url = queue_url(sqs, stack)
    if url is None:
        return None
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"])


def delete_failure_queue(sqs: Any, stack: Stack, report: Report) -> None:
    url = queue_url(sqs, stack)
    if url:
        sqs.delete_queue(QueueUrl=url)
    report.add(f"SQS queue {stack.failure_queue}", DELETED if url else ABSENT)
