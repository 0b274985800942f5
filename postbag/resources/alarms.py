"""CloudWatch alarms on a stage, and the optional SNS topic they notify.

Four questions an operator wants a page for:

- ``mails-failed``: did a mail fail for good? (the sender's ``MailsFailed``
  metric from ``chalicelib.observe``: powertools, embedded metric format)
- ``failure-queue``: did a whole invocation fail after Lambda's retries?
  (messages visible in the on-failure SQS queue)
- ``batches-waiting``: is a batch waiting too long to be picked up? (Lambda's
  ``AsyncEventAge``: how long the oldest S3 event waited in Lambda's queue
  before a run, which grows when throttled by reserved concurrency or retrying)
- ``mail-late``: does mail reach SES late, end to end? (the sender's
  ``QueueDelay``, from the batch's creation in WordPress to the send: also
  counts a plugin spooling uploads, Lambda retries and continuations)

and two about notify jobs:

- ``work-dead-letters``: did a work item (a chunk of a job's recipients) fail
  on every delivery? (messages visible in the work queue's dead-letter queue)
- ``work-queue-age``: is a job's work waiting longer than a job should take?
  (``ApproximateAgeOfOldestMessage`` of the work queue; a large job at SES's
  rate legitimately waits hours, hence its own threshold in hours)

and one about scheduled sends:

- ``held-failed``: did the drainer give up a held batch or job? (its
  ``HeldReleasesFailed``: the object was gone when it fell due, or its release
  kept failing; nobody was mailed)
"""

from __future__ import annotations

from functools import partial
from typing import Any

from chalicelib import observe, publisher
from postbag.aws import exists
from postbag.report import ABSENT, CREATED, DELETED, UNCHANGED, Report
from postbag.stack import Stack

PERIOD = 300
ALARMS = (
    "mails-failed", "failure-queue", "batches-waiting", "mail-late",
    "work-dead-letters", "work-queue-age", "bounce-rate", "complaint-rate", "held-failed",
)
# The 7-day rates (percent) at which to page: half of what makes SES review an account
# (10% bounces, 0.5% complaints), and the complaint rate a fifth of it, under Gmail's and
# Yahoo's 0.3% for bulk senders.
BOUNCE_RATE_ALARM, COMPLAINT_RATE_ALARM = 5.0, 0.1


def alarm_definitions(
    stack: Stack, max_wait_minutes: int, max_job_hours: int
) -> list[dict[str, Any]]:
    def alarm(what: str, description: str, **metric: Any) -> dict[str, Any]:
        return {
            "AlarmName": stack.alarm(what),
            "AlarmDescription": description,
            "Period": PERIOD,
            "EvaluationPeriods": 1,
            "ComparisonOperator": "GreaterThanThreshold",
            # No data means no mail: nothing is wrong.
            "TreatMissingData": "notBreaching",
            **metric,
        }

    return [
        alarm(
            "held-failed",
            "A held batch or job was given up, never sent: see drain_held's log (its item and "
            "reason), then upload it again or `postbag redrive`.",
            Namespace=observe.NAMESPACE,
            MetricName=observe.HELD_RELEASES_FAILED,
            Dimensions=[{"Name": "service", "Value": observe.SERVICE}],
            Statistic="Sum",
            Threshold=0.0,
        ),
        alarm(
            "mails-failed",
            "A mail failed for good: see failed/ in the bucket, fix, then `postbag redrive`.",
            Namespace=observe.NAMESPACE,
            MetricName=observe.MAILS_FAILED,
            Dimensions=[{"Name": "service", "Value": observe.SERVICE}],
            Statistic="Sum",
            Threshold=0.0,
        ),
        alarm(
            "failure-queue",
            "An invocation failed after Lambda's retries: its event is in the failure queue.",
            Namespace="AWS/SQS",
            MetricName="ApproximateNumberOfMessagesVisible",
            Dimensions=[{"Name": "QueueName", "Value": stack.failure_queue}],
            Statistic="Maximum",
            Threshold=0.0,
        ),
        alarm(
            "batches-waiting",
            f"A batch waited more than {max_wait_minutes} minutes for the sender.",
            Namespace="AWS/Lambda",
            MetricName="AsyncEventAge",
            Dimensions=[{"Name": "FunctionName", "Value": stack.function_name}],
            Statistic="Maximum",
            Threshold=float(max_wait_minutes * 60 * 1000),  # milliseconds
        ),
        alarm(
            "mail-late",
            f"A mail was sent more than {max_wait_minutes} minutes after WordPress queued it.",
            Namespace=observe.NAMESPACE,
            MetricName=observe.QUEUE_DELAY,
            Dimensions=[{"Name": "service", "Value": observe.SERVICE}],
            Statistic="Maximum",
            Threshold=float(max_wait_minutes * 60),  # seconds
        ),
        alarm(
            "work-dead-letters",
            "A notify job's work item failed on every delivery: see the work queue's "
            "dead-letter queue and the sender's log.",
            Namespace="AWS/SQS",
            MetricName="ApproximateNumberOfMessagesVisible",
            Dimensions=[{"Name": "QueueName", "Value": stack.work_dlq}],
            Statistic="Maximum",
            Threshold=0.0,
        ),
        alarm(
            "work-queue-age",
            f"A notify job's work waited more than {max_job_hours} hours in the work queue.",
            Namespace="AWS/SQS",
            MetricName="ApproximateAgeOfOldestMessage",
            Dimensions=[{"Name": "QueueName", "Value": stack.work_queue}],
            Statistic="Maximum",
            Threshold=float(max_job_hours * 3600),  # seconds
        ),
        *_rate_alarms(alarm),
    ]


