"""The private batch bucket: created once, its settings converged on every run."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from chalicelib.config import (
    ATTACHMENTS_PREFIX,
    FAILED_PREFIX,
    JOBS_PREFIX,
    QUARANTINE_PREFIX,
    RECEIPTS_PREFIX,
    STATE_DONE,
    STATE_FAILED,
    STATE_TAG,
)
from chalicelib.control import CONTROL_PREFIX
from chalicelib.control_result import RESULTS_PREFIX as CONTROL_RESULTS_PREFIX
from chalicelib.redrive_request import RESULTS_PREFIX as REDRIVE_RESULTS_PREFIX
from chalicelib.schedule import MAX_AHEAD
from postbag.aws import CommandError, error_code
from postbag.report import CREATED, UNCHANGED, Report
from postbag.resources.policies import deny_insecure_transport
from postbag.stack import Stack

PUBLIC_ACCESS_BLOCK = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}
OWNERSHIP = [{"ObjectOwnership": "BucketOwnerEnforced"}]


@dataclass(frozen=True)
class Retention:
    """Days each kind of object is kept (S3 lifecycle expiration)."""

    done: int = 7
    failed: int = 30
    receipts: int = 30


def tls_only_policy(stack: Stack) -> dict:
    return deny_insecure_transport("s3:*", [stack.bucket_arn, f"{stack.bucket_arn}/*"])


def encryption_rule(kms_key_arn: str) -> dict:
    if kms_key_arn:
        # A bucket key cuts KMS requests (and their cost) by caching data keys.
        return {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": kms_key_arn, "BucketKeyEnabled": True}
    return {"SSEAlgorithm": "AES256", "KMSMasterKeyID": "", "BucketKeyEnabled": False}


def held_days(days: Retention) -> int:
    """Days attachments and jobs are kept: held up to MAX_AHEAD, then failed days."""
    return MAX_AHEAD.days + days.failed


def lifecycle_rules(days: Retention) -> list[dict]:
    def expire(rule_id: str, filter_: dict, after: int) -> dict:
        return {"ID": rule_id, "Status": "Enabled", "Filter": filter_,
                "Expiration": {"Days": after}}

    def tagged(value: str) -> dict:
        return {"Tag": {"Key": STATE_TAG, "Value": value}}

    return [
        expire("postbag-sent-batches", tagged(STATE_DONE), days.done),
        expire("postbag-failed-batches", tagged(STATE_FAILED), days.failed),
        expire("postbag-failed-mail", {"Prefix": FAILED_PREFIX}, days.failed),
        expire("postbag-quarantine", {"Prefix": QUARANTINE_PREFIX}, days.failed),
        expire("postbag-receipts", {"Prefix": RECEIPTS_PREFIX}, days.receipts),
        # Attachments are kept as long as a failed batch may still be re-driven,
        # and so are notify jobs (their recipients, status and cancel marker): a
        # re-drive of a job's failed recipients reads its manifest again. Both may be
        # held until a send_at (or a window's end) up to MAX_AHEAD away first: an
        # attachment or a job gone before it falls due would never be mailed.
        expire("postbag-attachments", {"Prefix": ATTACHMENTS_PREFIX}, held_days(days)),
        expire("postbag-jobs", {"Prefix": JOBS_PREFIX}, held_days(days)),
        # Cancel and reschedule requests are read once, when they come (a request that
        # comes before its upload is kept in the held item); the site reads the results
        # of requests and re-drives soon, and receipts as long as they are kept.
        expire("postbag-control-requests", {"Prefix": CONTROL_PREFIX}, days.failed),
        expire("postbag-control-results", {"Prefix": CONTROL_RESULTS_PREFIX}, days.receipts),
        expire("postbag-redrive-results", {"Prefix": REDRIVE_RESULTS_PREFIX}, days.receipts),
        {"ID": "postbag-abort-multipart", "Status": "Enabled", "Filter": {"Prefix": ""},
         "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}},
    ]


def _rule_view(rule: dict) -> dict:
    keys = ("ID", "Status", "Filter", "Expiration", "AbortIncompleteMultipartUpload")
    view = {k: rule[k] for k in keys if k in rule}
    if "Expiration" in view:
        view["Expiration"] = {"Days": view["Expiration"].get("Days")}
    return view


def _encryption_view(config: dict) -> dict:
    rule = config["ServerSideEncryptionConfiguration"]["Rules"][0]
    default = rule["ApplyServerSideEncryptionByDefault"]
    return {
        "SSEAlgorithm": default["SSEAlgorithm"],
        "KMSMasterKeyID": default.get("KMSMasterKeyID", ""),
        "BucketKeyEnabled": rule.get("BucketKeyEnabled", False),
    }


def current_kms_key(s3: Any, stack: Stack, has_bucket: bool) -> str:
    """The SSE-KMS key the bucket already uses, so a re-run without --kms-key keeps it."""
    if not has_bucket:
        return ""
    try:
        view = _encryption_view(s3.get_bucket_encryption(Bucket=stack.bucket))
    except ClientError as exc:
        if error_code(exc) != "ServerSideEncryptionConfigurationNotFoundError":
            raise
        return ""
    return view["KMSMasterKeyID"] if view["SSEAlgorithm"] == "aws:kms" else ""


def bucket_exists(s3: Any, bucket: str) -> bool:
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as exc:
        if error_code(exc) in ("404", "NoSuchBucket", "NotFound"):
            return False
        if error_code(exc) in ("403", "AccessDenied"):
            # Bucket names are global: someone else (or a missing permission) has it.
            raise CommandError(
                f"bucket {bucket} exists but is not yours to use (403): choose another --bucket"
            ) from exc
        raise
    return True


def ensure_bucket(
    s3: Any,
    stack: Stack,
    days: Retention,
    kms_key_arn: str,
    has_bucket: bool,
    report: Report,
) -> None:
    b = stack.bucket
    what = f"s3://{b}"
    if has_bucket:
        report.add(what, UNCHANGED)
    else:
        extra = {}
        if stack.region != "us-east-1":
            extra["CreateBucketConfiguration"] = {"LocationConstraint": stack.region}
        s3.create_bucket(Bucket=b, ObjectOwnership="BucketOwnerEnforced", **extra)
        report.add(what, CREATED)
    report.converge(
        f"{what} public access block",
        lambda: s3.get_public_access_block(Bucket=b)["PublicAccessBlockConfiguration"],
        PUBLIC_ACCESS_BLOCK,
        lambda: s3.put_public_access_block(
            Bucket=b, PublicAccessBlockConfiguration=PUBLIC_ACCESS_BLOCK
        ),
        missing=["NoSuchPublicAccessBlockConfiguration"],
    )
    report.converge(
        f"{what} object ownership",
        lambda: s3.get_bucket_ownership_controls(Bucket=b)["OwnershipControls"]["Rules"],
        OWNERSHIP,
        lambda: s3.put_bucket_ownership_controls(Bucket=b, OwnershipControls={"Rules": OWNERSHIP}),
        missing=["OwnershipControlsNotFoundError"],
    )
    _ensure_encryption(s3, b, kms_key_arn, report)
    policy = tls_only_policy(stack)
    report.converge(
        f"{what} TLS-only policy",
        lambda: json.loads(s3.get_bucket_policy(Bucket=b)["Policy"]),
        policy,
        lambda: s3.put_bucket_policy(Bucket=b, Policy=json.dumps(policy)),
        missing=["NoSuchBucketPolicy"],
    )
    rules = lifecycle_rules(days)
    report.converge(
        f"{what} lifecycle rules",
        lambda: [
            _rule_view(r) for r in s3.get_bucket_lifecycle_configuration(Bucket=b)["Rules"]
        ],
        rules,
        lambda: s3.put_bucket_lifecycle_configuration(
            Bucket=b, LifecycleConfiguration={"Rules": rules}
        ),
        missing=["NoSuchLifecycleConfiguration"],
    )
    tags = sorted(stack.tag_list, key=lambda t: t["Key"])
    report.converge(
        f"{what} tags",
        lambda: sorted(s3.get_bucket_tagging(Bucket=b)["TagSet"], key=lambda t: t["Key"]),
        tags,
        lambda: s3.put_bucket_tagging(Bucket=b, Tagging={"TagSet": tags}),
        missing=["NoSuchTagSet"],
    )


def _ensure_encryption(s3: Any, bucket: str, kms_key_arn: str, report: Report) -> None:
    rule = encryption_rule(kms_key_arn)
    default = {"SSEAlgorithm": rule["SSEAlgorithm"]}
    if kms_key_arn:
        default["KMSMasterKeyID"] = kms_key_arn
    report.converge(
        f"s3://{bucket} default encryption",
        lambda: _encryption_view(s3.get_bucket_encryption(Bucket=bucket)),
        rule,
        lambda: s3.put_bucket_encryption(
            Bucket=bucket,
            ServerSideEncryptionConfiguration={
                "Rules": [
                    {
                        "ApplyServerSideEncryptionByDefault": default,
                        "BucketKeyEnabled": rule["BucketKeyEnabled"],
                    }
                ]
            },
        ),
        missing=["ServerSideEncryptionConfigurationNotFoundError"],
    )


def empty_and_delete_bucket(s3: Any, bucket: str) -> None:
    """Delete every object (all versions) and upload, then the bucket."""
    for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket):
        for upload in page.get("Uploads", []):
            s3.abort_multipart_upload(
                Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
            )
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        doomed = [
            {"Key": v["Key"], "VersionId": v["VersionId"]}
            for v in page.get("Versions", []) + page.get("DeleteMarkers", [])
        ]
        if doomed:
            answer = s3.delete_objects(Bucket=bucket, Delete={"Objects": doomed, "Quiet": True})
            if answer.get("Errors"):
                first = answer["Errors"][0]
                raise CommandError(
                    f"could not empty s3://{bucket}: {len(answer['Errors'])} objects refused "
                    f"(e.g. {first['Key']}: {first['Code']})"
                )
    s3.delete_bucket(Bucket=bucket)
