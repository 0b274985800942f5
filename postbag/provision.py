"""``postbag provision``: everything a stage needs before ``chalice deploy``.

Order: the bucket, the ledger table, the failure queue, the notify jobs'
work queue and its dead-letter queue, the SES events (topic, configuration
set, event destination), the alarms, the WordPress credentials, then the
stage's Chalice settings and role policies (files).
The policies are rendered and the configuration set is read first, so a bad
option or a set another stage uses changes nothing. Every step compares
before it writes, so a second run changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from postbag import chalice_config
from postbag.aws import Aws, CommandError
from postbag.report import CREATED, UNCHANGED, UPDATED, Report
from postbag.resources import alarms, bucket, policies, ses_events, wordpress, work_queue
from postbag.resources.bucket import Retention
from postbag.resources.failure_queue import ensure_failure_queue
from postbag.resources.ledger_table import ensure_ledger, ensure_suppression_table
from postbag.ses_account import check_identities, report_account
from postbag.stack import (
    CONTROL_HANDLERS,
    DRAIN_HANDLER,
    EVENTS_HANDLER,
    HANDLER,
    INBOX_HANDLER,
    JOB_HANDLER,
    PUBLISH_HANDLER,
    REDRIVE_HANDLER,
    WORK_HANDLER,
    Stack,
)


@dataclass(frozen=True)
class Options:
    stage: str
    bucket: str
    chalice_dir: Path = chalice_config.CHALICE_DIR
    senders: list[str] = field(default_factory=list)
    configuration_set: str | None = None
    reserved_concurrency: int | None = None
    max_concurrency: int | None = None
    kms_key: str = ""
    retention: Retention = Retention()
    failure_queue_days: int = 14
    # SES open and click tracking (off: SES then rewrites no link and adds no pixel).
    tracking: bool = False
    work_queue_days: int = 4
    max_wait_minutes: int = 15
    max_job_hours: int = 6
    alarm_email: str = ""
    sns_topic: str = ""
    create_wp_user: bool = False
    attach_to_role: str = ""


@dataclass
class Outcome:
    wordpress_policy: dict
    wp_config: str


def check_retention(opts: Options) -> None:
    """A notify job's manifest and parts (kept like failed mail) must outlive its work items:
    a work item whose manifest expired could only fail its recipients."""
    if opts.retention.failed <= opts.work_queue_days:
        raise CommandError(
            f"--failed-days {opts.retention.failed} must be more than --work-queue-days "
            f"{opts.work_queue_days}: notify jobs under jobs/ expire with failed mail, and a "
            "job's work may wait in the work queue that long"
        )


def provision(aws: Aws, opts: Options, report: Report) -> Outcome:
    check_retention(opts)
    stack = Stack(opts.stage, aws.region, opts.bucket, aws.account())
    s3 = aws.client("s3")
    kms_key_arn = _kms_key_arn(aws, opts.kms_key)
    # One head_bucket: here when a re-run without --kms-key keeps the bucket's key,
    # else just before the bucket step (so a 403 is reported where it always was).
    has_bucket = None
    if not kms_key_arn:
        has_bucket = bucket.bucket_exists(s3, stack.bucket)
        kms_key_arn = bucket.current_kms_key(s3, stack, has_bucket)
    config = chalice_config.load(opts.chalice_dir)
    chalice_config.configure_stage(
        config, stack, opts.senders, opts.configuration_set, opts.reserved_concurrency,
        opts.max_concurrency,
    )
    settings = chalice_config.stage_settings(config, opts.stage)
    timeout = chalice_config.function_timeout(config, opts.stage, WORK_HANDLER)
    try:
        role_policies = {
            HANDLER: policies.lambda_policy(stack, settings, kms_key_arn),
            EVENTS_HANDLER: policies.events_policy(stack, settings),
            JOB_HANDLER: policies.splitter_policy(stack, settings, kms_key_arn),
            WORK_HANDLER: policies.fanout_policy(stack, settings, kms_key_arn),
            DRAIN_HANDLER: policies.drainer_policy(stack, settings, kms_key_arn),
            **{handler: policies.control_policy(stack, settings, handler, kms_key_arn)
               for handler in CONTROL_HANDLERS},
            INBOX_HANDLER: policies.inbox_policy(stack, settings, kms_key_arn),
            PUBLISH_HANDLER: policies.publisher_policy(stack, settings, kms_key_arn),
            REDRIVE_HANDLER: policies.redrive_request_policy(stack, settings, kms_key_arn),
        }
        # Checked here, before anything changes.
        work_queue.queue_attributes(stack, timeout, opts.work_queue_days, kms_key_arn)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    events = ses_events.read(aws.client("ses"), settings.default_configuration_set)
    ses_events.refuse_foreign_destination(stack, events)
    check_identities(aws.client("ses"), list(settings.allowed_senders), report)
    report_account(aws.client("sesv2"), report)
    if has_bucket is None:
        has_bucket = bucket.bucket_exists(s3, stack.bucket)
    bucket.ensure_bucket(s3, stack, opts.retention, kms_key_arn, has_bucket, report)
    ensure_ledger(aws.client("dynamodb"), stack, report)
    ensure_suppression_table(aws.client("dynamodb"), stack, report)
    ensure_failure_queue(aws.client("sqs"), stack, opts.failure_queue_days, report)
    work_queue.ensure(
        aws.client("sqs"), stack, timeout, opts.work_queue_days, kms_key_arn, report
    )
    ses_events.ensure(aws.client("sns"), aws.client("ses"), stack, events, report,
                      opts.tracking)
    _ensure_alarms(aws, stack, opts, report)

    iam = aws.client("iam")
    wp_policy = policies.wordpress_policy(stack, kms_key_arn)
    wordpress.ensure_policy(iam, stack, wp_policy, report)
    key = wordpress.ensure_user(iam, stack, report) if opts.create_wp_user else None
    if opts.attach_to_role:
        wordpress.ensure_role_attachment(iam, stack, opts.attach_to_role, report)
    constants = wordpress.wp_config(stack, kms_key_arn, key)
    # Files last: `chalice deploy` then sees a stage only once its resources exist.
    _write(report, chalice_config.config_path(opts.chalice_dir), config)
    for handler, document in role_policies.items():
        _write(report, chalice_config.policy_path(opts.chalice_dir, opts.stage, handler), document)
    return Outcome(wp_policy, constants)


def _write(report: Report, path: Path, data: Any) -> None:
    existed = path.exists()
    changed = chalice_config.write_json(path, data)
    report.add(str(path), UNCHANGED if not changed else UPDATED if existed else CREATED)


def _kms_key_arn(aws: Aws, key: str) -> str:
    """Policies need the key's ARN; the user may give an id, an alias or the ARN."""
    if not key or key.startswith("arn:"):
        return key
    return aws.client("kms").describe_key(KeyId=key)["KeyMetadata"]["Arn"]


def _ensure_alarms(aws: Aws, stack: Stack, opts: Options, report: Report) -> None:
    sns = aws.client("sns")
    if opts.alarm_email:
        topic = alarms.ensure_topic(sns, stack, opts.alarm_email, report)
    else:
        topic = opts.sns_topic
    cloudwatch = aws.client("cloudwatch")
    existing = alarms.existing_alarms(cloudwatch, stack)
    # Without a topic option, keep notifying whatever an earlier run set up.
    actions = [topic] if topic else alarms.current_actions(existing)
    definitions = alarms.alarm_definitions(stack, opts.max_wait_minutes, opts.max_job_hours)
    alarms.ensure_alarms(cloudwatch, definitions, actions, existing, report)
