"""The least-privilege IAM policies, rendered for one stage.

- the sender's role (written to ``chalice_app/.chalice/policy-<stage>.json``, generated and
  git-ignored,
  which Chalice attaches because ``autogen_policy`` is off: it cannot see the
  calls made through helpers and powertools);
- the SES event recorder's role (``policy-<stage>-on_ses_event.json``): Chalice
  gives each function its own role, so the handler that reads what SNS
  delivers may write ledger records and nothing else — it can neither send
  mail nor touch the bucket;
- the notify job splitter's role (``policy-<stage>-on_job_uploaded.json``):
  reads a job's files, checks it was not cancelled, sends work items to the
  work queue, quarantines a bad manifest;
- the fan-out sender's role (``policy-<stage>-on_work_item.json``): takes work
  items from the work queue (and hands the rest of one back), reads the job's
  parts and attachments, sends through SES, writes the job's status and its
  failed recipients — and can write neither a manifest nor a part;
- the WordPress side, which may only drop batches and attachments under the
  queue prefix, drop a job's parts, manifest and cancel marker, and read a
  job's status.

Both are plain data built from the same :class:`~postbag.stack.Stack` and
:class:`chalicelib.config.Settings` the Lambda runs with.
"""

from __future__ import annotations

from typing import Any

from chalicelib.config import (
    ACCOUNT_STATUS_KEY,
    ATTACHMENTS_PREFIX,
    FAILED_PREFIX,
    FEEDBACK_STATUS_KEY,
    JOBS_PREFIX,
    QUARANTINE_PREFIX,
    QUEUE_PREFIX,
    RECEIPTS_PREFIX,
    REDRIVE_REQUESTS_PREFIX,
    STATUS_PREFIX,
    SUPPRESSION_EXPORT_KEY,
    SUPPRESSION_INBOX_PREFIX,
    Settings,
)
from chalicelib.control import CONTROL_PREFIX
from chalicelib.control_result import RESULTS_PREFIX as CONTROL_RESULTS_PREFIX
from chalicelib.hold import MARKER_PREFIX
from chalicelib.redrive_request import RESULTS_PREFIX as REDRIVE_RESULTS_PREFIX
from chalicelib.schedule import RESCHEDULE_NAME
from postbag.stack import (
    DRAIN_HANDLER,
    INBOX_HANDLER,
    JOB_HANDLER,
    PUBLISH_HANDLER,
    REDRIVE_HANDLER,
    WORK_HANDLER,
    Stack,
)

Policy = dict[str, Any]
VERSION = "2012-10-17"


