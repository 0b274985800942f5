"""Handler CPU time per mail: plain mail, and mail with a 100 KB attachment.

One batch of 1,000 mails each, handled by the real handler (parse, ledger,
render, MIME, send, record) with S3 and the DynamoDB ledger in moto's server
(another process, so its CPU is not counted) and a fake SES client that
answers at once. Prints CPU milliseconds per mail (user plus kernel);
targets: 1 ms plain, 3 ms with the attachment. The attachment is measured
twice: as a notice to many readers (one body for all) and with a subject and
body of its own per mail, which the builder's caches cannot share.

    .venv/bin/python bench/sender.py
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import io
import json
import os
import resource
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "chalice_app"), str(ROOT)]

import boto3  # noqa: E402

from standin.aws import LocalAws  # noqa: E402
from standin.lambda_runtime import LambdaContext, s3_event  # noqa: E402

MAILS = 1000
# With a 100 KB attachment each, 200 mails make a 27 MB batch: under the sender's
# 32 MiB cap on one batch file (store.MAX_BATCH_BYTES).
ATTACHED_MAILS = 200
BUCKET = "postbag-bench"
# (label, mails, attachment size, a subject and body of its own per mail, target ms)
CASES = [
    ("plain", MAILS, None, False, 1.0),
    ("100 KB attachment", ATTACHED_MAILS, 100 * 1024, False, 3.0),
    ("100 KB, own body", ATTACHED_MAILS, 100 * 1024, True, 3.0),
]


class InstantSes:
    """An SES client that accepts every mail at once, doing no work of its own."""

    def __init__(self) -> None:
        self.message_ids: list[str] = []  # list.append is atomic: safe from worker threads

    def send_email(self, **_: object) -> dict[str, str]:
        message_id = f"bench-{uuid.uuid4()}"
        self.message_ids.append(message_id)
        return {"MessageId": message_id}

    send_raw_email = send_email


def batch(mails: int, attachment: bytes | None, personal: bool = False) -> bytes:
    """``mails`` mails; ``personal`` gives each its own subject and body, as a digest would."""
    mail = {"subject": "New post: benchmarks", "html": "<p>Hello,</p><p>A new post is up.</p>" * 4}
    if attachment is not None:
        mail["attachments"] = [
            {
                "filename": "report.pdf",
                "content_type": "application/pdf",
                "content_base64": base64.b64encode(attachment).decode(),
            }
        ]
    emails = []
    for i in range(mails):
        own = {"subject": f"Your digest, reader {i}", "html": f"<p>Hello reader {i},</p>" * 4}
        emails.append({
            "id": str(uuid.uuid4()), "to": [f"reader{i}@example.net"],
            **mail, **(own if personal else {}),
        })
    return json.dumps(
        {
            "version": 1,
            "batch_id": str(uuid.uuid4()),
            "site": {"url": "https://blog.example.org"},
            "created_at": "2026-11-22T07:00:00Z",
            "meta": {"from": "Blog <news@example.org>"},
            "emails": emails,
        }
    ).encode()


def ledger_cpu_ms(ledger, chunk_size: int, mails: int = MAILS) -> float:
    """CPU of the ledger's work for ``mails`` new mails, per mail, as the dispatcher does it:
    claims a chunk at a time, a completion per mail, buffered writes flushed."""
    from chalicelib.ledger import Result

    ledger.claim(["warm-up"], 900_000)
    keys = [f"bench-ledger-{uuid.uuid4()}" for _ in range(mails)]
    started = time.process_time()
    for start in range(0, mails, chunk_size):
        chunk = keys[start:start + chunk_size]
        ledger.claim(chunk, 900_000)
        for key in chunk:
            ledger.complete(key, Result("x"))
    ledger.flush()
    return (time.process_time() - started) * 1000 / mails


def main() -> None:
    with LocalAws() as aws:
        os.environ.update(aws.sender_env(BUCKET, "postbag-bench", POSTBAG_MAX_SEND_RATE="100"))
        import app
        from chalicelib.dispatch import MIN_CHUNK
        from chalicelib.ledger import MAX_BATCH_WRITE_ITEMS, create_table
        from chalicelib.send import SesSender

        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        create_table(boto3.client("dynamodb"), app.SETTINGS.ledger_table)
        create_table(boto3.client("dynamodb"), app.SETTINGS.suppression_table)
        fake = InstantSes()
        stages = dataclasses.replace(app.stages(), sender=SesSender(fake))
        app.stages = lambda: stages
        ledger_ms = ledger_cpu_ms(stages.dispatcher._ledger, MIN_CHUNK)
        print(
            f"{'mail':<20} {'mails':>6} {'CPU ms/mail':>12} {'target':>8} "
            f"{'without ledger':>15} {'kernel':>8}"
        )
        for label, mails, size, personal, target in CASES:
            key = f"queue/{label.replace(' ', '-').replace(',', '')}.json"
            body = batch(mails, None if size is None else os.urandom(size), personal)
            s3.put_object(Bucket=BUCKET, Key=key, Body=body)
            before = len(fake.message_ids)
            started = resource.getrusage(resource.RUSAGE_SELF)
            with contextlib.redirect_stdout(io.StringIO()):  # the metrics' EMF lines
                app.on_batch_uploaded(s3_event(BUCKET, key, len(body), "bench"), LambdaContext(900))
            used = resource.getrusage(resource.RUSAGE_SELF)
            sent = len(fake.message_ids) - before
            assert sent == mails, f"{sent} of {mails} sent"
            user_ms = (used.ru_utime - started.ru_utime) * 1000 / sent
            kernel_ms = (used.ru_stime - started.ru_stime) * 1000 / sent
            per_mail = user_ms + kernel_ms
            print(
                f"{label:<20} {sent:>6} {per_mail:>12.3f} {target:>8.1f} "
                f"{per_mail - ledger_ms:>15.3f} {kernel_ms:>8.3f}"
            )
        print(
            f"\nledger: claims {MIN_CHUNK} at a time (TransactWriteItems), completions "
            f"{MAX_BATCH_WRITE_ITEMS} per BatchWriteItem: {ledger_ms:.3f} ms/mail\n"
            "kernel: CPU the kernel spent for the handler, mostly first touches of fresh "
            "memory; it is highest on a machine that has not used its memory yet"
        )


if __name__ == "__main__":
    main()
