"""Postbag's sender: S3 batch files in, SES mail out.

The handler only wires stages together; the work is in ``chalicelib``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from chalice import Chalice
from chalice.app import CloudWatchEvent, Rate, S3Event, SNSEvent, SQSEvent

from chalicelib import feedback, heap
from chalicelib.account import AccountReport
from chalicelib.config import (
    JOBS_PREFIX,
    QUEUE_PREFIX,
    REDRIVE_REQUESTS_PREFIX,
    SUPPRESSION_INBOX_PREFIX,
    Settings,
)
from chalicelib.control import CONTROL_PREFIX, Control
from chalicelib.dispatch import MAX_WORKERS, Dispatcher, pool_size
from chalicelib.drain import Drainer
from chalicelib.errors import SesUnavailable
from chalicelib.fanout import FanoutStages, JobCache, handle_message
from chalicelib.hold import BATCH, JOB, Held, HoldBook
from chalicelib.inbox import Inbox
from chalicelib.ledger import Ledger
from chalicelib.observe import SendMetrics, logger, metrics
from chalicelib.outcome import Recorder
from chalicelib.pipeline import Stages, process_record, release_held
from chalicelib.progress import JobProgress
from chalicelib.publisher import Marks, Publisher
from chalicelib.quota import QuotaWatch
from chalicelib.ratelimit import (
    SharedRateLimiter,
    account_rate,
    instance_share,
    reserved_concurrency,
)
from chalicelib.records import handle_record
from chalicelib.redrive_request import RedriveRequests
from chalicelib.render import Renderer
from chalicelib.retry import RetryPolicy
from chalicelib.schedule import RESCHEDULE_NAME
from chalicelib.send import SesSender
from chalicelib.split import Splitter
from chalicelib.store import BatchStore
from chalicelib.suppression import SuppressionStore
from chalicelib.tally import Tally
from chalicelib.workqueue import WorkQueue

app = Chalice(app_name="postbag")
SETTINGS = Settings.from_env()
BUCKET = os.environ.get("POSTBAG_BUCKET", "postbag-local")
# Instances of on_work_item at most (its SQS event source's maximum concurrency).
MAX_CONCURRENCY = int(os.environ.get("POSTBAG_MAX_CONCURRENCY", "2"))


@app.middleware("all")
def freeze_cold_start(event: Any, get_response: Callable[[Any], Any]) -> Any:
    """After an instance's first invocation, what it cached is frozen (heap.py). Only after
    one that returned: a raised error's traceback holds the invocation's frames, whose
    cycles would be frozen for the instance's life."""
    response = get_response(event)
    heap.freeze_once(heap.FIRST_INVOCATION)
    return response


# Every call has a timeout well inside POSTBAG_DEADLINE_MARGIN_MS (botocore's
# default read timeout is 60 s). SES calls are never retried by botocore: a
# timed-out send may have been accepted (errors.SendAmbiguous), and
# RetryPolicy retries only what certainly did not reach SES.
# Three tries of one second to connect and three to read, with backoff, stay
# within the margin too.
TIMEOUTS = {"connect_timeout": 1, "read_timeout": 3}
RETRIES = {"mode": "standard", "max_attempts": 3}
# A fixed User-Agent: botocore otherwise rebuilds it (twice) for every request, from
# some twenty sanitised parts, 50 us each time: ~0.013 ms a mail in bench/fanout.py cpu.
# It only tells AWS which SDK called; it is not signed, and nothing on either side acts on it.
USER_AGENT = "postbag"
# A connection for each send thread (dispatch.MAX_WORKERS at most): botocore pools 10 by
# default, and urllib3 closes every connection past those once its send is answered, so
# a sender with more sends in flight opened a new connection (a TLS handshake on AWS)
# for two sends in five (bench/fanout.py e2e: 7,911 of 20,000 at R = 500).
# Parameter validation off, as for DynamoDB: the sender builds each request from checked
# mails and SES checks it again (a 400 fails that mail alone, where botocore's refusal
# read as SES unavailable); validating cost ~0.1 ms a mail (bench/fanout.py cpu-sdk).
# So every value must be a str, as the formats make them: unchecked, None goes as "None".
SES_CLIENT_CONFIG = Config(retries={"total_max_attempts": 1}, connect_timeout=2, read_timeout=5,
                           max_pool_connections=MAX_WORKERS, parameter_validation=False,
                           user_agent=USER_AGENT)
