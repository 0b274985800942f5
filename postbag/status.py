"""``postbag status``: how many batches wait, failed or were quarantined, how
many notify work items wait, are being sent or died, and whether SES still
publishes its Send events."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from chalicelib.config import (
    ATTACHMENTS_PREFIX,
    FAILED_PREFIX,
    QUARANTINE_PREFIX,
    QUEUE_PREFIX,
    STATE_TAG,
)
from postbag.resources import failure_queue, ses_events, work_queue
from postbag.stack import Stack


def _objects(s3: Any, bucket: str, prefix: str) -> Iterator[dict]:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        yield from page.get("Contents", [])


def unsent_batch_objects(s3: Any, bucket: str) -> list[dict]:
    """Batches under the queue prefix the sender has not tagged done or failed yet.

    One tagging read per batch: fine for an operator's command, since sent
    batches expire within days.
    """
    unsent = []
    for item in _objects(s3, bucket, QUEUE_PREFIX):
        key = item["Key"]
        if not key.endswith(".json") or key.startswith(ATTACHMENTS_PREFIX):
            continue
        tags = s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]
        if not any(t["Key"] == STATE_TAG for t in tags):
            unsent.append(item)
    return unsent


def status(
    s3: Any, sqs: Any, ses: Any, stack: Stack, configuration_set: str
) -> dict[str, int | str | None]:
    unsent = unsent_batch_objects(s3, stack.bucket)
    now = datetime.now(UTC)
    return {
        "queued": len(unsent),
        # A batch waiting long is what the batches-waiting alarm is about.
        "oldest_queued_seconds": max(
            (int((now - item["LastModified"]).total_seconds()) for item in unsent), default=None
        ),
        "failed": sum(1 for _ in _objects(s3, stack.bucket, FAILED_PREFIX)),
        "quarantined": sum(1 for _ in _objects(s3, stack.bucket, QUARANTINE_PREFIX)),
        "failure_queue": failure_queue.depth(sqs, stack),
        **work_queue.status(sqs, stack),
        # Without the events, an ambiguous send cannot be settled by SES's evidence.
        "ses_events": ses_events.destination_state(ses, stack, configuration_set),
    }