def deny_insecure_transport(action: str, resource: str | list[str]) -> dict[str, Any]:
    """A resource policy refusing every request that does not come over TLS (bucket, queues)."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": action,
                "Resource": resource,
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }


def _statement(sid: str, actions: list[str], resources: list[str], **extra: Any) -> dict:
    return {"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resources, **extra}


def lambda_policy(stack: Stack, settings: Settings, kms_key_arn: str = "") -> Policy:
    statements = [
        *_s3_statements(stack),
        *_ses_statements(stack, settings),
        *_account_statements(stack),
        # Its own reserved concurrency: SES's rate is shared between that many instances.
        _statement(
            "ReadOwnConcurrency",
            ["lambda:GetFunctionConcurrency"],
            [stack.arn("lambda", f"function:{stack.function_name}")],
        ),
        # Claims are conditional puts inside TransactWriteItems (authorised as
        # PutItem), settled claims are read with BatchGetItem, completions and
        # releases are written with BatchWriteItem.
        _statement(
            "Ledger",
            ["dynamodb:PutItem", "dynamodb:BatchGetItem", "dynamodb:BatchWriteItem"],
            [_ledger_arn(stack, settings)],
        ),
        # SES's rate is shared with the notify jobs' sender through per-second
        # counters in the same table: it may update those items, never a claim.
        _items(stack, settings, "LeaseSendRate", ["dynamodb:UpdateItem"], [RATE_ITEMS]),
        _check_suppressions(stack, settings),
        # A batch with a send_at is held (or its replay, continuation or re-drive finds it
        # held, released or cancelled; a request that came before it is applied).
        *_hold_statements(stack, settings),
        _failure_destination(stack),
        *_log_statements(stack, f"{stack.prefix}-*"),
        *_key_statements(kms_key_arn),
    ]
    return {"Version": VERSION, "Statement": statements}


def _account_statements(stack: Stack) -> list[dict]:
    """The quota and the account's state (neither has a resource ARN), and the document
    that reports them to WordPress (chalicelib/account.py)."""
    return [
        _statement("ReadSendQuota", ["ses:GetSendQuota", "ses:GetAccount"], ["*"]),
        _statement("ReportAccount", ["s3:PutObject"],
                   [f"{stack.bucket_arn}/{ACCOUNT_STATUS_KEY}"]),
    ]


def _key_statements(kms_key_arn: str) -> list[dict]:
    """The stage's KMS key, if it has one, encrypts the bucket and the work queues:
    reading needs Decrypt, writing an object or sending a message GenerateDataKey."""
    if not kms_key_arn:
        return []
    return [_statement("BucketKey", ["kms:Decrypt", "kms:GenerateDataKey"], [kms_key_arn])]


# Items of the ledger's table other than claims, by the first part of their key
# (after the namespace): counters the functions update in place. A claim's key
# is a digest, so none of these patterns matches one.
RATE_ITEMS, JOB_ITEMS, TALLY_ITEMS, HELD_ITEMS = "rate", "job", "tally", "held"
# What SES's events and the inbox mark for the minute's run, and the per-day counters
# (chalicelib/publisher.py).
FEEDBACK_ITEMS = "feedback"


def _suppression_arn(stack: Stack, settings: Settings) -> str:
    return stack.arn("dynamodb", f"table/{settings.suppression_table}")


def _check_suppressions(stack: Stack, settings: Settings) -> dict:
    """The lookup before sending: one BatchGetItem a batch or work item, reads only."""
    return _statement("CheckSuppressions", ["dynamodb:BatchGetItem"],
                      [_suppression_arn(stack, settings)])


def _items(
    stack: Stack, settings: Settings, sid: str, actions: list[str], kinds: list[str]
) -> dict:
    """``actions`` on the ledger's table, for items of ``kinds`` only (their partition
    key, ``<namespace>#<kind>#...``, is what IAM calls ``dynamodb:LeadingKeys``)."""
    keys = [f"{settings.idempotency_namespace}#{kind}#*" for kind in kinds]
    return _statement(
        sid, actions, [_ledger_arn(stack, settings)],
        Condition={"ForAllValues:StringLike": {"dynamodb:LeadingKeys": keys}},
    )


def _job_files(stack: Stack, name: str) -> str:
    """``name`` in every job's folder: ``jobs/<job_id>/<name>``."""
    return f"{stack.bucket_arn}/{JOBS_PREFIX}*/{name}"


