"""The notify jobs' work queue and its dead-letter queue.

The splitter (``on_job_uploaded``) sends one message per chunk of a job's
recipients; SQS invokes the fan-out sender (``on_work_item``) with each. A
message received ``MAX_RECEIVE_COUNT`` times without being deleted (the
sender failed, timed out or was throttled that often) moves to the
dead-letter queue, where an alarm sees it.
"""

from __future__ import annotations

from typing import Any

from postbag.report import Report
from postbag.resources import queues
from postbag.stack import Stack

# Receives before a work item is given up on. The sender hands a half-done item
# back as a new message (a fresh count), so five means five failed runs in a row.
MAX_RECEIVE_COUNT = 5
# AWS's advice for an SQS event source: a visibility timeout of at least six
# times the function's timeout, so that a message is not handed to a second
# instance while Lambda still retries a throttled or failed invocation.
VISIBILITY_PER_FUNCTION_TIMEOUT = 6
# SQS keeps a message's first enqueue time when it moves it to a dead-letter
# queue, and expires it by that time: the dead-letter queue keeps its messages
# longer than the work queue (the most SQS allows), so a dead item is seen for
# ten days at least.
DLQ_RETENTION_DAYS = 14


def queue_attributes(
    stack: Stack, function_timeout: int, days: int, kms_key_arn: str
) -> dict[str, str]:
    if not 1 <= days < DLQ_RETENTION_DAYS:
        raise ValueError(
            f"the work queue keeps messages 1-{DLQ_RETENTION_DAYS - 1} days (got {days}): "
            f"less than its dead-letter queue's {DLQ_RETENTION_DAYS}"
        )
    redrive = {"deadLetterTargetArn": stack.work_dlq_arn, "maxReceiveCount": MAX_RECEIVE_COUNT}
    return {
        "VisibilityTimeout": str(VISIBILITY_PER_FUNCTION_TIMEOUT * function_timeout),
        "MessageRetentionPeriod": str(days * queues.DAY),
        "RedrivePolicy": queues.json_attribute(redrive),
        "Policy": queues.json_attribute(queues.tls_only_policy(stack.work_queue_arn)),
        **queues.encryption(kms_key_arn),
    }


def dlq_attributes(stack: Stack, kms_key_arn: str) -> dict[str, str]:
    return {
        "MessageRetentionPeriod": str(DLQ_RETENTION_DAYS * queues.DAY),
        "Policy": queues.json_attribute(queues.tls_only_policy(stack.work_dlq_arn)),
        **queues.encryption(kms_key_arn),
    }


def ensure(
    sqs: Any,
    stack: Stack,
    function_timeout: int,
    days: int,
    kms_key_arn: str,
    report: Report,
) -> None:
    """The dead-letter queue first: the work queue's redrive policy names it."""
    attributes = queue_attributes(stack, function_timeout, days, kms_key_arn)
    queues.ensure(sqs, stack, stack.work_dlq, dlq_attributes(stack, kms_key_arn), report)
    queues.ensure(sqs, stack, stack.work_queue, attributes, report)


def status(sqs: Any, stack: Stack) -> dict[str, int | None]:
    """Work items waiting, being sent now, and given up on (None: no queue)."""
    work = queues.counts(sqs, stack.work_queue, queues.VISIBLE, queues.IN_FLIGHT)
    dead = queues.counts(sqs, stack.work_dlq, queues.VISIBLE)
    return {
        "work_queued": None if work is None else work[queues.VISIBLE],
        "work_in_flight": None if work is None else work[queues.IN_FLIGHT],
        "work_dead_letters": None if dead is None else dead[queues.VISIBLE],
    }


def delete(sqs: Any, stack: Stack, report: Report) -> None:
    queues.delete(sqs, stack.work_queue, report)
    queues.delete(sqs, stack.work_dlq, report)