S3_CLIENT_CONFIG = Config(retries=RETRIES, user_agent=USER_AGENT, **TIMEOUTS)
# Parameter validation off: the ledger's requests are built by code, DynamoDB checks them
# again anyway, and validating a 100-item claim in Python cost ~0.05 ms a mail
# (bench/fanout.py cpu).
DYNAMODB_CLIENT_CONFIG = Config(retries=RETRIES, parameter_validation=False,
                                user_agent=USER_AGENT, **TIMEOUTS)
LAMBDA_CLIENT_CONFIG = Config(retries=RETRIES, user_agent=USER_AGENT, **TIMEOUTS)
# A work item sent twice sends nothing twice (the ledger): botocore may retry SQS.
SQS_CLIENT_CONFIG = Config(retries=RETRIES, user_agent=USER_AGENT, **TIMEOUTS)


@cache
def ledger() -> Ledger:
    """The instance's ledger; built on first use, like every client."""
    return Ledger.from_settings(
        SETTINGS, boto3.client("dynamodb", config=DYNAMODB_CLIENT_CONFIG)
    )


def _stages(ses: Any, rate: float, fallback_rate: float | Callable[[], float]) -> Stages:
    """The sending stages of either function: ``rate`` is the account's, shared with every
    instance through the ledger's table; ``fallback_rate`` this instance's share when
    DynamoDB cannot be asked."""
    s3 = boto3.client("s3", config=S3_CLIENT_CONFIG)
    metrics = SendMetrics()
    limiter = SharedRateLimiter(
        boto3.client("dynamodb", config=DYNAMODB_CLIENT_CONFIG), SETTINGS.ledger_table,
        SETTINGS.idempotency_namespace, rate, fallback_rate,
    )
    dispatcher = Dispatcher(
        ledger=ledger(),
        limiter=limiter,
        retry=RetryPolicy(),
        # Enough sends in flight to reach the rate while SES takes tens of ms.
        workers=pool_size(rate, SETTINGS.send_concurrency),
        metrics=metrics,
    )
    sesv2 = boto3.client("sesv2", config=SES_CLIENT_CONFIG)
    built = Stages(
        SETTINGS, BatchStore(s3), SesSender(ses, sesv2), dispatcher, Recorder(s3), metrics,
        suppression=suppression_store(), hold=hold_book(),
    )
    # Before any send; what either function builds after this, the first invocation's
    # freeze takes (heap.py).
    heap.freeze_once(heap.STAGES_BUILT)
    return built


@cache
def suppression_store() -> SuppressionStore:
    """The suppression list, checked before every send; built on first use."""
    return SuppressionStore(boto3.client("dynamodb", config=DYNAMODB_CLIENT_CONFIG),
                            SETTINGS.suppression_table)


@cache
def marks() -> Marks:
    """What the minute's run publishes (publisher.py); in the ledger's table."""
    return Marks(boto3.client("dynamodb", config=DYNAMODB_CLIENT_CONFIG), SETTINGS.ledger_table,
                 SETTINGS.idempotency_namespace)


def account_report() -> AccountReport:
    """status/account.json, from each GetSendQuota the instance reads (at most once a minute).
    One per function's stages (a Lambda instance runs one function): built with them."""
    return AccountReport(boto3.client("s3", config=S3_CLIENT_CONFIG),
                         boto3.client("sesv2", config=SES_CLIENT_CONFIG), BUCKET)


