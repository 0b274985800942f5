"""``postbag teardown``: removes what ``postbag provision`` created.

The function belongs to Chalice: ``chalice delete`` comes first, so that it can
still remove its bucket notification (the failure destination set by ``wire``
goes with the function). Files under ``.chalice/`` are kept.
"""

from __future__ import annotations

from chalicelib.config import QUEUE_PREFIX
from postbag.aws import Aws, CommandError
from postbag.report import ABSENT, DELETED, Report
from postbag.resources import alarms, wordpress
from postbag.resources.bucket import bucket_exists, empty_and_delete_bucket
from postbag.resources.failure_queue import delete_failure_queue
from postbag.resources.ledger_table import delete_ledger
from postbag.stack import Stack
from postbag.status import unsent_batch_objects
from postbag.wire import function_exists


def teardown(aws: Aws, stack: Stack, force: bool, report: Report) -> None:
    s3 = aws.client("s3")
    has_bucket = bucket_exists(s3, stack.bucket)
    _refuse_if_unsafe(aws, stack, has_bucket, force)
    alarms.delete_alarms(aws.client("cloudwatch"), stack, report)
    alarms.delete_topic(aws.client("sns"), stack, report)
    wordpress.delete_all(aws.client("iam"), stack, report)
    delete_failure_queue(aws.client("sqs"), stack, report)
    delete_ledger(aws.client("dynamodb"), stack, report)
    if has_bucket:
        empty_and_delete_bucket(s3, stack.bucket)
    report.add(f"s3://{stack.bucket}", DELETED if has_bucket else ABSENT)


def _refuse_if_unsafe(aws: Aws, stack: Stack, has_bucket: bool, force: bool) -> None:
    # Unsent batches first: while the function still exists they can still go out.
    if has_bucket and not force:
        unsent = unsent_batch_objects(aws.client("s3"), stack.bucket)
        if unsent:
            raise CommandError(
                f"s3://{stack.bucket} still holds {len(unsent)} unsent batch(es) under "
                f"{QUEUE_PREFIX} (e.g. {unsent[0]['Key']}): wait for the sender "
                "(`postbag status`), or pass --force to delete them unsent"
            )
    if function_exists(aws.client("lambda"), stack.function_name):
        raise CommandError(
            f"function {stack.function_name} still exists: run "
            f"`chalice delete --stage {stack.stage}` in chalice_app/ first"
        )
