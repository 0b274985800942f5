"""``postbag wire``: what ``chalice deploy`` cannot set, done after it.

Chalice has no setting for an asynchronous invocation's on-failure
destination, so the function's event-invoke config (retries, maximum event
age, failure queue) is put here.
"""

from __future__ import annotations

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
    name = stack.function_name
    if not function_exists(lambda_client, name):
        raise CommandError(
            f"function {name} not found: run `chalice deploy --stage {stack.stage}` first"
        )
    desired = desired_invoke_config(stack)
    report.converge(
        f"Lambda {name} on-failure destination {stack.failure_queue}",
        lambda: current_invoke_config(lambda_client, name),
        desired,
        lambda: lambda_client.put_function_event_invoke_config(FunctionName=name, **desired),
    )

