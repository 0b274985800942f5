"""``postbag status``: how many batches wait, were sent, failed or were
quarantined, how many notify work items wait, are being sent or died, and
whether SES still publishes its Send events."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from chalicelib.config import (
    ATTACHMENTS_PREFIX,
    FAILED_PREFIX,
    QUARANTINE_PREFIX,
    QUEUE_PREFIX,
    STATE_DONE,
    STATE_TAG,
)
from chalicelib.hold import MARKER_PREFIX
from chalicelib.outcome import ERROR_SUFFIX
from postbag.resources import failure_queue, ses_events, work_queue
from postbag.stack import Stack


def _objects(s3: Any, bucket: str, prefix: str) -> Iterator[dict]:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        yield from page.get("Contents", [])


def batch_states(s3: Any, bucket: str) -> tuple[list[dict], int]:
    """Batches under the queue prefix the sender has not tagged done or failed yet,
    and how many it tagged done (sent; kept ``--processed-days``).

    One tagging read per batch: fine for an operator's command, since sent
    batches expire within days.
    """
    unsent, sent = [], 0
    for item in _objects(s3, bucket, QUEUE_PREFIX):
        key = item["Key"]
        if not key.endswith(".json") or key.startswith(ATTACHMENTS_PREFIX):
            continue
        tags = s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]
        state = next((t["Value"] for t in tags if t["Key"] == STATE_TAG), None)
        if state is None:
            unsent.append(item)
        sent += state == STATE_DONE
    return unsent, sent


def unsent_batch_objects(s3: Any, bucket: str) -> list[dict]:
    return batch_states(s3, bucket)[0]


def quarantined_keys(s3: Any, bucket: str) -> list[str]:
    """Quarantined batches and jobs, not the error documents written beside each."""
    return [item["Key"] for item in _objects(s3, bucket, QUARANTINE_PREFIX)
            if not item["Key"].endswith(ERROR_SUFFIX)]


def held_keys(s3: Any, bucket: str) -> list[str]:
    """Markers of batches and jobs held until their time (chalicelib/hold.py): mail not
    sent yet."""
    return [item["Key"] for item in _objects(s3, bucket, MARKER_PREFIX)]


def failed_keys(s3: Any, bucket: str) -> list[str]:
    """Failed mail kept for a re-drive: batches and notify jobs' failed recipients."""
    return [item["Key"] for item in _objects(s3, bucket, FAILED_PREFIX)]


def status(
    s3: Any, sqs: Any, ses: Any, stack: Stack, configuration_set: str
) -> dict[str, int | str | None]:
    unsent, sent = batch_states(s3, stack.bucket)
    now = datetime.now(UTC)
    return {
        "queued": len(unsent),
        # A batch waiting long is what the batches-waiting alarm is about.
        "oldest_queued_seconds": max(
            (int((now - item["LastModified"]).total_seconds()) for item in unsent), default=None
        ),
        "sent": sent,
        "failed": len(failed_keys(s3, stack.bucket)),
        "quarantined": len(quarantined_keys(s3, stack.bucket)),
        "failure_queue": failure_queue.depth(sqs, stack),
        **work_queue.status(sqs, stack),
        # Without the events, an ambiguous send cannot be settled by SES's evidence.
        "ses_events": ses_events.destination_state(ses, stack, configuration_set),
    }
