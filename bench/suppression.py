"""The sender's suppression list: how soon an unsubscribe is honoured, what a check costs.

    .venv/bin/python bench/suppression.py [--trials 5] [--poll 1.0] [--mails 1000]

On the local stand-in (moto's server, ``standin.aws``), with the real handlers in process:

1. **Unsubscribe to skip.** An inbox object (``suppressions/inbox/<uuid>.json``, as the
   plugin's endpoint writes it) is put at t0, while one-mail batches to that address are
   sent back to back. S3's notification is played by polling the inbox prefix every
   ``--poll`` seconds (on AWS S3 notifies within about a second), which hands the object
   to ``on_suppression_inbox``. Measured: t0 to the first receipt that says
   ``suppressed``. Target: under 60 s.
2. **DynamoDB calls per mail for the check.** A notify job of ``--mails`` recipients
   (chunks of 500, the default) through ``on_job_uploaded`` and ``on_work_item``, and a
   100-mail batch through ``on_batch_uploaded``; every call to the suppression table is
   counted (botocore's ``provide-client-params``). Target: no call per mail, one
   BatchGetItem (100 keys) per 100 distinct addresses of a chunk.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "chalice_app"), str(ROOT)]

BUCKET = "postbag-bench"
SUPPRESSION_TABLE = "postbag-suppression"  # the sender's default


def _prepare(aws: Any) -> Any:
    from chalicelib.ledger import create_table

    os.environ.update(aws.sender_env(BUCKET, "postbag-bench-on_batch_uploaded",
                                     POSTBAG_LEDGER_TABLE="postbag-bench-ledger",
                                     POSTBAG_MAX_SEND_RATE="500",
                                     POSTBAG_WORK_QUEUE="postbag-bench-work"))
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    boto3.client("ses").verify_domain_identity(Domain="example.org")
    create_table(boto3.client("dynamodb"), "postbag-bench-ledger")
    create_table(boto3.client("dynamodb"), SUPPRESSION_TABLE)
    import app  # after the environment: app.py reads its settings at import

    return app


def _batch(address: str, mails: int = 1) -> tuple[str, bytes]:
    batch_id = f"bench-{uuid.uuid4()}"
    doc = {"version": 1, "batch_id": batch_id, "site": {"url": "https://blog.example.org"},
           "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
           "meta": {"from": "news@example.org"},
           "emails": [{"id": f"m{n}", "to": [address if mails == 1 else f"r{n}@example.net"],
                       "subject": "s", "text": "t"} for n in range(mails)]}
    return batch_id, json.dumps(doc).encode()


def _send(app: Any, s3: Any, address: str) -> str:
    """One one-mail batch through on_batch_uploaded; its status for the address."""
    from standin.lambda_runtime import LambdaContext, s3_event

    batch_id, body = _batch(address)
    key = f"queue/{batch_id}.json"
    s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    app.on_batch_uploaded(s3_event(BUCKET, key, len(body), "e"), LambdaContext())
    receipt = json.loads(s3.get_object(Bucket=BUCKET, Key=f"receipts/{batch_id}.json")["Body"]
                         .read())
    return str(receipt["mails"][0]["status"])


def unsubscribe_to_skip(app: Any, s3: Any, trials: int, poll: float) -> list[float]:
    from standin.lambda_runtime import LocalDispatcher, Route

    inbox = LocalDispatcher(s3, BUCKET, [Route("suppressions/inbox/", ".json",
                                               app.on_suppression_inbox)])
    stop = threading.Event()

    def notify_s3() -> None:
        while not stop.wait(poll):
            inbox.run()

    poller = threading.Thread(target=notify_s3, daemon=True)
    poller.start()
    seconds = []
    try:
        for trial in range(trials):
            address = f"leaving-{trial}@example.net"
            assert _send(app, s3, address) == "sent"
            change = {"version": 1, "action": "add", "scope": "all", "address": address,
                      "reason": "unsubscribe", "source": "site",
                      "site": "https://blog.example.org",
                      "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
            started = time.monotonic()
            s3.put_object(Bucket=BUCKET, Key=f"suppressions/inbox/{uuid.uuid4()}.json",
                          Body=json.dumps(change).encode())
            while _send(app, s3, address) != "suppressed":
                if time.monotonic() - started > 120:
                    raise RuntimeError("the unsubscribe was not honoured within 120 s")
            seconds.append(time.monotonic() - started)
    finally:
        stop.set()
        poller.join()
    return seconds


class Counter:
    """Calls to the suppression table and mails handed to SES, while it is registered."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}

    def __call__(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        tables = set(params.get("RequestItems", {})) | {params.get("TableName")}
        if SUPPRESSION_TABLE in tables:
            self.calls[model.name] = self.calls.get(model.name, 0) + 1


def _job(app: Any, s3: Any, mails: int) -> int:
    """A notify job of ``mails`` recipients, split and sent in this process; how many sent."""
    from postbag.notify import notify, sender_checks
    from standin.job_run import write_spec
    from standin.lambda_runtime import LambdaContext, LocalDispatcher, Route
    from standin.sqs_runtime import create_queue, sqs_event

    sqs = boto3.client("sqs")
    url = create_queue(sqs, app.SETTINGS.work_queue, 300)
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    with tempfile.TemporaryDirectory(prefix="postbag-bench-") as folder:
        job_id = notify(s3, BUCKET, write_spec(Path(folder), mails),
                        *sender_checks(app.SETTINGS)).job_id
    LocalDispatcher(s3, BUCKET, [Route("jobs/", "/manifest.json", app.on_job_uploaded)]).run()
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1,
                                          WaitTimeSeconds=0).get("Messages", []):
        app.on_work_item(sqs_event(messages, arn), LambdaContext(300.0, "bench-on_work_item"))
        sqs.delete_message(QueueUrl=url, ReceiptHandle=messages[0]["ReceiptHandle"])
    return int((app.job_progress().status(BUCKET, job_id) or {}).get("sent", 0))