def splitter_policy(stack: Stack, settings: Settings, kms_key_arn: str = "") -> Policy:
    """``on_job_uploaded``: a manifest's upload event in, work items out."""
    statements = [
        # ListBucket only so that a job without a cancel marker (or a missing
        # part) answers 404, not 403.
        _statement("KnowMissingObjects", ["s3:ListBucket"], [stack.bucket_arn]),
        # Manifests, parts (their checksums) and the cancel marker (a HEAD is a GetObject).
        _statement("ReadJobs", ["s3:GetObject"], [stack.objects_arn(JOBS_PREFIX)]),
        # The job's first status; a bad manifest is copied to quarantine, then deleted.
        _statement(
            "WriteStatusAndQuarantine",
            ["s3:PutObject"],
            [_job_files(stack, "status.json"), stack.objects_arn(QUARANTINE_PREFIX + JOBS_PREFIX)],
        ),
        _statement("MoveBadManifests", ["s3:DeleteObject"], [_job_files(stack, "manifest.json")]),
        _statement("QueueWork", ["sqs:SendMessage", "sqs:GetQueueUrl"], [stack.work_queue_arn]),
        # A job's progress item: started once (a conditional PutItem, so a replayed
        # manifest event queues nothing twice; GetItem to go on after a replay),
        # then counted (UpdateItem).
        _items(
            stack, settings, "JobProgress",
            ["dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:UpdateItem"], [JOB_ITEMS],
        ),
        # A job with a send_at or a window is held (its replays find it); a window is
        # planned at the account's rate and the quota left.
        *_hold_statements(stack, settings),
        _statement("ReadSendQuota", ["ses:GetSendQuota"], ["*"]),
        _failure_destination(stack),
        *_log_statements(stack, stack.handler_function(JOB_HANDLER)),
        *_key_statements(kms_key_arn),
    ]
    return {"Version": VERSION, "Statement": statements}


def fanout_policy(stack: Stack, settings: Settings, kms_key_arn: str = "") -> Policy:
    """``on_work_item``: one work item from SQS in, one mail per recipient out."""
    statements = [
        _statement("KnowMissingObjects", ["s3:ListBucket"], [stack.bucket_arn]),
        _statement(
            "ReadJobsAndAttachments",
            ["s3:GetObject"],
            [stack.objects_arn(JOBS_PREFIX), stack.objects_arn(ATTACHMENTS_PREFIX)],
        ),
        # Its own outputs only: never a manifest, a part or a cancel marker.
        _statement(
            "WriteStatusAndFailures",
            ["s3:PutObject"],
            [_job_files(stack, "status.json"), stack.objects_arn(FAILED_PREFIX + JOBS_PREFIX)],
        ),
        # What Lambda's SQS poller does with the function's role, and the hand-back
        # of a work item's unsent rest (SendMessage).
        _statement(
            "TakeWork",
            [
                "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes",
                "sqs:ChangeMessageVisibility", "sqs:SendMessage", "sqs:GetQueueUrl",
            ],
            [stack.work_queue_arn],
        ),
        *_ses_statements(stack, settings),
        *_account_statements(stack),
        # Claims are conditional puts inside TransactWriteItems (authorised as
        # PutItem), settled claims are read with BatchGetItem, completions and
        # releases written with BatchWriteItem, as for batches.
        _statement(
            "Ledger",
            ["dynamodb:PutItem", "dynamodb:BatchGetItem", "dynamodb:BatchWriteItem"],
            [_ledger_arn(stack, settings)],
        ),
        # Counters: the shared send rate, each job's progress, each chunk's tally.
        _items(
            stack, settings, "Counters", ["dynamodb:GetItem", "dynamodb:UpdateItem"],
            [RATE_ITEMS, JOB_ITEMS, TALLY_ITEMS],
        ),
        _check_suppressions(stack, settings),
        *_log_statements(stack, stack.handler_function(WORK_HANDLER)),
        *_key_statements(kms_key_arn),
    ]
    return {"Version": VERSION, "Statement": statements}


def _hold_statements(stack: Stack, settings: Settings) -> list[dict]:
    """Held batches and jobs (chalicelib/hold.py): their items, changed only by conditional
    writes, and their markers under ``held/``, which are listed (ListBucket on the bucket,
    in each role's KnowMissingObjects) and written empty; and the results of cancel and
    reschedule requests for the site (chalicelib/control_result.py: conditional writes,
    after a HEAD, which is a GetObject)."""
    return [
        _items(stack, settings, "HeldItems",
               ["dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:UpdateItem"], [HELD_ITEMS]),
        _statement("HeldMarkers", ["s3:PutObject", "s3:DeleteObject"],
                   [stack.objects_arn(MARKER_PREFIX)]),
        _statement("ControlResults", ["s3:GetObject", "s3:PutObject"],
                   [stack.objects_arn(CONTROL_RESULTS_PREFIX)]),
    ]


