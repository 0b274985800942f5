"""``postbag wire``: what ``chalice deploy`` cannot set, done after it.

Chalice has no setting for an asynchronous invocation's on-failure
destination, so each function's event-invoke config (retries, maximum event
age, failure queue) is put here: the sender's and the job splitter's (S3
events) and the SES event recorder's (SNS deliveries), so that neither a
batch, a job nor SES's evidence of a send vanishes when its function keeps
failing. The fan-out sender is invoked by SQS, not asynchronously: its failed
work items go to the work queue's dead-letter queue instead.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from botocore.exceptions import ClientError

from postbag.aws import CommandError, error_code
from postbag.report import Report
from postbag.stack import Stack

# Lambda's own retries of a failed asynchronous invocation (0-2); the sender
# also retries inside an invocation, so two more runs are plenty.
MAX_RETRY_ATTEMPTS = 2
# Events older than this go to the failure queue instead of being run.
MAX_EVENT_AGE_SECONDS = 6 * 3600


def desired_invoke_config(stack: Stack) -> dict[str, Any]:
    return {
        "MaximumRetryAttempts": MAX_RETRY_ATTEMPTS,
        "MaximumEventAgeInSeconds": MAX_EVENT_AGE_SECONDS,
        "DestinationConfig": {"OnFailure": {"Destination": stack.queue_arn}},
    }


def function_exists(lambda_client: Any, name: str) -> bool:
    try:
        lambda_client.get_function(FunctionName=name)
    except ClientError as exc:
        if error_code(exc) == "ResourceNotFoundException":
            return False
        raise
    return True


def current_invoke_config(lambda_client: Any, name: str) -> dict[str, Any] | None:
    try:
        got = lambda_client.get_function_event_invoke_config(FunctionName=name)
    except ClientError as exc:
        if error_code(exc) == "ResourceNotFoundException":
            return None
        raise
    return {
        "MaximumRetryAttempts": got.get("MaximumRetryAttempts"),
        "MaximumEventAgeInSeconds": got.get("MaximumEventAgeInSeconds"),
        "DestinationConfig": {
            "OnFailure": {
                "Destination": got.get("DestinationConfig", {})
                .get("OnFailure", {})
                .get("Destination")
            }
        },
    }


def wire(lambda_client: Any, stack: Stack, report: Report) -> None:
    missing = [n for n in stack.async_function_names if not function_exists(lambda_client, n)]
    if missing:
        raise CommandError(
            f"not deployed: {', '.join(missing)}: "
            f"run `chalice deploy --stage {stack.stage}` first"
        )
    desired = desired_invoke_config(stack)
    for name in stack.async_function_names:
        report.converge(
            f"Lambda {name} on-failure destination {stack.failure_queue}",
            partial(current_invoke_config, lambda_client, name),
            desired,
            partial(lambda_client.put_function_event_invoke_config, FunctionName=name, **desired),
        )