@cache
def stages() -> Stages:
    """Built on first use, never at import (moto intercepts only clients made after it starts)."""
    ses = boto3.client("ses", config=SES_CLIENT_CONFIG)
    # One GetSendQuota: SES allows one a second.
    rate = account_rate(SETTINGS, ses, account_report().publish)

    def half_share() -> float:
        # Without DynamoDB, the batch function's instances and the fan-out's take half of
        # the account's rate each: here, half of this instance's equal share. Asked for
        # only then, so that a cold start makes no Lambda call.
        return instance_share(rate, lambda: reserved_concurrency(
            boto3.client("lambda", config=LAMBDA_CLIENT_CONFIG),
            os.environ["AWS_LAMBDA_FUNCTION_NAME"],
        )) / 2

    return _stages(ses, rate, half_share)


@cache
def fanout_stages() -> FanoutStages:
    """The fan-out function's stages, built on first use like ``stages()``."""
    ses = boto3.client("ses", config=SES_CLIENT_CONFIG)
    report = account_report()
    rate = account_rate(SETTINGS, ses, report.publish)
    s3 = boto3.client("s3", config=S3_CLIENT_CONFIG)
    return FanoutStages(
        # Without DynamoDB: half of the account's rate, shared by at most MAX_CONCURRENCY.
        mail=_stages(ses, rate, rate / (2 * MAX_CONCURRENCY)),
        queue=work_queue(),
        progress=job_progress(),
        renderer=Renderer(),
        quota=QuotaWatch(ses, on_quota=report.publish),
        tally=Tally(boto3.client("dynamodb", config=DYNAMODB_CLIENT_CONFIG),
                    SETTINGS.ledger_table, SETTINGS.idempotency_namespace),
        jobs=JobCache(s3),
    )


@cache
def work_queue() -> WorkQueue:
    """Notify jobs' work items; the queue's URL is looked up from its name on first send."""
    sqs = boto3.client("sqs", config=SQS_CLIENT_CONFIG)
    return WorkQueue(sqs, lambda: sqs.get_queue_url(QueueName=SETTINGS.work_queue)["QueueUrl"])


@cache
def job_progress() -> JobProgress:
    """Notify jobs' counts (in the ledger's table) and their status.json."""
    return JobProgress(
        boto3.client("dynamodb", config=DYNAMODB_CLIENT_CONFIG), SETTINGS.ledger_table,
        SETTINGS.idempotency_namespace, boto3.client("s3", config=S3_CLIENT_CONFIG),
    )


def now() -> float:
    """Epoch seconds for everything that holds mail until a time. The stand-in and tests
    replace ``clock`` (moto fires no schedules: they advance a clock and run the drainer)."""
    return clock()


clock: Callable[[], float] = time.time


@cache
def hold_book() -> HoldBook:
    """Held batches and jobs (hold.py); built on first use, like every client."""
    return HoldBook(boto3.client("dynamodb", config=DYNAMODB_CLIENT_CONFIG), SETTINGS.ledger_table,
                    SETTINGS.idempotency_namespace, boto3.client("s3", config=S3_CLIENT_CONFIG),
                    BUCKET, now)


@cache
def quota_client() -> Any:
    """The SES client ``capacity`` asks; built on first use, like every client."""
    return boto3.client("ses", config=SES_CLIENT_CONFIG)


def capacity() -> tuple[float, float | None]:
    """What a window may count on: the account's rate and what its 24-hour quota still takes
    (one GetSendQuota, once per windowed job planned)."""
    try:
        quota = quota_client().get_send_quota()
    except (ClientError, BotoCoreError) as exc:  # the upload's event is retried
        raise SesUnavailable(f"reading the sending quota for a window: {exc}") from exc
    left = float(quota["Max24HourSend"]) - float(quota["SentLast24Hours"])
    rate = SETTINGS.max_send_rate or float(quota["MaxSendRate"])
    return rate, (left if float(quota["Max24HourSend"]) >= 0 else None)


@cache
def splitter() -> Splitter:
    """Built on first use, like ``stages()``."""
    s3 = boto3.client("s3", config=S3_CLIENT_CONFIG)
    return Splitter(BatchStore(s3), work_queue(), job_progress(), Recorder(s3), SETTINGS,
                    hold=hold_book(), capacity=capacity, clock=now)