def _rate_alarms(alarm: Any) -> list[dict[str, Any]]:
    """The sender's 7-day bounce and complaint rates (chalicelib/publisher.py, published
    once a minute while SES's events come, and only once the 7 days hold
    ``publisher.MIN_RATE_SENDS`` sends), at or over their thresholds."""
    return [
        alarm(
            what,
            f"The 7-day {kind} rate reached {threshold}% over at least "
            f"{publisher.MIN_RATE_SENDS} sends (SES reviews the account at {review}): "
            f"see status/feedback.json and `postbag suppression list`.",
            Namespace=observe.NAMESPACE,
            MetricName=metric,
            Dimensions=[{"Name": "service", "Value": observe.SERVICE}],
            Statistic="Maximum",
            Threshold=threshold,
            ComparisonOperator="GreaterThanOrEqualToThreshold",
        )
        for what, kind, metric, threshold, review in (
            ("bounce-rate", "bounce", publisher.BOUNCE_RATE, BOUNCE_RATE_ALARM, "10%"),
            ("complaint-rate", "complaint", publisher.COMPLAINT_RATE, COMPLAINT_RATE_ALARM,
             "0.5%"),
        )
    ]


def existing_alarms(cloudwatch: Any, stack: Stack) -> dict[str, dict[str, Any]]:
    """The stage's alarms that exist, by name: one describe_alarms call for all of them."""
    names = [stack.alarm(what) for what in ALARMS]
    found = cloudwatch.describe_alarms(AlarmNames=names)["MetricAlarms"]
    return {alarm["AlarmName"]: alarm for alarm in found}


def _current(existing: dict[str, dict[str, Any]], desired: dict[str, Any]) -> dict[str, Any] | None:
    found = existing.get(desired["AlarmName"])
    if found is None:
        return None
    return {key: found.get(key) for key in desired}


def current_actions(existing: dict[str, dict[str, Any]]) -> list[str]:
    return next(iter(existing.values()))["AlarmActions"] if existing else []


def ensure_alarms(
    cloudwatch: Any,
    definitions: list[dict[str, Any]],
    actions: list[str],
    existing: dict[str, dict[str, Any]],
    report: Report,
) -> None:
    for definition in definitions:
        desired = {**definition, "AlarmActions": actions, "OKActions": actions}
        report.converge(
            f"alarm {definition['AlarmName']}",
            partial(_current, existing, desired),
            desired,
            partial(cloudwatch.put_metric_alarm, **desired),
        )


def delete_alarms(cloudwatch: Any, stack: Stack, report: Report) -> None:
    present = existing_alarms(cloudwatch, stack)
    if present:
        cloudwatch.delete_alarms(AlarmNames=sorted(present))
    for name in (stack.alarm(what) for what in ALARMS):
        report.add(f"alarm {name}", DELETED if name in present else ABSENT)


def topic_arn(stack: Stack) -> str:
    return stack.arn("sns", stack.alarm_topic)


def topic_exists(sns: Any, arn: str) -> bool:
    return exists(lambda: sns.get_topic_attributes(TopicArn=arn), "NotFound")


def existing_topic(sns: Any, stack: Stack) -> str:
    arn = topic_arn(stack)
    return arn if topic_exists(sns, arn) else ""


def ensure_topic(sns: Any, stack: Stack, email: str, report: Report) -> str:
    """Our own topic, with ``email`` subscribed (AWS mails a confirmation link)."""
    arn = existing_topic(sns, stack)
    if arn:
        report.add(f"SNS topic {stack.alarm_topic}", UNCHANGED)
    else:
        arn = sns.create_topic(Name=stack.alarm_topic, Tags=stack.tag_list)["TopicArn"]
        report.add(f"SNS topic {stack.alarm_topic}", CREATED)
    subscribed = {
        s["Endpoint"].lower()
        for s in sns.list_subscriptions_by_topic(TopicArn=arn)["Subscriptions"]
        if s["Protocol"] == "email"
    }
    what = f"SNS subscription {email}"
    if email.lower() in subscribed:
        report.add(what, UNCHANGED)
    else:
        sns.subscribe(TopicArn=arn, Protocol="email", Endpoint=email)
        report.add(what, CREATED)
    return arn


def delete_topic(sns: Any, stack: Stack, report: Report) -> None:
    """Only the topic provisioning made; a topic given with --sns-topic is the user's."""
    arn = existing_topic(sns, stack)
    if not arn:
        report.add(f"SNS topic {stack.alarm_topic}", ABSENT)
        return
    sns.delete_topic(TopicArn=arn)
    report.add(f"SNS topic {stack.alarm_topic}", DELETED)
