"""Postbag's sender: S3 batch files in, SES mail out.

The handler only wires stages together; the work is in ``chalicelib``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import cache
from typing import Any

import boto3
from botocore.config import Config
from chalice import Chalice
from chalice.app import S3Event, SNSEvent, SQSEvent

from chalicelib import feedback
from chalicelib.config import JOBS_PREFIX, QUEUE_PREFIX, Settings
from chalicelib.dispatch import Dispatcher, pool_size
from chalicelib.fanout import FanoutStages, JobCache, handle_message
from chalicelib.ledger import Ledger
from chalicelib.observe import SendMetrics, logger, metrics
from chalicelib.outcome import Recorder
from chalicelib.pipeline import Stages, process_record
from chalicelib.progress import JobProgress
from chalicelib.quota import QuotaWatch
from chalicelib.ratelimit import (
    SharedRateLimiter,
    account_rate,
    instance_share,
    reserved_concurrency,
)
from chalicelib.records import handle_record
from chalicelib.render import Renderer
from chalicelib.retry import RetryPolicy
from chalicelib.send import SesSender
from chalicelib.split import Splitter
from chalicelib.store import BatchStore
from chalicelib.tally import Tally
from chalicelib.workqueue import WorkQueue

app = Chalice(app_name="postbag")
SETTINGS = Settings.from_env()
# Instances of on_work_item at most (its SQS event source's maximum concurrency).
MAX_CONCURRENCY = int(os.environ.get("POSTBAG_MAX_CONCURRENCY", "2"))

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
SES_CLIENT_CONFIG = Config(retries={"total_max_attempts": 1}, connect_timeout=2, read_timeout=5,
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
    return Stages(
        SETTINGS, BatchStore(s3), SesSender(ses, sesv2), dispatcher, Recorder(s3), metrics
    )


@cache
def stages() -> Stages:
    """Built on first use, never at import (moto intercepts only clients made after it starts)."""
    ses = boto3.client("ses", config=SES_CLIENT_CONFIG)
    rate = account_rate(SETTINGS, ses)  # one GetSendQuota: SES allows one a second

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
    rate = account_rate(SETTINGS, ses)
    s3 = boto3.client("s3", config=S3_CLIENT_CONFIG)
    return FanoutStages(
        # Without DynamoDB: half of the account's rate, shared by at most MAX_CONCURRENCY.
        mail=_stages(ses, rate, rate / (2 * MAX_CONCURRENCY)),
        queue=work_queue(),
        progress=job_progress(),
        renderer=Renderer(),
        quota=QuotaWatch(ses),
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


@cache
def splitter() -> Splitter:
    """Built on first use, like ``stages()``."""
    s3 = boto3.client("s3", config=S3_CLIENT_CONFIG)
    return Splitter(BatchStore(s3), work_queue(), job_progress(), Recorder(s3), SETTINGS)


@app.on_s3_event(
    bucket=os.environ.get("POSTBAG_BUCKET", "postbag-local"),
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
    bucket=os.environ.get("POSTBAG_BUCKET", "postbag-local"),
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


@app.on_sns_message(topic=os.environ.get("POSTBAG_SES_EVENTS_TOPIC", "postbag-local-ses-events"))
def on_ses_event(event: SNSEvent) -> None:
    """SES's Send events, recorded as evidence in the ledger (see ledger.py)."""
    # Read every record of the raw event, as for S3 (Chalice's SNSEvent reads the first).
    sent = list(feedback.sends(event.to_dict().get("Records", [])))
    if sent:
        ledger().record_sent(sent)  # LedgerUnavailable: Lambda retries the notification
        logger.info("SES send events recorded", extra={"count": len(sent)})