@app.on_s3_event(
    bucket=BUCKET,
    prefix=QUEUE_PREFIX,
    suffix=".json",
    events=["s3:ObjectCreated:*"],
)
def on_batch_uploaded(event: S3Event) -> None:
    # Chalice's S3Event reads only the first record; S3 may deliver several.
    # Each record is processed whatever another one does: only transient trouble
    # makes the handler raise (so that Lambda retries), and only at the end.
    records = event.to_dict().get("Records", [])
    context: Any = event.context  # Lambda's context object (Chalice types it as a dict)
    remaining_ms = context.get_remaining_time_in_millis
    retry = None
    try:
        # Built before any record: a cold start that cannot reach SES or Lambda is
        # Lambda's to retry, not a reason to quarantine a batch.
        built = stages()
        for record in records:
            retry = process_record(built, record, remaining_ms) or retry
    finally:
        metrics.flush_metrics()
    if retry is not None:
        raise retry


@app.on_s3_event(
    bucket=BUCKET,
    prefix=JOBS_PREFIX,
    suffix="/manifest.json",
    events=["s3:ObjectCreated:*"],
)
def on_job_uploaded(event: S3Event) -> None:
    """A notify job's manifest (uploaded after its parts): split into work items on SQS."""
    # Every record, whatever the others do, as for batches; only transient trouble
    # raises, at the end. Built before any record: a cold start's trouble is retried.
    split = splitter()
    retry = None
    for record in event.to_dict().get("Records", []):
        retry = handle_record(record, split.split, split.recorder) or retry
    if retry is not None:
        raise retry


@app.on_sqs_message(
    queue=os.environ.get("POSTBAG_WORK_QUEUE", "postbag-local-work"),
    batch_size=1,
    maximum_concurrency=MAX_CONCURRENCY,
)
def on_work_item(event: SQSEvent) -> None:
    """One work item of a notify job: its recipients' mails, each sent once.

    One message per invocation: Chalice reports no partial batch, so the rows a
    run does not settle go back to the queue as a new message, and only trouble
    that must redeliver this message raises.
    """
    context: Any = event.context  # Lambda's context object (Chalice types it as a dict)
    built = fanout_stages()  # a cold start's trouble raises: the message comes again
    try:
        for record in event:
            handle_message(built, record.body, context.get_remaining_time_in_millis)
    finally:
        metrics.flush_metrics()


@cache
def feedback_stages() -> feedback.FeedbackStages:
    """The events handler's stages, built on first use."""
    return feedback.FeedbackStages(SETTINGS, suppression_store(), marks(), job_progress())


@app.on_sns_message(topic=os.environ.get("POSTBAG_SES_EVENTS_TOPIC", "postbag-local-ses-events"))
def on_ses_event(event: SNSEvent) -> None:
    """SES's events: Send events recorded as evidence in the ledger (see ledger.py); hard
    bounces and complaints put on the suppression list; every event counted (feedback.py)."""
    # Read every record of the raw event, as for S3 (Chalice's SNSEvent reads the first).
    records = event.to_dict().get("Records", [])
    sent = list(feedback.sends(records))
    if sent:
        ledger().record_sent(sent)  # LedgerUnavailable: Lambda retries the notification
        logger.info("SES send events recorded", extra={"count": len(sent)})
    # TransientError (DynamoDB): Lambda retries the notification; the list is idempotent.
    tallies = feedback.handle(feedback_stages(), records, datetime.now(UTC))
    if tallies.days:
        logger.info("SES events counted", extra={"days": tallies.days})


@app.on_s3_event(
    bucket=BUCKET,
    prefix=SUPPRESSION_INBOX_PREFIX,
    suffix=".json",
    events=["s3:ObjectCreated:*"],
)
def on_suppression_inbox(event: S3Event) -> None:
    """The site's unsubscribes (and its manual changes): applied to the suppression list."""
    inbox = suppression_inbox()
    retry = None
    for record in event.to_dict().get("Records", []):
        retry = handle_record(record, inbox.apply, inbox.recorder) or retry
    if retry is not None:
        raise retry


