"""The names of one stage's resources, derived from the stage alone.

Provisioning, wiring, status and teardown all derive them the same way, so
teardown needs no record of what provisioning created.
"""

from __future__ import annotations

from dataclasses import dataclass

APP_NAME = "postbag"
# The Lambda handler's name in chalice_app/app.py; Chalice names the function
# "<app>-<stage>-<handler>".
HANDLER = "on_batch_uploaded"
# The handler that records SES's Send events in the ledger (subscribed to the events topic).
EVENTS_HANDLER = "on_ses_event"
# Notify jobs: the splitter (a job's manifest uploaded) and the fan-out sender (SQS).
JOB_HANDLER = "on_job_uploaded"
WORK_HANDLER = "on_work_item"
# Scheduled sends: the drainer (every minute) and the cancel / reschedule requests.
DRAIN_HANDLER = "drain_held"
CONTROL_HANDLERS = ("on_batch_control", "on_job_schedule", "on_job_cancel")
# The suppression list: the site's inbox objects, and the minute's publishing (export,
# feedback status).
INBOX_HANDLER = "on_suppression_inbox"
PUBLISH_HANDLER = "publish_status"
# WordPress's "Send again": a failed batch or job re-driven (requests/redrive/).
REDRIVE_HANDLER = "on_redrive_request"
# The configuration set's event destination that publishes Send events to the topic.
SES_EVENT_DESTINATION = "postbag-ledger"
# Every resource carries this tag, so a console search finds a stage's resources.
STAGE_TAG = "postbag-stage"


@dataclass(frozen=True)
class Stack:
    stage: str
    region: str
    bucket: str
    account: str = ""

    @property
    def prefix(self) -> str:
        return f"{APP_NAME}-{self.stage}"

    @property
    def function_name(self) -> str:
        return f"{self.prefix}-{HANDLER}"

    @property
    def events_function_name(self) -> str:
        return f"{self.prefix}-{EVENTS_HANDLER}"

    def handler_function(self, handler: str) -> str:
        return f"{self.prefix}-{handler}"

    @property
    def async_function_names(self) -> tuple[str, ...]:
        """The functions invoked asynchronously (S3, SNS and EventBridge events), whose
        failed invocations go to the failure queue: the sender, the SES event recorder,
        the job splitter, the drainer and the cancel / reschedule handlers."""
        return (
            self.function_name,
            self.events_function_name,
            self.handler_function(JOB_HANDLER),
            self.handler_function(DRAIN_HANDLER),
            self.handler_function(INBOX_HANDLER),
            self.handler_function(PUBLISH_HANDLER),
            *(self.handler_function(handler) for handler in CONTROL_HANDLERS),
            self.handler_function(REDRIVE_HANDLER),
        )

    @property
    def function_names(self) -> tuple[str, ...]:
        """Every function Chalice deploys: the fan-out sender too, which SQS invokes
        (its failed work items go to the work queue's dead-letter queue)."""
        return (*self.async_function_names, self.handler_function(WORK_HANDLER))

    @property
    def ledger_table(self) -> str:
        return f"{self.prefix}-ledger"

    @property
    def suppression_table(self) -> str:
        return f"{self.prefix}-suppression"

    @property
    def failure_queue(self) -> str:
        return f"{self.prefix}-failures"

    @property
    def work_queue(self) -> str:
        """The notify jobs' work items (one message per chunk of recipients)."""
        return f"{self.prefix}-work"

    @property
    def work_dlq(self) -> str:
        return f"{self.prefix}-work-dlq"

    @property
    def alarm_topic(self) -> str:
        return f"{self.prefix}-alarms"

    @property
    def ses_events_topic(self) -> str:
        return f"{self.prefix}-ses-events"

    @property
    def configuration_set(self) -> str:
        """Postbag's own SES configuration set, unless ``--configuration-set`` names another."""
        return self.prefix

    @property
    def wordpress_policy(self) -> str:
        return f"{self.prefix}-wordpress"

    @property
    def wordpress_user(self) -> str:
        return f"{self.prefix}-wordpress"

    def alarm(self, what: str) -> str:
        return f"{self.prefix}-{what}"

    # ARNs: the partition is "aws"; GovCloud and China need their own (not supported).
    def arn(self, service: str, resource: str) -> str:
        return f"arn:aws:{service}:{self.region}:{self.account}:{resource}"

    @property
    def bucket_arn(self) -> str:
        return f"arn:aws:s3:::{self.bucket}"

    def objects_arn(self, prefix: str) -> str:
        return f"{self.bucket_arn}/{prefix}*"

    @property
    def queue_arn(self) -> str:
        return self.arn("sqs", self.failure_queue)

    @property
    def work_queue_arn(self) -> str:
        return self.arn("sqs", self.work_queue)

    @property
    def work_dlq_arn(self) -> str:
        return self.arn("sqs", self.work_dlq)

    @property
    def ses_events_topic_arn(self) -> str:
        return self.arn("sns", self.ses_events_topic)

    def configuration_set_arn(self, name: str) -> str:
        return self.arn("ses", f"configuration-set/{name}")

    @property
    def wordpress_policy_arn(self) -> str:
        return f"arn:aws:iam::{self.account}:policy/{APP_NAME}/{self.wordpress_policy}"

    @property
    def tags(self) -> dict[str, str]:
        return {"project": APP_NAME, STAGE_TAG: self.stage}

    @property
    def tag_list(self) -> list[dict[str, str]]:
        """``tags`` as most AWS APIs take them: ``[{"Key": ..., "Value": ...}]``."""
        return [{"Key": k, "Value": v} for k, v in self.tags.items()]
