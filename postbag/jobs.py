"""One notify job's objects, as the operator's commands see them:
``postbag status --job``, ``postbag cancel --job`` (docs/job-format.md)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from botocore.exceptions import ClientError

from chalicelib.config import Settings
from chalicelib.formats.v2 import manifest_key
from chalicelib.progress import JobProgress, cancel_key
from postbag.aws import CommandError, error_code

# A job id is an id of the batch format (the job schema refers to that definition).
_ID = re.compile(
    json.loads(
        resources.files("chalicelib.formats").joinpath("batch-v1.schema.json").read_text("utf-8")
    )["definitions"]["id"]["pattern"]
)
MISSING = ("NoSuchKey", "404")


def job_id(value: str) -> str:
    """A job id as a key may hold it: letters, digits, ``._-``, at most 64."""
    if not _ID.match(value):
        raise CommandError(f"{value!r} is not a job id (letters, digits, . _ -; at most 64)")
    return value


def _exists(s3: Any, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if error_code(exc) in MISSING:
            return False
        raise
    return True


def require_job(s3: Any, bucket: str, job: str) -> None:
    if not _exists(s3, bucket, manifest_key(job)):
        raise CommandError(f"no job {job} in s3://{bucket} (no {manifest_key(job)})")


def status(
    s3: Any, dynamodb: Any, settings: Settings, bucket: str, job: str
) -> dict[str, Any]:
    """The job's status document, as the sender would write it now (from its
    progress item, else its last ``status.json``)."""
    progress = JobProgress(dynamodb, settings.ledger_table, settings.idempotency_namespace, s3)
    document = progress.status(bucket, job)
    if document is None:
        require_job(s3, bucket, job)
        raise CommandError(
            f"job {job} has not started: its manifest waits for the splitter "
            "(`postbag status` shows the work queue; a bad manifest goes to quarantine/jobs/)"
        )
    return document


def cancel(s3: Any, bucket: str, job: str, now: datetime | None = None) -> str:
    """Write the job's cancel marker: the splitter and the sender look for it
    before each chunk, so mail already handed to SES is not called back."""
    require_job(s3, bucket, job)
    marker = {"cancelled_at": (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ"),
              "by": "postbag cancel"}
    key = cancel_key(job)
    s3.put_object(
        Bucket=bucket, Key=key, Body=json.dumps(marker).encode(), ContentType="application/json"
    )
    return key