def drainer_policy(stack: Stack, settings: Settings, kms_key_arn: str = "") -> Policy:
    """``drain_held``, every minute: what falls due is released as its upload's event
    would have been, so it may do what the batch sender and the splitter do (send a
    held batch; split a held job, or a window's next chunks), and keep held items."""
    sender = lambda_policy(stack, settings, kms_key_arn)["Statement"]
    splitter = {s["Sid"]: s for s in splitter_policy(stack, settings, kms_key_arn)["Statement"]}
    statements = [
        *(s for s in sender if s["Sid"] not in ("ReadOwnConcurrency", "LogGroup", "LogEvents")),
        # Its own concurrency, read only when DynamoDB cannot share the rate (app.stages).
        _statement("ReadOwnConcurrency", ["lambda:GetFunctionConcurrency"],
                   [stack.arn("lambda", f"function:{stack.handler_function(DRAIN_HANDLER)}")]),
        splitter["ReadJobs"],
        _statement("WriteJobStatus", ["s3:PutObject"], [_job_files(stack, "status.json")]),
        splitter["QueueWork"],
        splitter["JobProgress"],
        # Held items and their markers: the batch sender's statements (above) hold them.
        *_log_statements(stack, stack.handler_function(DRAIN_HANDLER)),
    ]
    return {"Version": VERSION, "Statement": statements}


def control_policy(stack: Stack, settings: Settings, handler: str, kms_key_arn: str = ""
                   ) -> Policy:
    """``on_batch_control``, ``on_job_schedule`` and ``on_job_cancel``: a cancel or
    reschedule request in, the held item changed. A cancelled batch gets its receipt
    (every mail cancelled), a cancelled job its counts (all cancelled), a moved job its
    status; a request it cannot read is quarantined. It sends nothing."""
    requests = [stack.objects_arn(CONTROL_PREFIX), _job_files(stack, RESCHEDULE_NAME)]
    statements = [
        _statement("KnowMissingObjects", ["s3:ListBucket"], [stack.bucket_arn]),
        # Requests (a job's cancel too: when it was asked); a cancelled batch (for its
        # receipt); a moved or cancelled job's manifest and status, never its recipients.
        _statement("ReadRequestsBatchesAndJobs", ["s3:GetObject"], [
            *requests, _job_files(stack, "cancel"), stack.objects_arn(QUEUE_PREFIX),
            _job_files(stack, "manifest.json"), _job_files(stack, "status.json")]),
        _statement("MoveBadRequests", ["s3:DeleteObject"], requests),
        _statement("RecordCancelledBatches", ["s3:PutObjectTagging"],
                   [stack.objects_arn(QUEUE_PREFIX)]),
        _statement("WriteOutcomes", ["s3:PutObject"], [
            stack.objects_arn(RECEIPTS_PREFIX), stack.objects_arn(QUARANTINE_PREFIX),
            _job_files(stack, "status.json")]),
        # A moved window is planned again for its status: the rate and the quota left.
        _statement("ReadSendQuota", ["ses:GetSendQuota"], ["*"]),
        # A cancelled held job's progress item, started with every recipient cancelled.
        _items(stack, settings, "JobProgress", ["dynamodb:PutItem", "dynamodb:GetItem"],
               [JOB_ITEMS]),
        *_hold_statements(stack, settings),
        _failure_destination(stack),
        *_log_statements(stack, stack.handler_function(handler)),
        *_key_statements(kms_key_arn),
    ]
    return {"Version": VERSION, "Statement": statements}


