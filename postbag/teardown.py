"""``postbag teardown``: removes what ``postbag provision`` (and ``wire``) created.

The function itself belongs to Chalice: ``chalice delete`` first, so that it
can still remove its bucket notification. Files under ``.chalice/`` are kept.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from chalicelib.config import Settings
from postbag import alarms, wordpress
from postbag.aws import Aws, CommandError, error_code
from postbag.bucket import bucket_exists, empty_and_delete_bucket
from postbag.provision import queue_url
from postbag.report import ABSENT, DELETED, Report
from postbag.stack import Stack
from postbag.status import unsent_batches
from postbag.wire import function_exists


def teardown(aws: Aws, stack: Stack, settings: Settings, force: bool, report: Report) -> None:
    s3 = aws.client("s3")
    has_bucket = bucket_exists(s3, stack.bucket)
    _refuse_if_unsafe(aws, stack, settings, has_bucket, force)
    alarms.delete_alarms(aws.client("cloudwatch"), stack, report)
    alarms.delete_topic(aws.client("sns"), stack, report)
    wordpress.delete_all(aws.client("iam"), stack, report)
    _delete_queue(aws.client("sqs"), stack, report)
    _delete_table(aws.client("dynamodb"), stack, report)
    if has_bucket:
        empty_and_delete_bucket(s3, stack.bucket)
    report.add(f"s3://{stack.bucket}", DELETED if has_bucket else ABSENT)


def _refuse_if_unsafe(
    aws: Aws, stack: Stack, settings: Settings, has_bucket: bool, force: bool
) -> None:
    if function_exists(aws.client("lambda"), stack.function_name):
        raise CommandError(
            f"function {stack.function_name} still exists: run "
            f"`chalice delete --stage {stack.stage}` in chalice_app/ first"
        )
    if not has_bucket or force:
        return
    unsent = unsent_batches(aws.client("s3"), stack.bucket, settings)
    if unsent:
        raise CommandError(
            f"s3://{stack.bucket} still holds {len(unsent)} unsent batch(es) under "
            f"{settings.queue_prefix} (e.g. {unsent[0]}): let them send, or pass --force"
        )


def _delete_queue(sqs: Any, stack: Stack, report: Report) -> None:
    url = queue_url(sqs, stack)
    if url:
        sqs.delete_queue(QueueUrl=url)
    report.add(f"SQS queue {stack.failure_queue}", DELETED if url else ABSENT)


def _delete_table(ddb: Any, stack: Stack, report: Report) -> None:
    try:
        ddb.delete_table(TableName=stack.ledger_table)
    except ClientError as exc:
        if error_code(exc) != "ResourceNotFoundException":
            raise
        report.add(f"DynamoDB table {stack.ledger_table}", ABSENT)
        return
    report.add(f"DynamoDB table {stack.ledger_table}", DELETED)
