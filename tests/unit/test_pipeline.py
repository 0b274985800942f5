"""The pipeline's own promises, apart from the stages it wires together."""

from __future__ import annotations

import base64
import json
import tracemalloc
from datetime import UTC, datetime

from conftest import load_fixture

from chalicelib.model import Outcome, Status
from chalicelib.pipeline import Stages, process_object

ATTACHMENT_BYTES = 3 * 1024 * 1024


class GeneratedStore:
    """Builds the batch file on each read, so the pipeline holds the only reference to it."""

    def read_batch(self, bucket: str, key: str) -> tuple[bytes, datetime]:
        doc = load_fixture("batches/plain.json")
        doc["emails"] = doc["emails"][:1]
        doc["emails"][0]["attachments"] = [{
            "filename": "big.bin",
            "content_type": "application/octet-stream",
            "content_base64": base64.b64encode(bytes(ATTACHMENT_BYTES)).decode(),
        }]
        return json.dumps(doc).encode(), datetime.now(UTC)


class MeasuringDispatcher:
    """Stands in for sending: notes how much memory is held while the mails would go out."""

    def __init__(self) -> None:
        self.held_while_sending = 0

    def run(self, jobs, remaining_ms, margin_ms, queued_at=None):
        self.held_while_sending = tracemalloc.get_traced_memory()[0]
        return [Outcome(job.mail_id, Status.SENT, message_id="m") for job in jobs]


class NoteRecorder:
    def record(self, bucket, key, batch, outcomes) -> str:
        return batch.batch_id


def test_a_batch_is_held_once_in_memory_while_it_is_sent(settings):
    dispatcher = MeasuringDispatcher()
    stages = Stages(settings, GeneratedStore(), None, dispatcher, NoteRecorder())
    tracemalloc.start()
    try:
        outcomes = process_object(stages, "bucket", "queue/big.json", lambda: 900_000)
    finally:
        tracemalloc.stop()
    assert [o.status for o in outcomes] == [Status.SENT]
    file_size = len(base64.b64encode(bytes(ATTACHMENT_BYTES)))
    # The parsed strings: once. The file's bytes and its decoded text would make it three times.
    assert file_size <= dispatcher.held_while_sending < 1.5 * file_size
