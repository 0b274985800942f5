"""``make demo``'s scheduled step: a notification held on the sender's side, released on time.

A notify job with ``send_at`` ``HOLD_SECONDS`` ahead is uploaded as ``postbag notify``
writes it; ``on_job_uploaded`` holds it (its status says ``scheduled``); the stand-in
plays EventBridge and runs ``drain_held`` every ``TICK_SECONDS`` of wall time (on AWS:
every minute); once due, the drainer splits it and ``on_work_item`` (in-process here)
sends each recipient one mail. Prints how late the release and the first mail were.
"""

from __future__ import annotations

import json
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3

from standin.aws import LocalAws
from standin.job_run import per_address, sent_mails, write_spec
from standin.lambda_runtime import LambdaContext, LocalDispatcher, LocalSesEvents, Route
from standin.schedules import Ticker
from standin.sqs_runtime import create_queue, sqs_event

HOLD_SECONDS = 20
TICK_SECONDS = 2.0
RECIPIENTS = 5
TIMEOUT_SECONDS = 90


def _upload(s3: Any, app: Any, bucket: str, send_at: datetime) -> str:
    from postbag.notify import notify, sender_checks

    with tempfile.TemporaryDirectory(prefix="postbag-demo-held-") as folder:
        spec_path = write_spec(Path(folder), RECIPIENTS)
        spec = json.loads(spec_path.read_text(encoding="utf-8"))
        spec["send_at"] = send_at.strftime("%Y-%m-%dT%H:%M:%SZ")
        spec["meta"].pop("list", None)  # no list: its rows would each need an unsubscribe_url
        spec["template"]["subject"] = "Held until " + spec["send_at"] + ": " + \
            spec["template"]["subject"]
        spec_path.write_text(json.dumps(spec), encoding="utf-8")
        return notify(s3, bucket, spec_path, *sender_checks(app.SETTINGS)).job_id


def _work(sqs: Any, url: str, arn: str, app: Any) -> int:
    """Hand what is on the work queue to on_work_item, as Lambda's poller would."""
    handled = 0
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1,
                                          WaitTimeSeconds=0).get("Messages", []):
        app.on_work_item(sqs_event(messages, arn),
                         LambdaContext(300.0, "postbag-local-on_work_item"))
        sqs.delete_message(QueueUrl=url, ReceiptHandle=messages[0]["ReceiptHandle"])
        handled += 1
    return handled


def run(aws: LocalAws, s3: Any, app: Any, events: LocalSesEvents) -> bool:
    """The held notification, end to end; True when it went out on time, each recipient once."""
    bucket = app.BUCKET
    sqs = boto3.client("sqs")
    url = create_queue(sqs, app.SETTINGS.work_queue, 300)
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    due = (datetime.now(UTC) + timedelta(seconds=HOLD_SECONDS)).replace(microsecond=0)
    print(f"\nHeld notification: {RECIPIENTS} recipients, send_at {due:%H:%M:%S} UTC "
          f"({HOLD_SECONDS} s ahead); drain_held every {TICK_SECONDS:g} s (AWS: every minute)")
    mails_before = len(sent_mails(aws.endpoint))
    job_id = _upload(s3, app, bucket, due)
    LocalDispatcher(s3, bucket, [Route("jobs/", "/manifest.json", app.on_job_uploaded)]).run()
    status = app.job_progress().status(bucket, job_id) or json.loads(s3.get_object(
        Bucket=bucket, Key=f"jobs/{job_id}/status.json")["Body"].read())
    print(f"job {job_id} uploaded: state {status['state']}, send_at {status.get('send_at')}")
    first_work = None
    deadline = time.time() + TIMEOUT_SECONDS
    with Ticker(app.drain_held).running(TICK_SECONDS) as ticker, events.pumping():
        while time.time() < deadline:
            if _work(sqs, url, arn, app) and first_work is None:
                first_work = time.time()
            status = app.job_progress().status(bucket, job_id) or {}
            if status.get("state") == "done":
                break
            time.sleep(0.2)
    mails = sent_mails(aws.endpoint, mails_before)
    counts = per_address(mails)
    late = (first_work - due.timestamp()) if first_work else float("nan")
    print(f"released by drain_held after {ticker.ticks} ticks: first work item handled "
          f"{late:+.1f} s after send_at; state {status.get('state')}, sent {status.get('sent')}")
    on_time = first_work is not None and 0 <= late <= TICK_SECONDS + 5
    once = len(counts) == RECIPIENTS and set(counts.values()) == {1}
    print(f"check: held until due and sent {'on time' if on_time else 'NOT on time'}, "
          f"{'each once' if once else 'NOT each once'}"
          + (f"; drainer errors: {ticker.errors}" if ticker.errors else ""))
    return on_time and once
