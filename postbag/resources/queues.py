"""SQS queues as provisioning sees them: found by name, created or converged to
the attributes wanted, counted, deleted.

SQS answers every attribute as a string and the JSON ones (``Policy``,
``RedrivePolicy``) re-serialised its own way, so both sides are compared as
values, never as text.
"""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from postbag.aws import error_code
from postbag.report import ABSENT, CREATED, DELETED, Report
from postbag.resources.policies import deny_insecure_transport
from postbag.stack import Stack

MISSING = ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist")
JSON_ATTRIBUTES = ("Policy", "RedrivePolicy")
DAY = 24 * 3600

# What ``counts`` reads: waiting, being worked on (received, not yet deleted).
VISIBLE = "ApproximateNumberOfMessages"
IN_FLIGHT = "ApproximateNumberOfMessagesNotVisible"


def find_url(sqs: Any, name: str) -> str | None:
    try:
        return sqs.get_queue_url(QueueName=name)["QueueUrl"]
    except ClientError as exc:
        if error_code(exc) in MISSING:
            return None
        raise


def encryption(kms_key_arn: str) -> dict[str, str]:
    """SSE with the stage's KMS key when it has one, else SQS's own keys.

    An empty ``KmsMasterKeyId`` is how SQS is told to stop using a key."""
    if kms_key_arn:
        return {"KmsMasterKeyId": kms_key_arn, "SqsManagedSseEnabled": "false"}
    return {"KmsMasterKeyId": "", "SqsManagedSseEnabled": "true"}


def tls_only_policy(queue_arn: str) -> dict[str, Any]:
    """Refuse every request that does not come over TLS (as the bucket does)."""
    return deny_insecure_transport("sqs:*", queue_arn)


def _value(name: str, value: Any) -> Any:
    if name in JSON_ATTRIBUTES and value:
        parsed = json.loads(value) if isinstance(value, str) else value
        if name == "RedrivePolicy":  # SQS may answer the count as a number or a string
            parsed["maxReceiveCount"] = int(parsed["maxReceiveCount"])
        return parsed
    return value


def _view(attributes: dict[str, str]) -> dict[str, Any]:
    return {name: _value(name, value) for name, value in attributes.items()}


def _current(sqs: Any, url: str, wanted: dict[str, str]) -> dict[str, Any]:
    got = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=list(wanted))["Attributes"]
    # An attribute never set (no KMS key) is not answered at all.
    return _view({name: got.get(name, "") for name in wanted})


def ensure(sqs: Any, stack: Stack, name: str, attributes: dict[str, str], report: Report) -> str:
    """The queue ``name`` with ``attributes``; answers its URL."""
    what = f"SQS queue {name}"
    url = find_url(sqs, name)
    if url is None:
        given = {k: v for k, v in attributes.items() if v != ""}
        url = sqs.create_queue(QueueName=name, Attributes=given, tags=stack.tags)["QueueUrl"]
        report.add(what, CREATED)
        return url
    found = url
    report.converge(
        what + " attributes",
        lambda: _current(sqs, found, attributes),
        _view(attributes),
        lambda: sqs.set_queue_attributes(QueueUrl=found, Attributes=attributes),
    )
    return url


def counts(sqs: Any, name: str, *attributes: str) -> dict[str, int] | None:
    """The queue's approximate counts by attribute name; None when there is no queue."""
    url = find_url(sqs, name)
    if url is None:
        return None
    got = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=list(attributes))["Attributes"]
    return {name: int(got[name]) for name in attributes}


def delete(sqs: Any, name: str, report: Report) -> None:
    url = find_url(sqs, name)
    if url:
        sqs.delete_queue(QueueUrl=url)
    report.add(f"SQS queue {name}", DELETED if url else ABSENT)


def json_attribute(document: dict[str, Any]) -> str:
    return json.dumps(document, separators=(",", ":"))