def events_policy(stack: Stack, settings: Settings) -> Policy:
    """The SES event recorder: the Send events of a notification written in batches
    (``Ledger.record_sent``; BatchWriteItem is authorised as itself, not as PutItem);
    hard bounces and complaints put on the suppression list, transient bounces noted
    there; every event counted per day and per job, and marked for the minute's run (the
    marks read first: one already there is not written again)."""
    return {
        "Version": VERSION,
        "Statement": [
            _statement(
                "RecordSendEvents", ["dynamodb:BatchWriteItem"], [_ledger_arn(stack, settings)]
            ),
            _statement("Suppress", ["dynamodb:UpdateItem"], [_suppression_arn(stack, settings)]),
            _items(stack, settings, "CountFeedback", ["dynamodb:UpdateItem"],
                   [FEEDBACK_ITEMS, JOB_ITEMS]),
            _items(stack, settings, "ReadMarks", ["dynamodb:GetItem"], [FEEDBACK_ITEMS]),
            _failure_destination(stack),
            *_log_statements(stack, stack.events_function_name),
        ],
    }


def inbox_policy(stack: Stack, settings: Settings, kms_key_arn: str = "") -> Policy:
    """``on_suppression_inbox``: the site's change in, the list changed, the object gone (or
    quarantined when it cannot be read). It sends nothing and reads no other object."""
    inbox = stack.objects_arn(SUPPRESSION_INBOX_PREFIX)
    statements = [
        _statement("KnowMissingObjects", ["s3:ListBucket"], [stack.bucket_arn]),
        _statement("TakeInbox", ["s3:GetObject", "s3:DeleteObject"], [inbox]),
        _statement("QuarantineBadDocuments", ["s3:PutObject"],
                   [stack.objects_arn(QUARANTINE_PREFIX + SUPPRESSION_INBOX_PREFIX)]),
        _statement("Suppress", ["dynamodb:UpdateItem"], [_suppression_arn(stack, settings)]),
        _items(stack, settings, "MarkExport", ["dynamodb:GetItem", "dynamodb:UpdateItem"],
               [FEEDBACK_ITEMS]),
        _failure_destination(stack),
        *_log_statements(stack, stack.handler_function(INBOX_HANDLER)),
        *_key_statements(kms_key_arn),
    ]
    return {"Version": VERSION, "Statement": statements}


def redrive_request_policy(stack: Stack, settings: Settings, kms_key_arn: str = "") -> Policy:
    """``on_redrive_request``: WordPress's request in; the failed mail it names back in the
    queue (a batch) or on the work queue (a job), as ``postbag redrive`` does; its result
    out; the request gone (or quarantined). It sends no mail itself."""
    requests = stack.objects_arn(REDRIVE_REQUESTS_PREFIX)
    statements = [
        _statement("KnowMissingObjects", ["s3:ListBucket"], [stack.bucket_arn]),
        _statement("TakeRequests", ["s3:GetObject", "s3:DeleteObject"], [requests]),
        # Failed batches and jobs' failed recipients: read (listed through ListBucket),
        # then deleted once queued again.
        _statement("TakeFailedMail", ["s3:GetObject", "s3:DeleteObject"],
                   [stack.objects_arn(FAILED_PREFIX)]),
        _statement("RequeueAndReport", ["s3:PutObject"], [
            f"{stack.bucket_arn}/{QUEUE_PREFIX}*.json",
            stack.objects_arn(REDRIVE_RESULTS_PREFIX),
            stack.objects_arn(QUARANTINE_PREFIX + REDRIVE_REQUESTS_PREFIX),
        ]),
        # The batch sender's rule: never an attachment a queued mail refers to.
        {"Sid": "NeverWriteAttachments", "Effect": "Deny", "Action": ["s3:PutObject"],
         "Resource": [stack.objects_arn(ATTACHMENTS_PREFIX)]},
        _statement("RequeueJobRows", ["sqs:SendMessage", "sqs:GetQueueUrl"],
                   [stack.work_queue_arn]),
        _failure_destination(stack),
        *_log_statements(stack, stack.handler_function(REDRIVE_HANDLER)),
        *_key_statements(kms_key_arn),
    ]
    return {"Version": VERSION, "Statement": statements}


