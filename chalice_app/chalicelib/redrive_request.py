"""Re-drive requests from WordPress: ``requests/redrive/<uuid>.json``, one per object.

read → check (``redrive-request-v1.schema.json``) → re-drive with ``redrive.py``,
the code ``postbag redrive`` runs (a batch: ``redrive``; a job: ``redrive_job``)
→ write the result → delete the request. A request that breaks the format is
quarantined with an error naming the field, as a bad batch is.

The result goes to ``status/redrive/<uuid>.json`` (the plugin may read
``status/*``)::

    {"version": 1, "request": "requests/redrive/<uuid>.json", "kind": "batch",
     "id": "<batch_id>", "mail_ids": ["m1"], "requested_at": "...",
     "handled_at": "...", "state": "redriven" | "nothing_failed",
     "queued": ["queue/<batch_id>.redrive-1.json"]}

(for a job, ``queued`` names its work items: ``"<job_id> redrive 1: 3 recipient(s)"``).

Replays are harmless: a request already handled is gone (skipped), and one
whose delete was lost re-drives nothing twice — ``redrive.py`` computes the
same keys after a crash, and finds nothing once the failed copies are gone.
The result is written only once (a conditional put): a replay that found
nothing cannot overwrite what the first run did.

A batch's failed mails go back together, whichever ``mail_ids`` asked: a
re-drive is per batch generation, which keeps each mail's key unique
(redrive.py). ``mail_ids`` not among the failed mails are listed in the
result's ``not_failed``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.config import REDRIVE_REQUESTS_PREFIX, STATUS_PREFIX
from chalicelib.errors import BatchFormatError
from chalicelib.formats import v1
from chalicelib.formats.document import compile_schema, validated
from chalicelib.observe import logger
from chalicelib.outcome import Recorder
from chalicelib.redrive import failed_mail_ids, redrive, redrive_job
from chalicelib.store import BatchGone, get_object, read_body, s3_call, unavailable
from chalicelib.workqueue import WorkQueue

# A request is a few hundred bytes; 1,000 mail ids at most.
MAX_REQUEST_BYTES = 128 * 1024
RESULTS_PREFIX = STATUS_PREFIX + "redrive/"
VERSION = 1

_validate = compile_schema("redrive-request-v1.schema.json")


@dataclass(frozen=True)
class Request:
    kind: str  # "batch" | "job"
    id: str
    mail_ids: tuple[str, ...]
    requested_at: datetime


def parse(data: bytes, key: str) -> Request:
    """A request's bytes (S3 key ``key``); ``BatchFormatError`` naming the field otherwise."""
    doc = validated(data, key, _validate)
    if doc["kind"] == "job" and doc["mail_ids"]:
        raise BatchFormatError("mail_ids", key, "a job's failed recipients go back together: "
                                                "leave mail_ids empty")
    return Request(doc["kind"], doc["id"], tuple(doc["mail_ids"]),
                   v1.parse_time(doc["requested_at"], key, "requested_at"))


def result_key(key: str) -> str:
    """``requests/redrive/<uuid>.json`` → ``status/redrive/<uuid>.json``."""
    return RESULTS_PREFIX + key.removeprefix(REDRIVE_REQUESTS_PREFIX)


class RedriveRequests:
    """Handles re-drive request objects; one per Lambda instance."""

    def __init__(self, s3_client: Any, queue: WorkQueue, recorder: Recorder,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self._s3 = s3_client
        self._queue = queue
        self.recorder = recorder
        self._now = now

    def apply(self, bucket: str, key: str) -> dict[str, Any] | None:
        """Handle one request; its result (``None``: gone or quarantined). Raises only
        ``TransientError`` (S3 or SQS failing: the event is retried)."""
        try:
            request = parse(read_body(get_object(self._s3, bucket, key, MAX_REQUEST_BYTES),
                                      key), key)
        except BatchGone:
            logger.info("re-drive request already handled", extra={"key": key})
            return None
        except BatchFormatError as exc:
            target = self.recorder.quarantine(bucket, key, exc)
            logger.error("re-drive request quarantined", extra={"to": target, "error": str(exc)})
            return None
        result = self._redrive(bucket, key, request)
        self._write_once(bucket, result_key(key), result)
        s3_call(f"deleting {key}", self._s3.delete_object, Bucket=bucket, Key=key)
        logger.info("re-drive request handled", extra={"key": key, "state": result["state"],
                                                      "queued": len(result["queued"])})
        return result

    def _redrive(self, bucket: str, key: str, request: Request) -> dict[str, Any]:
        not_failed: list[str] = []
        if request.kind == "job":
            queued = [f"{item.job_id} redrive {item.redrive}: {len(item.rows)} recipient(s)"
                      for item in redrive_job(self._s3, self._queue, bucket, request.id)]
        else:
            failed = failed_mail_ids(self._s3, bucket, request.id)
            not_failed = [m for m in request.mail_ids if m not in failed]
            queued = redrive(self._s3, bucket, batch_id=request.id)
        return {
            "version": VERSION, "request": key, "kind": request.kind, "id": request.id,
            "mail_ids": list(request.mail_ids),
            "requested_at": request.requested_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "handled_at": self._now().strftime("%Y-%m-%dT%H:%M:%SZ"),
            "state": "redriven" if queued else "nothing_failed",
            "queued": queued, "not_failed": not_failed,
        }

    def _write_once(self, bucket: str, key: str, result: dict[str, Any]) -> None:
        """The first run's result stays: a replay after a lost delete found nothing to do."""
        try:
            self._s3.put_object(Bucket=bucket, Key=key, IfNoneMatch="*",
                                Body=json.dumps(result).encode("utf-8"),
                                ContentType="application/json")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "412"):
                logger.info("re-drive result already written", extra={"key": key})
                return
            raise unavailable(exc, f"writing {key}") from exc
        except BotoCoreError as exc:
            raise unavailable(exc, f"writing {key}") from exc
