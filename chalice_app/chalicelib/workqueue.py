"""Work items of notify jobs on SQS: what a message body holds, and sending them.

A work item names a range of rows of one part (``split.py`` makes them), so
its body is a few hundred bytes whatever the job's size; only a re-drive
carries its failed rows inline. Delivery is at least once: an item sent twice
(a retried batch whose first answer was lost) sends no mail twice, as every
recipient is claimed in the ledger first.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from functools import partial
from typing import Any

import fastjsonschema
from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.errors import BatchFormatError, QueueUnavailable
from chalicelib.formats.document import load_object
from chalicelib.formats.v1 import schema_field
from chalicelib.model import WorkItem
from chalicelib.retry import RetryPolicy

MAX_BATCH_ENTRIES = 10  # SendMessageBatch
MAX_DELAY_SECONDS = 900  # SQS's longest DelaySeconds
# SQS takes messages of up to 256 KiB; a batch call too, all entries together.
MAX_MESSAGE_BYTES = 256 * 1024
BODY_NAME = "work item"

_ID = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"}
_COUNT = {"type": "integer", "minimum": 0}
_validate = fastjsonschema.compile({
    "type": "object",
    "required": ["bucket", "job_id", "manifest_key"],
    "additionalProperties": False,
    "properties": {
        "bucket": {"type": "string", "minLength": 3, "maxLength": 63},
        "job_id": _ID,
        "manifest_key": {"type": "string", "minLength": 1, "maxLength": 1024},
        "part": _COUNT,
        "start": _COUNT,
        "end": _COUNT,
        "rows": {"type": "array", "items": {"type": "string"}},
        "redrive": _COUNT,
        "attempt": _COUNT,
    },
})


def encode(item: WorkItem) -> str:
    """The message body: compact JSON, ASCII only (SQS refuses some characters; escaped,
    every text is safe). ``BatchFormatError`` for a re-drive item with too many rows."""
    doc = asdict(item)
    if not item.rows:
        del doc["rows"]
    body = json.dumps(doc, separators=(",", ":"))
    if len(body) > MAX_MESSAGE_BYTES:
        raise BatchFormatError(
            "rows", item.job_id,
            f"a work item of {len(body):,} bytes is over SQS's {MAX_MESSAGE_BYTES:,}: "
            f"carry fewer rows in it",
        )
    return body


def packed(sizes: Sequence[int], budget: int, most: int | None = None) -> Iterator[range]:
    """Consecutive runs of ``sizes``' indexes, each adding up to at most ``budget`` and
    holding at most ``most`` (an entry over ``budget`` goes alone)."""
    first, total = 0, 0
    for i, size in enumerate(sizes):
        if i > first and (i - first == most or total + size > budget):
            yield range(first, i)
            first, total = i, 0
        total += size
    if first < len(sizes):
        yield range(first, len(sizes))


def _batches(bodies: Sequence[str]) -> Iterator[dict[str, str]]:
    """Entry id → body, at most ten and 256 KiB together (SendMessageBatch's limits)."""
    for run in packed([len(body) for body in bodies], MAX_MESSAGE_BYTES, MAX_BATCH_ENTRIES):
        yield {str(i): bodies[i] for i in run}


def decode(body: str) -> WorkItem:
    """A message body as a ``WorkItem``; ``BatchFormatError`` naming the field otherwise."""
    doc = load_object(body, BODY_NAME)
    try:
        _validate(doc)
    except fastjsonschema.JsonSchemaValueException as exc:
        job = doc.get("job_id")
        name = f"{BODY_NAME} of job {job}" if isinstance(job, str) else BODY_NAME
        field = schema_field(exc, whole="(body)")
        raise BatchFormatError(field, name, exc.message.removeprefix("data.")) from exc
    if doc.get("end", 0) < doc.get("start", 0):
        raise BatchFormatError("end", f"{BODY_NAME} of job {doc['job_id']}", "before start")
    doc["rows"] = tuple(doc.get("rows", ()))
    return WorkItem(**doc)


class WorkQueue:
    """Sends work items to one queue; ``queue_url`` may be a function that looks it up
    (called once, on first use, so that a cold start makes no call it does not need)."""

    def __init__(
        self, sqs_client: Any, queue_url: str | Callable[[], str],
        retry: RetryPolicy | None = None,
    ):
        self._sqs = sqs_client
        self._url = queue_url if isinstance(queue_url, str) else None
        self._lookup = queue_url if callable(queue_url) else None
        self._retry = retry or RetryPolicy(
            attempts=5, base_delay=0.1, max_delay=2.0, retryable=(QueueUnavailable,)
        )

    def _call(self, what: str, method: str, **params: Any) -> Any:
        try:
            return getattr(self._sqs, method)(QueueUrl=self.url(), **params)
        except (ClientError, BotoCoreError) as exc:
            raise QueueUnavailable(f"SQS failed while {what}: {exc}") from exc

    def url(self) -> str:
        if self._url is None:
            assert self._lookup is not None
            try:
                self._url = self._lookup()
            except (ClientError, BotoCoreError) as exc:
                raise QueueUnavailable(f"SQS failed while looking up the queue: {exc}") from exc
        return self._url

    def enqueue(self, items: Sequence[WorkItem]) -> None:
        """Send every item, up to ten to a call; items SQS did not take are sent again with
        backoff, and ``QueueUnavailable`` says some are still not sent."""
        for pending in _batches([encode(item) for item in items]):
            self._retry.call(partial(self._send_batch, pending))

    def _send_batch(self, pending: dict[str, str]) -> None:
        """One SendMessageBatch of ``pending`` (entry id → body); the entries sent are
        removed, and ``QueueUnavailable`` is raised while any remain."""
        entries = [{"Id": id_, "MessageBody": body} for id_, body in pending.items()]
        response = self._call("sending work items", "send_message_batch", Entries=entries)
        for sent in response.get("Successful", ()):
            pending.pop(sent["Id"], None)
        if pending:
            failed = response.get("Failed", ())
            reasons = sorted({f"{f.get('Code')}: {f.get('Message', '')}" for f in failed})
            raise QueueUnavailable(
                f"SQS did not take {len(pending)} work item(s): {'; '.join(reasons)}"
            )

    def hand_back(self, item: WorkItem, delay_seconds: int) -> None:
        """Put ``item`` back on the queue to be taken up after ``delay_seconds`` (at most
        SQS's 900)."""
        delay = max(0, min(int(delay_seconds), MAX_DELAY_SECONDS))
        body = encode(item)
        self._retry.call(lambda: self._call(
            "handing a work item back", "send_message", MessageBody=body, DelaySeconds=delay
        ))