def publisher_policy(stack: Stack, settings: Settings, kms_key_arn: str = "") -> Policy:
    """``publish_status``, every minute: reads the marks, the day counters, the whole
    suppression list and the marked jobs' items; writes the export, the feedback status
    and those jobs' status documents, nothing else."""
    statements = [
        _statement("KnowMissingObjects", ["s3:ListBucket"], [stack.bucket_arn]),
        # A job's status is replaced only by a newer revision: a HEAD (GetObject) first.
        _statement("ReadJobStatus", ["s3:GetObject"], [_job_files(stack, "status.json")]),
        _statement("Publish", ["s3:PutObject"], [
            f"{stack.bucket_arn}/{SUPPRESSION_EXPORT_KEY}",
            f"{stack.bucket_arn}/{FEEDBACK_STATUS_KEY}",
            _job_files(stack, "status.json"),
        ]),
        _statement("ListSuppressions", ["dynamodb:Scan"], [_suppression_arn(stack, settings)]),
        _items(stack, settings, "ReadMarksAndJobs",
               ["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:UpdateItem"],
               [FEEDBACK_ITEMS, JOB_ITEMS]),
        _failure_destination(stack),
        *_log_statements(stack, stack.handler_function(PUBLISH_HANDLER)),
        *_key_statements(kms_key_arn),
    ]
    return {"Version": VERSION, "Statement": statements}


def _ledger_arn(stack: Stack, settings: Settings) -> str:
    return stack.arn("dynamodb", f"table/{settings.ledger_table}")


def _failure_destination(stack: Stack) -> dict:
    # Lambda sends a failed asynchronous invocation's event to the on-failure
    # destination (set by `postbag wire`) with the function's own role.
    return _statement("FailureDestination", ["sqs:SendMessage"], [stack.queue_arn])


def _s3_statements(stack: Stack) -> list[dict]:
    queue = stack.objects_arn(QUEUE_PREFIX)
    return [
        # ListBucket only so that a missing batch or attachment answers 404
        # (NoSuchKey, permanent) rather than 403 (which looks like a permission fault).
        _statement("KnowMissingObjects", ["s3:ListBucket"], [stack.bucket_arn]),
        _statement(
            "ReadTagAndMoveBatches",
            ["s3:GetObject", "s3:GetObjectTagging", "s3:PutObjectTagging", "s3:DeleteObject"],
            [queue],
        ),
        # Continuations are batches (.json) under the queue prefix; outcomes go
        # to their own prefixes.
        _statement(
            "WriteContinuationsAndOutcomes",
            ["s3:PutObject"],
            [
                f"{stack.bucket_arn}/{QUEUE_PREFIX}*.json",
                stack.objects_arn(RECEIPTS_PREFIX),
                stack.objects_arn(FAILED_PREFIX),
                stack.objects_arn(QUARANTINE_PREFIX),
            ],
        ),
        # The sender only reads attachments: whatever it does, it cannot
        # replace one that a queued mail refers to.
        {
            "Sid": "NeverWriteAttachments",
            "Effect": "Deny",
            "Action": ["s3:PutObject"],
            "Resource": [stack.objects_arn(ATTACHMENTS_PREFIX)],
        },
    ]


def _ses_statements(stack: Stack, settings: Settings) -> list[dict]:
    if not settings.allowed_senders:
        raise ValueError("no sender identities: pass --sender-identity (an address or a domain)")
    extra = []
    if settings.default_configuration_set:
        extra.append(stack.configuration_set_arn(settings.default_configuration_set))
    actions = ["ses:SendEmail", "ses:SendRawEmail"]
    domains = sorted(s for s in settings.allowed_senders if "@" not in s)
    addresses = sorted(s for s in settings.allowed_senders if "@" in s)
    statements = []
    if domains:
        identities = [stack.arn("ses", f"identity/{d}") for d in domains]
        statements.append(_statement("SendFromDomains", actions, identities + extra))
    if addresses:
        # SES authorises against the verified identity, which for an address
        # may be the address itself or its whole domain: allow both, and pin
        # the From address with a condition.
        names = sorted({*addresses, *(a.split("@", 1)[1] for a in addresses)})
        identities = [stack.arn("ses", f"identity/{n}") for n in names]
        statements.append(
            _statement(
                "SendFromAddresses",
                actions,
                identities + extra,
                Condition={"StringLike": {"ses:FromAddress": addresses}},
            )
        )
    return statements


