"""One record of an S3 event, whatever the other records do: what the handlers of
uploaded batches and uploaded notify jobs share.

Only transient trouble comes back (the handler raises it at the end, so Lambda
retries the event); anything unexpected quarantines the object, because a
retry would meet the same error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_plus

from chalicelib.errors import BatchUnreadable, TransientError
from chalicelib.observe import logger
from chalicelib.outcome import Recorder


def handle_record(
    record: Any, process: Callable[[str, str], object], recorder: Recorder
) -> TransientError | None:
    """``process(bucket, key)`` for one record; returns the transient error that asks
    Lambda to retry the event, raises nothing else."""
    try:
        bucket = record["s3"]["bucket"]["name"]
        key = unquote_plus(record["s3"]["object"]["key"])
    except (KeyError, TypeError) as exc:
        logger.error("not an S3 object record, skipped", extra={"error": repr(exc)})
        return None
    try:
        process(bucket, key)
    except TransientError as exc:
        logger.warning("object will be retried", extra={"key": key, "error": str(exc)})
        return exc
    except Exception as exc:
        # A bug, or input nothing checks for yet: a retry would meet it again.
        logger.exception("unexpected error; quarantining the object", extra={"key": key})
        return _quarantine(recorder, bucket, key, exc)
    return None


def _quarantine(
    recorder: Recorder, bucket: str, key: str, error: Exception
) -> TransientError | None:
    """Quarantine an object whose processing raised ``error``, an exception Postbag did not
    expect, so that the event is not retried into the same error."""
    unreadable = BatchUnreadable(
        "(batch)", key, f"processing it raised {type(error).__name__}: {error}"
    )
    try:
        target = recorder.quarantine(bucket, key, unreadable)
    except TransientError as exc:  # S3 failed: the retry finds the object where it was
        logger.warning("could not quarantine; object will be retried",
                       extra={"key": key, "error": str(exc)})
        return exc
    except Exception:
        logger.exception("could not quarantine the object", extra={"key": key})
        return None
    logger.error("object quarantined", extra={"key": key, "to": target})
    return None
