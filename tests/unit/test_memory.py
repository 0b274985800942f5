"""A batch at the size cap is parsed, built and sent within the function's 512 MB.

tracemalloc counts what Python allocates while ``process_object`` reads the
largest batch the sender takes (``store.MAX_BATCH_BYTES``) and sends its mails
on eight threads through a real boto3 SES client, whose request botocore
serialises (base64, then the form body) before a handler answers in place of
the network: the costly part of sending a 10 MB message.
"""

from __future__ import annotations

import base64
import json
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import boto3
from botocore.awsrequest import AWSResponse
from conftest import load_fixture

from chalicelib.model import Outcome, Status
from chalicelib.pipeline import RAW_BYTES_IN_FLIGHT, Stages, process_object
from chalicelib.send import SesSender
from chalicelib.store import MAX_BATCH_BYTES

MIB = 1024 * 1024
# What the Lambda runtime, boto3 and the sender's code take before any batch (measured
# as the RSS of an idle instance: about 90 MB); the rest of 512 MB is the batch's.
BUDGET = 512 * MIB - 120 * MIB
ATTACHMENT_BYTES = 7 * MIB  # just under SES's 10 MB once base64-encoded
# As many as fit under the cap once base64-encoded, with room for the JSON around them.
MAILS = (MAX_BATCH_BYTES - MIB) * 3 // 4 // ATTACHMENT_BYTES


class BigBatchStore:
    """Makes the batch file on each read (so the pipeline holds the only reference to it):
    mails with an attachment of 7 MiB each, and an astral character in a subject, which
    makes Python hold the file's decoded text at four bytes a character."""

    def read_batch(self, bucket, key):
        doc = load_fixture("batches/plain.json")
        template = doc["emails"][0]
        content = base64.b64encode(bytes(ATTACHMENT_BYTES)).decode()
        doc["emails"] = [
            {**template, "id": f"m{n}", "subject": "Big ☕ 𝄞",
             "attachments": [{"filename": f"big{n}.bin", "content_type": "application/pdf",
                              "content_base64": content}]}
            for n in range(MAILS)
        ]
        del content
        data = json.dumps(doc, ensure_ascii=False).encode()
        assert len(data) <= MAX_BATCH_BYTES
        return data, datetime.now(UTC)

    def load_attachments(self, bucket, mail):
        return [(a, a.content_base64) for a in mail.attachments]


class PoolDispatcher:
    """Sends every job on eight threads, as the engine's pool does; no ledger."""

    def run(self, jobs, remaining_ms, margin_ms, queued_at=None):
        with ThreadPoolExecutor(max_workers=8) as pool:
            ids = list(pool.map(lambda job: job.send(), jobs))
        return [Outcome(job.mail_id, Status.SENT, message_id=message_id)
                for job, message_id in zip(jobs, ids, strict=True)]


class NoteRecorder:
    def record(self, bucket, key, batch, outcomes) -> str:
        return batch.batch_id


def ses_answering_at_once():
    """A real SES client: botocore builds and serialises each request, then a handler
    answers in place of the network."""
    client = boto3.client("ses", region_name="us-east-1")

    def answer(**_):
        time.sleep(0.3)  # sends overlap, as they do over the network
        return AWSResponse("https://email.us-east-1.amazonaws.com", 200, {}, None), {
            "MessageId": "m"}

    client.meta.events.register("before-call.ses.*", answer)
    return client


class ReferencingStore(BigBatchStore):
    """A small batch of mails that each reference a 7 MiB attachment in the bucket: the
    file is small, but every send loads and builds a message of nearly 10 MB."""

    mails = 24

    def read_batch(self, bucket, key):
        doc = load_fixture("batches/plain.json")
        template = doc["emails"][0]
        doc["emails"] = [
            {**template, "id": f"m{n}", "attachments": [{
                "filename": f"big{n}.pdf", "content_type": "application/pdf",
                "s3_key": f"queue/attachments/b/m{n}/0", "size": ATTACHMENT_BYTES}]}
            for n in range(self.mails)
        ]
        return json.dumps(doc).encode(), datetime.now(UTC)

    def load_attachments(self, bucket, mail):
        return [(a, base64.b64encode(bytes(ATTACHMENT_BYTES)).decode()) for a in mail.attachments]


def peak_while_processing(stages) -> tuple[list[Outcome], int]:
    tracemalloc.start()
    try:
        outcomes = process_object(stages, "bucket", "queue/big.json", lambda: 900_000)
        return outcomes, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_batch_at_the_size_cap_stays_within_the_function_memory(settings):
    stages = Stages(settings, BigBatchStore(), SesSender(ses_answering_at_once()),
                    PoolDispatcher(), NoteRecorder())
    outcomes, peak = peak_while_processing(stages)
    assert [o.status for o in outcomes] == [Status.SENT] * MAILS
    print(f"peak {peak / MIB:.0f} MiB for a {MAX_BATCH_BYTES / MIB:.0f} MiB batch")
    assert peak < BUDGET, f"{peak / MIB:.0f} MiB"


def test_large_referenced_attachments_go_out_a_few_at_a_time(settings):
    stages = Stages(settings, ReferencingStore(), SesSender(ses_answering_at_once()),
                    PoolDispatcher(), NoteRecorder())
    outcomes, peak = peak_while_processing(stages)
    assert [o.status for o in outcomes] == [Status.SENT] * ReferencingStore.mails
    print(f"peak {peak / MIB:.0f} MiB for {ReferencingStore.mails} mails of 10 MB on 8 threads")
    # Each send holds about three times its message; the budget of raw bytes in
    # flight (pipeline.RAW_BYTES_IN_FLIGHT) keeps eight threads from holding eight.
    assert peak < 4 * RAW_BYTES_IN_FLIGHT, f"{peak / MIB:.0f} MiB"