def _log_statements(stack: Stack, functions: str) -> list[dict]:
    """Writing the log group of ``functions`` (a function name, or a pattern)."""
    group = stack.arn("logs", f"log-group:/aws/lambda/{functions}")
    return [
        _statement("LogGroup", ["logs:CreateLogGroup"], [group]),
        _statement("LogEvents", ["logs:CreateLogStream", "logs:PutLogEvents"], [group + ":*"]),
    ]


def wordpress_policy(stack: Stack, kms_key_arn: str = "") -> Policy:
    statements = [
        _statement("DropBatchesAndAttachments", ["s3:PutObject"], [
            stack.objects_arn(QUEUE_PREFIX)
        ]),
        # A job: its parts, then its manifest (whose upload starts the send), the
        # marker that cancels it and the request that moves it while it is held.
        # It may not read any of them back.
        _statement("DropJobs", ["s3:PutObject"], [
            _job_files(stack, "part-*.ndjson.gz"),
            _job_files(stack, "manifest.json"),
            _job_files(stack, "cancel"),
            _job_files(stack, "schedule.json"),
        ]),
        # Cancelling or moving a held batch of scheduled mail (chalicelib/control.py).
        _statement("ControlHeldBatches", ["s3:PutObject"], [
            f"{stack.bucket_arn}/control/batches/*/cancel",
            f"{stack.bucket_arn}/control/batches/*/schedule.json",
        ]),
        # How far a job got. Without ListBucket a job with no status yet answers
        # 403 AccessDenied rather than 404: the plugin reads both as "not yet".
        _statement("ReadJobStatus", ["s3:GetObject"], [_job_files(stack, "status.json")]),
        # The email log reads each batch's receipt by its key (Postbag_Log_Sync), the
        # Postbag screen what the sender reports under status/ (the SES account).
        _statement("ReadOutcomes", ["s3:GetObject"], [
            stack.objects_arn(RECEIPTS_PREFIX),
            stack.objects_arn(STATUS_PREFIX),
        ]),
        # "Send again" on the Postbag screen: the sender re-drives what it names.
        _statement(
            "RequestRedrive", ["s3:PutObject"], [stack.objects_arn(REDRIVE_REQUESTS_PREFIX)]
        ),
        # Unsubscribes and manual changes for the sender (chalicelib/inbox.py), and the
        # list as the sender last published it (never the suppression table itself).
        _statement("DropSuppressionChanges", ["s3:PutObject"],
                   [stack.objects_arn(SUPPRESSION_INBOX_PREFIX)]),
        _statement("ReadSuppressions", ["s3:GetObject"],
                   [f"{stack.bucket_arn}/{SUPPRESSION_EXPORT_KEY}"]),
    ]
    if kms_key_arn:
        # SSE-KMS uploads need a data key. Reading a job's status (or a receipt)
        # needs Decrypt, through S3 only: S3 lets it read nothing but status
        # documents and receipts, and it cannot ask KMS to decrypt anything directly.
        statements += [
            _statement("EncryptUploads", ["kms:GenerateDataKey"], [kms_key_arn]),
            _statement(
                "DecryptJobStatus",
                ["kms:Decrypt"],
                [kms_key_arn],
                Condition={"StringEquals": {"kms:ViaService": f"s3.{stack.region}.amazonaws.com"}},
            ),
        ]
    return {"Version": VERSION, "Statement": statements}