def calls_per_mail(app: Any, s3: Any, mails: int, counter: Counter) -> dict[str, Any]:
    from standin.lambda_runtime import LambdaContext, s3_event

    counter.calls.clear()
    batch_id, body = _batch("", mails=100)
    key = f"queue/{batch_id}.json"
    s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    app.on_batch_uploaded(s3_event(BUCKET, key, len(body), "e"), LambdaContext())
    batch_calls = dict(counter.calls)
    counter.calls.clear()
    sent = _job(app, s3, mails)
    return {"batch": batch_calls, "job": dict(counter.calls), "job_sent": sent}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--poll", type=float, default=1.0)
    parser.add_argument("--mails", type=int, default=1000)
    args = parser.parse_args()
    from standin.aws import LocalAws

    with LocalAws(ses_quota=(50_000, 500)) as aws:
        app = _prepare(aws)
        # Registered before the app makes its clients (each copies the session's hooks).
        counter = Counter()
        boto3.setup_default_session()
        boto3.DEFAULT_SESSION.events.register("provide-client-params.dynamodb", counter)
        s3 = boto3.client("s3")
        seconds = unsubscribe_to_skip(app, s3, args.trials, args.poll)
        print(f"unsubscribe to skip ({args.trials} trials, S3 notification played by a "
              f"{args.poll:g} s poll): median {statistics.median(seconds):.2f} s, "
              f"max {max(seconds):.2f} s (target < 60 s)")
        counted = calls_per_mail(app, s3, args.mails, counter)
        batch = sum(counted["batch"].values())
        job = sum(counted["job"].values())
        print(f"suppression table calls: batch of 100 mails {counted['batch']} = "
              f"{batch / 100:.3f} a mail; job of {args.mails:,} ({counted['job_sent']} sent) "
              f"{counted['job']} = {job / args.mails:.3f} a mail (target: no call per mail)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
