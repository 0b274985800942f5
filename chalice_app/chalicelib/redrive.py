"""Re-drive: put mails that failed for good back in the queue, once the cause is fixed.

(Notify jobs' failed recipients: ``redrive_job``, at the end.)

The outcome stage writes them as version 1 batches under the failed prefix
(``failed/<batch_id>[.redrive-N][.part-N].json``, reasons in the receipt).
Re-driving one generation of a batch (the failed files with the same batch id
and ``redrive`` count, one per continuation part) writes a single batch
``queue/<batch_id>.redrive-<N+1>.json`` holding all their mails with
``redrive`` = N+1, then deletes the failed copies.

Because ``redrive`` is part of each mail's idempotency key, the re-driven
mails are sent once more, and only once: replaying the re-driven file, or
re-driving again after a crash left a failed copy behind, computes the same
N+1 and the same keys. Re-driving each generation on its own (never merging
generations) keeps a mail that already went out at N+1 from getting a new key.
"""

from __future__ import annotations

import json
from typing import Any

from chalicelib import formats
from chalicelib.config import FAILED_PREFIX, JOBS_PREFIX, QUEUE_PREFIX
from chalicelib.errors import BatchFormatError
from chalicelib.formats.document import decode_batch, load_object
from chalicelib.model import WorkItem
from chalicelib.observe import logger
from chalicelib.outcome import object_name
from chalicelib.store import s3_call
from chalicelib.workqueue import WorkQueue, packed

Document = dict[str, Any]


def _failed_keys(s3_client: Any, bucket: str, prefix: str) -> list[str]:
    paginator = s3_client.get_paginator("list_objects_v2")
    pages = s3_call(
        f"listing {prefix}", lambda: list(paginator.paginate(Bucket=bucket, Prefix=prefix))
    )
    found = (o["Key"] for page in pages for o in page.get("Contents", ()))
    return [key for key in found if key.endswith(".json")]


def _read(s3_client: Any, bucket: str, key: str) -> Document:
    body = s3_call(f"reading {key}", s3_client.get_object, Bucket=bucket, Key=key)["Body"].read()
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise BatchFormatError("(document)", key, f"not a JSON batch: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("batch_id"), str):
        raise BatchFormatError("batch_id", key, "a failed-mail batch needs its batch_id")
    return doc


def _failed_batches(
    s3_client: Any, bucket: str, batch_id: str | None
) -> dict[tuple[str, int], list[tuple[str, Document]]]:
    """The failed documents of every batch (or only ``batch_id``'s), by generation."""
    generations: dict[tuple[str, int], list[tuple[str, Document]]] = {}
    for key in _failed_keys(s3_client, bucket, FAILED_PREFIX + (batch_id or "")):
        if key.startswith(FAILED_PREFIX + JOBS_PREFIX):  # notify jobs': redrive_job's
            continue
        doc = _read(s3_client, bucket, key)
        if batch_id is None or doc["batch_id"] == batch_id:  # the prefix also matches b10 for b1
            generations.setdefault((doc["batch_id"], doc.get("redrive", 0)), []).append((key, doc))
    return generations


def failed_mail_ids(s3_client: Any, bucket: str, batch_id: str) -> set[str]:
    """The ids of ``batch_id``'s mails that wait under the failed prefix."""
    return {str(mail.get("id")) for files in _failed_batches(s3_client, bucket, batch_id).values()
            for _, doc in files for mail in doc.get("emails", []) if isinstance(mail, dict)}


def redrive(s3_client: Any, bucket: str, batch_id: str | None = None) -> list[str]:
    """Re-drive every failed batch (or only ``batch_id``'s); returns the queue keys written.
    (``postbag redrive`` and WordPress's requests, ``redrive_request.py``.)"""
    generations = _failed_batches(s3_client, bucket, batch_id)
    written = []
    for (batch, count), files in sorted(generations.items()):
        target = f"{QUEUE_PREFIX}{object_name(batch, count + 1, 0)}.json"
        merged = formats.merge([doc for _, doc in files], count + 1, files[0][0])
        body = json.dumps(merged, ensure_ascii=False)
        s3_call(f"writing {target}", s3_client.put_object, Bucket=bucket, Key=target,
            Body=body.encode("utf-8"), ContentType="application/json")
        # Deleted only once the queue copy exists: a crash in between leaves a
        # failed copy whose next re-drive writes the same batch with the same keys.
        for key, _ in files:
            s3_call(f"deleting {key}", s3_client.delete_object, Bucket=bucket, Key=key)
        logger.info("re-driven", extra={"batch_id": batch, "redrive": count + 1, "key": target,
                                        "from": [key for key, _ in files]})
        written.append(target)
    return written


# --- notify jobs --------------------------------------------------------------------

# Rows per re-drive work item: their text travels inline, within SQS's 256 KiB.
REDRIVE_ITEM_BYTES = 192 * 1024


def _row_items(bucket: str, first: Document, rows: list[str], redrive: int) -> list[WorkItem]:
    """``rows`` as work items of inline rows, each under ``REDRIVE_ITEM_BYTES``."""
    # JSON escaping and the comma take about 8 bytes a row more.
    runs = packed([len(row) + 8 for row in rows], REDRIVE_ITEM_BYTES)
    return [
        WorkItem(bucket=bucket, job_id=first["job_id"], manifest_key=first["manifest_key"],
                 start=0, end=len(run), rows=tuple(rows[run.start:run.stop]), redrive=redrive)
        for run in runs
    ]


def redrive_job(s3_client: Any, queue: WorkQueue, bucket: str, job_id: str) -> list[WorkItem]:
    """Put a notify job's failed recipients back on the work queue; returns the items sent.

    The fan-out sender writes them under ``failed/jobs/<job_id>/redrive-<N>/``;
    each generation N goes back as work items of inline rows with ``redrive``
    N+1 (part of each recipient's ledger key, so they are sent once more, and
    only once: re-driving again after a crash left the documents behind
    makes the same items, the same keys and the same tally). The documents
    are deleted once their items are on the queue.
    """
    generations: dict[int, list[tuple[str, Document]]] = {}
    prefix = f"{FAILED_PREFIX}{JOBS_PREFIX}{job_id}/"
    for key in sorted(_failed_keys(s3_client, bucket, prefix)):
        doc = _read_failed_rows(s3_client, bucket, key, job_id)
        generations.setdefault(doc["redrive"], []).append((key, doc))
    sent: list[WorkItem] = []
    for count, files in sorted(generations.items()):
        rows = [row for _, doc in files for row in doc["rows"]]
        items = _row_items(bucket, files[0][1], rows, count + 1)
        queue.enqueue(items)
        for key, _ in files:
            s3_call(f"deleting {key}", s3_client.delete_object, Bucket=bucket, Key=key)
        logger.info("job re-driven", extra={"job_id": job_id, "redrive": count + 1,
                                            "rows": len(rows), "items": len(items)})
        sent += items
    return sent


def _read_failed_rows(s3_client: Any, bucket: str, key: str, job_id: str) -> Document:
    body = s3_call(f"reading {key}", s3_client.get_object, Bucket=bucket, Key=key)["Body"].read()
    doc = load_object(decode_batch(body, key), key)
    if doc.get("job_id") != job_id or not isinstance(doc.get("rows"), list) \
            or not isinstance(doc.get("redrive"), int) \
            or not isinstance(doc.get("manifest_key"), str):
        raise BatchFormatError("(document)", key, "not a failed-recipients document of the job")
    return doc