@cache
def suppression_inbox() -> Inbox:
    """The inbox handler's stage, built on first use."""
    s3 = boto3.client("s3", config=S3_CLIENT_CONFIG)
    return Inbox(s3, suppression_store(), marks(), Recorder(s3))


@cache
def publisher() -> Publisher:
    """The minute's publishing run, built on first use."""
    return Publisher(marks(), suppression_store(), job_progress(),
                     Recorder(boto3.client("s3", config=S3_CLIENT_CONFIG)))


@app.schedule(Rate(1, unit=Rate.MINUTES))
def publish_status(event: CloudWatchEvent) -> None:
    """Publish what changed: the suppression export, the feedback status, jobs' statuses."""
    try:
        publisher().run(BUCKET)
    finally:
        metrics.flush_metrics()


def _context_ms(event: Any) -> Callable[[], int]:
    context: Any = event.context  # Lambda's context object (Chalice types it as a dict)
    return context.get_remaining_time_in_millis


@app.schedule(Rate(1, unit=Rate.MINUTES))
def drain_held(event: CloudWatchEvent) -> None:
    """Release held batches and jobs that fell due (drain.py); a window's next chunks."""
    remaining_ms = _context_ms(event)

    def release_batch(held: Held) -> bool:
        return release_held(stages(), held, remaining_ms)

    try:
        Drainer(hold_book(), {BATCH: release_batch, JOB: splitter().release}, remaining_ms).run()
    finally:
        metrics.flush_metrics()


@cache
def control() -> Control:
    """Cancel and reschedule requests' stage (control.py), built on first use."""
    s3 = boto3.client("s3", config=S3_CLIENT_CONFIG)
    return Control(hold_book(), BatchStore(s3), Recorder(s3), SETTINGS,
                   lambda held: splitter().rescheduled(held),
                   lambda held: splitter().cancelled(held))


def _apply_requests(event: S3Event) -> None:
    requests = control()
    retry = None
    for record in event.to_dict().get("Records", []):
        retry = handle_record(record, requests.apply, requests.recorder) or retry
    if retry is not None:
        raise retry


@app.on_s3_event(bucket=BUCKET, prefix=CONTROL_PREFIX, events=["s3:ObjectCreated:*"])
def on_batch_control(event: S3Event) -> None:
    """Cancel or reschedule a held batch (control.py)."""
    _apply_requests(event)


@app.on_s3_event(bucket=BUCKET, prefix=JOBS_PREFIX, suffix="/" + RESCHEDULE_NAME,
                 events=["s3:ObjectCreated:*"])
def on_job_schedule(event: S3Event) -> None:
    """Reschedule a held job (control.py)."""
    _apply_requests(event)


@app.on_s3_event(bucket=BUCKET, prefix=JOBS_PREFIX, suffix="/cancel",
                 events=["s3:ObjectCreated:*"])
def on_job_cancel(event: S3Event) -> None:
    """Cancel a held job at once (control.py); one under way stops at the fan-out."""
    _apply_requests(event)


@cache
def redrive_requests() -> RedriveRequests:
    """The re-drive requests' stage, built on first use."""
    s3 = boto3.client("s3", config=S3_CLIENT_CONFIG)
    return RedriveRequests(s3, work_queue(), Recorder(s3))


@app.on_s3_event(bucket=BUCKET, prefix=REDRIVE_REQUESTS_PREFIX, suffix=".json",
                 events=["s3:ObjectCreated:*"])
def on_redrive_request(event: S3Event) -> None:
    """WordPress's "Send again": the failed batch or job it names re-driven (redrive_request.py)."""
    requests = redrive_requests()
    retry = None
    for record in event.to_dict().get("Records", []):
        retry = handle_record(record, requests.apply, requests.recorder) or retry
    if retry is not None:
        raise retry
