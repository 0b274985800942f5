"""Write down what happened to a batch, so nothing is lost and an operator can see it.

- a receipt per batch (per mail: SES MessageId or the reason it failed);
- the batch object tagged ``postbag-state`` for the lifecycle rules;
- mails that failed for good, as a batch under the failed prefix, for re-drive;
- the unsent rest of a batch, as a continuation under the queue prefix;
- batches that cannot be read at all, moved to the quarantine prefix with an
  error document naming the batch, the field and the reason.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from chalicelib import formats
from chalicelib.config import (
    FAILED_PREFIX,
    QUARANTINE_PREFIX,
    QUEUE_PREFIX,
    RECEIPTS_PREFIX,
    STATE_DONE,
    STATE_FAILED,
    STATE_TAG,
)
from chalicelib.errors import BatchFormatError
from chalicelib.model import REDRIVABLE, SETTLED, Batch, Outcome, Status
from chalicelib.store import s3_call


def object_name(batch_id: str, redrive: int, part: int) -> str:
    """The name shared by a batch's receipt, failed-mail and continuation objects."""
    return batch_id + (f".redrive-{redrive}" if redrive else "") + (f".part-{part}" if part else "")


# S3 keys hold at most 1,024 bytes of UTF-8.
MAX_KEY_BYTES = 1024
ERROR_SUFFIX = ".error.json"
# Where a batch goes whose key, moved under the quarantine prefix, would be too long.
HASHED_QUARANTINE_PREFIX = QUARANTINE_PREFIX + "hashed/"


def json_bytes(document: Any) -> bytes:
    """``document`` as the UTF-8 JSON every object the sender writes is."""
    text = json.dumps(document, ensure_ascii=False, indent=1)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, as JSON's "\ud800" makes: keep it escaped
        return json.dumps(document, indent=1).encode("ascii")


def quarantine_name(key: str) -> tuple[str, bool]:
    """Where ``key`` is quarantined, and whether under a hashed name: ``quarantine/``
    is longer than ``queue/``, so a key near S3's limit would not fit there."""
    target = QUARANTINE_PREFIX + key.removeprefix(QUEUE_PREFIX)
    if len((target + ERROR_SUFFIX).encode("utf-8")) <= MAX_KEY_BYTES:
        return target, False
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
    return f"{HASHED_QUARANTINE_PREFIX}{digest}.json", True


def quarantine_receipt_key(key: str) -> str | None:
    """Where a quarantined batch ``queue/<batch_id>.json`` gets its receipt (the error
    document), so a site can see it; None for any other key, or one too long."""
    name = key.removeprefix(QUEUE_PREFIX)
    if name == key or "/" in name or not name.endswith(".json"):
        return None
    receipt = RECEIPTS_PREFIX + name
    return receipt if len(receipt.encode("utf-8")) <= MAX_KEY_BYTES else None


class Recorder:
    """Writes outcomes to the bucket the batch came from."""

    def __init__(self, s3_client: Any, clock: Callable[[], datetime] | None = None):
        self._s3 = s3_client
        self._clock = clock or (lambda: datetime.now(UTC))

    def put(self, bucket: str, key: str, document: Any) -> None:
        """Write ``document`` as JSON at ``key``."""
        s3_call(
            f"writing {key}",
            self._s3.put_object,
            Bucket=bucket,
            Key=key,
            Body=json_bytes(document),
            ContentType="application/json",
        )

    def record(self, bucket: str, key: str, batch: Batch, outcomes: Sequence[Outcome]) -> str:
        """Receipt, failed mails, continuation and state tag for one processed batch."""
        name = object_name(batch.batch_id, batch.redrive, batch.part)
        handed_on = {o.mail_id for o in outcomes if o.status is Status.HANDED_ON}
        if handed_on:
            self._continue(bucket, key, batch, handed_on)
        # Mails SES refused, or that an account-level stop held back; mails
        # that broke the format cannot be fixed by sending them again.
        redrivable = {
            o.mail_id for o in outcomes if o.status in REDRIVABLE and o.mail_id in batch.mail_ids
        }
        if redrivable:
            self.put(bucket, f"{FAILED_PREFIX}{name}.json", formats.subset(batch, redrivable))
        self.put(bucket, f"{RECEIPTS_PREFIX}{name}.json", self._receipt(key, batch, outcomes))
        # Only a batch whose every mail is settled may expire early; anything
        # else is kept longer for an operator.
        state = STATE_DONE if all(o.status in SETTLED for o in outcomes) else STATE_FAILED
        self.tag(bucket, key, state)
        return name

    def _receipt(self, key: str, batch: Batch, outcomes: Sequence[Outcome]) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for outcome in outcomes:
            counts[outcome.status.value] = counts.get(outcome.status.value, 0) + 1
        return {
            "batch": key,
            "batch_id": batch.batch_id,
            "redrive": batch.redrive,
            "part": batch.part,
            "recorded_at": self._clock().strftime("%Y-%m-%dT%H:%M:%SZ"),
            "counts": counts,
            "mails": [outcome.receipt() for outcome in outcomes],
        }

    def _continue(self, bucket: str, key: str, batch: Batch, mail_ids: set[str]) -> None:
        part = batch.part + 1
        origin = batch.continuation_of or key
        document = formats.subset(batch, mail_ids, continuation={"of": origin, "part": part})
        name = object_name(batch.batch_id, batch.redrive, part)
        self.put(bucket, f"{QUEUE_PREFIX}{name}.json", document)

    def tag(self, bucket: str, key: str, state: str) -> None:
        s3_call(
            f"tagging {key}",
            self._s3.put_object_tagging,
            Bucket=bucket,
            Key=key,
            Tagging={"TagSet": [{"Key": STATE_TAG, "Value": state}]},
        )

    def quarantine(self, bucket: str, key: str, error: BatchFormatError) -> str:
        """Move an unreadable batch out of the queue, with a document saying why."""
        target, hashed = quarantine_name(key)
        s3_call(
            f"copying {key} to {target}",
            self._s3.copy_object,
            Bucket=bucket,
            Key=target,
            CopySource={"Bucket": bucket, "Key": key},
        )
        document = {
            "batch": key,
            "quarantined_as": target,
            "field": error.field,
            "reason": error.reason,
            "error": str(error),
            "quarantined_at": self._clock().strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        if hashed:
            document["note"] = (
                f"the key is too long to keep under {QUARANTINE_PREFIX} (S3 keys hold "
                f"{MAX_KEY_BYTES:,} bytes): quarantined under the SHA-256 of the key"
            )
        self.put(bucket, target + ERROR_SUFFIX, document)
        receipt = quarantine_receipt_key(key)
        if receipt is not None:
            # The site may read receipts/ only: this is how its email log learns of it.
            self.put(bucket, receipt, document)
        s3_call(f"deleting {key}", self._s3.delete_object, Bucket=bucket, Key=key)
        return target
