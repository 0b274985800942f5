"""The site's suppression changes: ``suppressions/inbox/<uuid>.json``, one per object.

read → parse and check → apply to the suppression list (only if newer than what it
holds for that address and scope) → mark the export for the minute's run
(``publisher.py``) → delete the object. A document that breaks the format is
quarantined with an error naming the field, as a bad batch is. Replays are
harmless: an object already gone is skipped, and a change already applied (or
older than the one stored) writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from chalicelib.errors import BatchFormatError
from chalicelib.formats.suppression import parse_inbox
from chalicelib.observe import logger
from chalicelib.outcome import Recorder
from chalicelib.publisher import Marks
from chalicelib.store import BatchGone, get_object, read_body, s3_call
from chalicelib.suppression import SuppressionStore

# An inbox document is a few hundred bytes.
MAX_DOCUMENT_BYTES = 16 * 1024
# How far ahead of the sender's clock a change's time may be: a change dated in the
# future would win over every later one until then.
MAX_CLOCK_SKEW = timedelta(minutes=5)


class Inbox:
    """Applies inbox objects; one per Lambda instance."""

    def __init__(self, s3_client: Any, store: SuppressionStore, marks: Marks,
                 recorder: Recorder, now: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self._s3 = s3_client
        self._store = store
        self._marks = marks
        self.recorder = recorder
        self._now = now

    def apply(self, bucket: str, key: str) -> bool | None:
        """Apply one object; whether it changed the list (``None``: gone or quarantined).
        Raises only ``TransientError`` (S3 or DynamoDB failing: the event is retried)."""
        try:
            data = read_body(get_object(self._s3, bucket, key, MAX_DOCUMENT_BYTES), key)
            change = parse_inbox(data, key)
            if change.at > self._now() + MAX_CLOCK_SKEW:
                raise BatchFormatError("at", key, f"{change.at.isoformat()} is in the future")
        except BatchGone:
            logger.info("inbox object already applied", extra={"key": key})
            return None
        except BatchFormatError as exc:
            target = self.recorder.quarantine(bucket, key, exc)
            logger.error("inbox document quarantined", extra={"to": target, "error": str(exc)})
            return None
        changed = self._store.apply(change)
        if changed:
            self._marks.mark(export=True)
        s3_call(f"deleting {key}", self._s3.delete_object, Bucket=bucket, Key=key)
        logger.info("inbox change applied" if changed else "inbox change older, skipped",
                    extra={"key": key, "scope": change.scope, "action": change.action})
        return changed
