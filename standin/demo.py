"""``make demo``: the whole sender against a local stand-in for AWS, no account needed.

Starts moto's server on 127.0.0.1, creates the bucket, the verified sender
domain and the ledger table, uploads the example batches from ``fixtures/``
(one in the original layout, one with attachments, one that references an
attachment object, one to a Bcc list, one broken), delivers their S3 events to the Lambda
handler in-process, then prints what SES delivered and writes each mail to
``outbox/`` as an ``.eml`` file. Then a notify job: 1,000 recipients, each
with a mail of their own, written as ``postbag notify`` writes it, split by
``on_job_uploaded`` and sent by ``on_work_item`` in ``JOB_CONCURRENCY``
worker processes (``standin.job_run``); it prints the job's status, a few
of the mails and a check that each recipient got exactly one. Then the steps
in ``STEPS``: a real WordPress site (``demo_wordpress``) whose request sends a few
mails and a notify job to 1,000 subscribers, with the page's response time, the
delivered-mail table and a few rendered mails, and which then schedules a reminder,
a digest over a window and an announcement it cancels through its REST API
(``demo_schedule``); suppressions (``demo_suppression``). Every S3 notification
app.py declares is delivered, as S3 would (``lambda_runtime.app_routes``). The
server is stopped on the way out.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import urllib.request
from collections.abc import Callable
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import boto3

from standin import demo_suppression, demo_wordpress
from standin.aws import LocalAws
from standin.job_run import JobRun, run_job, write_spec
from standin.lambda_runtime import LocalDispatcher, LocalSesEvents, app_routes

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
BUCKET = "postbag-demo"
# (object key, fixture file): what a WordPress site would have uploaded.
UPLOADS = [
    (
        "queue/attachments/4c3e8a10-7d2f-4b6e-9f10-5a6b7c8d9e03/"
        "7e1d0c2b-0000-4000-8000-000000000001/0",
        "attachments/notes.txt",
    ),
    ("queue/0b7e9c1e-5a55-4c1d-9a43-3f1b8f2e7a01.json", "batches/plain.json"),
    ("queue/9d0f4d6e-2b8a-4f53-b1c2-7e5a3c9d1f02.json", "batches/with-attachments.json"),
    ("queue/4c3e8a10-7d2f-4b6e-9f10-5a6b7c8d9e03.json", "batches/attachment-reference.json"),
    ("queue/5e2b7c4d-1f0a-4c9e-8d7b-6a5f4e3d2c05.json", "batches/bcc-only.json"),
    ("queue/original-layout.json", "batches/legacy-layout.json"),
    ("queue/cut-short.json", "batches/bad/truncated.json"),
]
JOB_RECIPIENTS = 1000
# Instances of on_work_item (its SQS event source's maximum concurrency), and rows per
# work item: small enough that the job's ten items keep every instance busy.
JOB_CONCURRENCY = 4
JOB_CHUNK_ROWS = 100
MAILS_SHOWN = 3
# The demo's further steps, in order, after the example batches and the notify job: each
# ``run(aws, s3, app, events, dispatcher) -> bool`` prints what it shows and answers whether
# it worked (``dispatcher``: the demo bucket's, which remembers what it delivered). A new
# step is one line here.
STEPS: list[Callable[[LocalAws, Any, Any, LocalSesEvents, LocalDispatcher], bool]] = [
    demo_wordpress.run,  # and, on the same site, demo_schedule
    demo_suppression.run,
]


def _environment(aws: LocalAws) -> None:
    # The demo prints its own table: sender_env keeps the handler's JSON logs out of it.
    os.environ.update(
        aws.sender_env(
            BUCKET,
            "postbag-demo-on_batch_uploaded",
            POSTBAG_LEDGER_TABLE="postbag-demo-ledger",
            # The account's rate, shared by every instance (the ledger table's limiter).
            POSTBAG_MAX_SEND_RATE="200",
            POSTBAG_WORK_QUEUE="postbag-demo-work",
            POSTBAG_MAX_CONCURRENCY=str(JOB_CONCURRENCY),
            POSTBAG_CHUNK_ROWS=str(JOB_CHUNK_ROWS),
            POWERTOOLS_METRICS_NAMESPACE="Postbag",
        )
    )


def _prepare(s3: Any) -> None:
    from chalicelib.ledger import create_table

    s3.create_bucket(Bucket=BUCKET)
    boto3.client("ses").verify_domain_identity(Domain="example.org")
    create_table(boto3.client("dynamodb"), os.environ["POSTBAG_LEDGER_TABLE"])
    create_table(boto3.client("dynamodb"), "postbag-suppression")  # the sender's default
    for key, relative in UPLOADS:
        s3.put_object(Bucket=BUCKET, Key=key, Body=(FIXTURES / relative).read_bytes())


def _sent_messages(endpoint: str) -> tuple[list[dict], list[dict]]:
    with urllib.request.urlopen(endpoint + "/moto-api/data.json") as response:
        ses = json.load(response)["ses"]
    return ses.get("Message", []), ses.get("RawMessage", [])


def _simple_eml(message: dict[str, Any]) -> bytes:
    """What SES builds from a SendEmail call, near enough to read in a mail client."""
    eml = EmailMessage(policy=policy.SMTP)
    eml["From"] = message["source"]
    eml["To"] = ", ".join(message["destinations"].get("ToAddresses", []))
    eml["Subject"] = message["subject"]
    eml.set_content(message["body"], subtype="html" if "<" in message["body"] else "plain")
    return eml.as_bytes()


def _report(endpoint: str, outbox: Path) -> int:
    simple, raw = _sent_messages(endpoint)
    # (message id, kind, wire bytes, every address SES was asked to deliver to)
    rows = [
        (m["id"], "simple", _simple_eml(m), [a for v in m["destinations"].values() for a in v])
        for m in simple
    ]
    rows += [
        (m["id"], "raw", m["raw_data"].encode("utf-8", "surrogateescape"), m["destinations"])
        for m in raw
    ]
    shutil.rmtree(outbox, ignore_errors=True)
    outbox.mkdir(parents=True)
    print(f"\n{'recipient':<44} {'subject':<34} {'SES message id':<24} kind")
    for number, (message_id, kind, eml, destinations) in enumerate(rows, 1):
        parsed = message_from_bytes(eml, policy=policy.default)
        # A mail to a Bcc list has no To header: name whom SES delivered it to.
        to = str(parsed["To"] or "bcc: " + ", ".join(dict.fromkeys(destinations)))
        subject = str(parsed["Subject"])
        print(f"{to[:43]:<44} {subject[:33]:<34} {message_id[:23]:<24} {kind}")
        (outbox / f"{number:02d}-{kind}.eml").write_bytes(eml)
    print(f"\n{len(rows)} mails delivered; each is in {outbox.relative_to(ROOT)}/ as an .eml file.")
    return len(rows)


def _quarantined(s3: Any) -> dict[str, dict[str, Any]]:
    """The quarantined batches' error documents, by the batch's key."""
    listing = s3.list_objects_v2(Bucket=BUCKET, Prefix="quarantine/")
    errors = {}
    for obj in listing.get("Contents", []):
        if obj["Key"].endswith(".error.json"):
            error = json.loads(s3.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read())
            errors[error["batch"]] = error
    return errors


def _batches(s3: Any, dispatcher: LocalDispatcher) -> None:
    """The example batches' events, each said as it came out: sent, or quarantined and why
    ("ok" only for a batch whose mail went out)."""
    deliveries = dispatcher.run()
    quarantined = _quarantined(s3)
    for delivery in deliveries:
        error = quarantined.get(delivery.key)
        if delivery.error:
            state = f"failed: {delivery.error}"
        elif error:
            state = f"quarantined: field {error['field']}: {error['reason']}"
        else:
            state = "ok"
        print(f"event for {delivery.key}: {state}")


def _job(aws: LocalAws, s3: Any, app: Any, events: LocalSesEvents,
         dispatcher: LocalDispatcher) -> bool:
    """The notify job, end to end; prints what it came to. True when every recipient
    got exactly one mail."""
    print(f"\nNotify job: {JOB_RECIPIENTS:,} recipients, on_work_item in "
          f"{JOB_CONCURRENCY} worker processes")
    with tempfile.TemporaryDirectory(prefix="postbag-demo-job-") as folder:
        spec = write_spec(Path(folder), JOB_RECIPIENTS)
        recorded = events.delivered
        run = run_job(aws.endpoint, s3, boto3.client("sqs"), app, spec, dict(os.environ),
                      JOB_CONCURRENCY, events,
                      stats_path=str(Path(folder) / "invocations.ndjson"), timeout_s=120,
                      dispatcher=dispatcher)
    print(f"job {run.job_id}: {len(run.invocations)} invocations, "
          f"{run.finished - run.started:.1f} s from its manifest to an empty queue")
    print("status.json:", json.dumps(run.status, indent=2, ensure_ascii=False))
    for mail in run.mails[:MAILS_SHOWN]:
        text = "\n".join("    " + line for line in mail["text"].splitlines()[:4])
        print(f"\nTo: {', '.join(mail['destination'])}\nSubject: {mail['subject']}\n{text}")
    print(f"the job's SES events (Send, then Delivery) delivered to on_ses_event as they came: "
          f"{events.delivered - recorded:,}")
    return _check(run)


def _check(run: JobRun) -> bool:
    counts = run.counts
    once = len(counts) == run.recipients and set(counts.values()) == {1}
    verdict = "each once" if once else \
        f"NOT each once: {sum(1 for n in counts.values() if n > 1)} got more than one"
    print(f"\ncheck: {run.recipients:,} recipients, {len(run.mails):,} mails, {verdict}")
    return once


def main() -> int:
    sys.path.insert(0, str(ROOT / "chalice_app"))
    # A production account's quota (moto's is a sandbox's 200 a day), at the demo's rate;
    # the batch function's instances share it by its reserved concurrency, as deployed.
    with LocalAws(ses_quota=(50_000, 200), reserved_concurrency=2) as aws:
        print(f"Local stand-in for AWS (moto) on {aws.endpoint}, pid {aws.pid}")
        _environment(aws)
        s3 = boto3.client("s3")
        _prepare(s3)
        import app  # after the environment is set: app.py reads its settings at import

        dispatcher = LocalDispatcher(s3, BUCKET, app_routes(app))
        _batches(s3, dispatcher)
        # SES's Send events, recorded in the ledger: what settles a send whose answer was lost.
        events = LocalSesEvents(aws.endpoint, app.on_ses_event)
        print(f"SES Send events recorded in the ledger: {events.deliver()}")
        delivered = _report(aws.endpoint, ROOT / "outbox")
        job_ok = _job(aws, s3, app, events, dispatcher)
        for step in STEPS:  # each prints what it showed; all run, whatever one came to
            job_ok = step(aws, s3, app, events, dispatcher) and job_ok
    return 0 if delivered and job_ok else 1


if __name__ == "__main__":
    sys.exit(main())
