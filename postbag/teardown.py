"""``postbag teardown``: removes what ``postbag provision`` created.

The functions belong to Chalice: ``chalice delete`` comes first, so that it can
still remove the bucket notification and the SNS subscription (the failure
destinations set by ``wire`` go with the functions). Files under ``.chalice/``
are kept.

Mail is never deleted without a word: unsent batches, batches and jobs held
until their time, notify work still queued, and failed or quarantined mail
(which an operator may still want to re-drive or read) each make it refuse
until ``--force``; before deleting, it prints what the bucket holds. So does
the suppression list: a stage provisioned again with an empty list would mail
every address that unsubscribed, bounced or complained, so teardown refuses
while the list holds entries (keep a copy with ``postbag suppression list
--json``), and with ``--force`` says how many it deletes.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from chalicelib.config import FAILED_PREFIX, QUARANTINE_PREFIX, QUEUE_PREFIX
from chalicelib.hold import MARKER_PREFIX
from chalicelib.suppression import SuppressionStore
from postbag.aws import Aws, CommandError, error_code
from postbag.report import ABSENT, DELETED, Report
from postbag.resources import alarms, ses_events, wordpress, work_queue
from postbag.resources.bucket import bucket_exists, empty_and_delete_bucket
from postbag.resources.failure_queue import delete_failure_queue
from postbag.resources.ledger_table import delete_ledger
from postbag.stack import Stack
from postbag.status import failed_keys, held_keys, quarantined_keys, unsent_batch_objects
from postbag.wire import function_exists


def teardown(
    aws: Aws, stack: Stack, configuration_set: str, force: bool, report: Report
) -> None:
    """``configuration_set`` is the one the stage sends with (``Stack.configuration_set``
    unless ``--configuration-set`` named another)."""
    s3 = aws.client("s3")
    has_bucket = bucket_exists(s3, stack.bucket)
    _refuse_if_unsafe(aws, stack, has_bucket, force)
    if has_bucket:
        _say_what_goes(s3, stack, report)
    _say_suppressions_go(aws.client("dynamodb"), stack, report)
    ses_events.delete(aws.client("sns"), aws.client("ses"), stack, configuration_set, report)
    alarms.delete_alarms(aws.client("cloudwatch"), stack, report)
    alarms.delete_topic(aws.client("sns"), stack, report)
    wordpress.delete_all(aws.client("iam"), stack, report)
    delete_failure_queue(aws.client("sqs"), stack, report)
    work_queue.delete(aws.client("sqs"), stack, report)
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
    if has_bucket and not force:
        _refuse_held_mail(aws.client("s3"), stack)
        _refuse_kept_mail(aws.client("s3"), stack)
    if not force:
        _refuse_unsent_work(aws, stack)
        _refuse_suppressions(aws.client("dynamodb"), stack)
    lambda_client = aws.client("lambda")
    left = [n for n in stack.function_names if function_exists(lambda_client, n)]
    if left:
        raise CommandError(
            f"still deployed: {', '.join(left)}: run "
            f"`chalice delete --stage {stack.stage}` in chalice_app/ first"
        )


def _refuse_unsent_work(aws: Aws, stack: Stack) -> None:
    """Work items still queued or being sent are mail not yet sent."""
    counts = work_queue.status(aws.client("sqs"), stack)
    waiting = (counts["work_queued"] or 0) + (counts["work_in_flight"] or 0)
    if waiting:
        raise CommandError(
            f"{stack.work_queue} still holds {waiting} notify work item(s): wait for the "
            "sender (`postbag status`), cancel the job (`postbag cancel --job`), or pass "
            "--force to delete them unsent"
        )


def _refuse_held_mail(s3: Any, stack: Stack) -> None:
    """Batches and jobs held until their time are mail not yet sent."""
    held = held_keys(s3, stack.bucket)
    if held:
        raise CommandError(
            f"s3://{stack.bucket} still holds {len(held)} batch(es) or job(s) held until "
            f"their time under {MARKER_PREFIX} (e.g. {held[0]}): see `postbag schedule list`, "
            "cancel them (`postbag cancel`), or pass --force to delete them unsent"
        )


def _suppression_count(ddb: Any, stack: Stack) -> int:
    """Addresses and scopes on the stage's suppression list; 0 when its table is gone."""
    try:
        ddb.describe_table(TableName=stack.suppression_table)
    except ClientError as exc:
        if error_code(exc) == "ResourceNotFoundException":
            return 0
        raise
    return len(SuppressionStore(ddb, stack.suppression_table).entries())


def _refuse_suppressions(ddb: Any, stack: Stack) -> None:
    count = _suppression_count(ddb, stack)
    if count:
        raise CommandError(
            f"{stack.suppression_table} holds {count} suppression(s) (unsubscribed, bounced "
            "or complained addresses): a stage provisioned again would mail them again. Keep "
            f"a copy (`postbag suppression list --json --stage {stack.stage} > "
            "suppressions.json`), then pass --force to delete them"
        )


def _say_suppressions_go(ddb: Any, stack: Stack, report: Report) -> None:
    count = _suppression_count(ddb, stack)
    if count:
        report.add(f"DynamoDB table {stack.suppression_table}: {count} suppression(s)",
                   "deleting")


def _refuse_kept_mail(s3: Any, stack: Stack) -> None:
    """Failed and quarantined mail is kept for an operator: a re-drive or a reason to read."""
    failed, quarantined = failed_keys(s3, stack.bucket), quarantined_keys(s3, stack.bucket)
    if failed or quarantined:
        example = (failed or quarantined)[0]
        raise CommandError(
            f"s3://{stack.bucket} still holds {len(failed)} failed mail document(s) under "
            f"{FAILED_PREFIX} and {len(quarantined)} quarantined batch(es) under "
            f"{QUARANTINE_PREFIX} (e.g. {example}): re-drive them (`postbag redrive`), "
            "read them, or pass --force to delete them"
        )


def _say_what_goes(s3: Any, stack: Stack, report: Report) -> None:
    """What the bucket holds, counted by prefix, before it is emptied."""
    counts: dict[str, int] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=stack.bucket):
        for item in page.get("Contents", []):
            prefix = item["Key"].split("/", 1)[0] + "/"
            counts[prefix] = counts.get(prefix, 0) + 1
    held = ", ".join(f"{n} under {p}" for p, n in sorted(counts.items())) or "no objects"
    report.add(f"s3://{stack.bucket}: {held}", "emptying")
