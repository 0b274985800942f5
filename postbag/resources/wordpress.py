"""The WordPress side's credentials: a managed policy, optionally a user or a role.

The policy is a customer-managed one (path ``/postbag/``) so that teardown can
find every user and role it is attached to without a record of them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from postbag.aws import error_code
from postbag.report import ABSENT, CREATED, DELETED, UNCHANGED, UPDATED, Report
from postbag.stack import APP_NAME, Stack

PATH = f"/{APP_NAME}/"
MAX_POLICY_VERSIONS = 5


@dataclass(frozen=True)
class AccessKey:
    key_id: str
    secret: str


def _missing(exc: ClientError) -> bool:
    return error_code(exc) == "NoSuchEntity"


def ensure_policy(iam: Any, stack: Stack, document: dict, report: Report) -> None:
    arn = stack.wordpress_policy_arn
    what = f"IAM policy {stack.wordpress_policy}"
    try:
        version = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
    except ClientError as exc:
        if not _missing(exc):
            raise
        iam.create_policy(
            PolicyName=stack.wordpress_policy,
            Path=PATH,
            PolicyDocument=json.dumps(document),
            Description=f"Postbag {stack.stage}: WordPress may only upload under the queue prefix",
            Tags=stack.tag_list,
        )
        report.add(what, CREATED)
        return
    current = iam.get_policy_version(PolicyArn=arn, VersionId=version)["PolicyVersion"]
    if _document(current["Document"]) == document:
        report.add(what, UNCHANGED)
        return
    _make_room_for_a_version(iam, arn)
    iam.create_policy_version(PolicyArn=arn, PolicyDocument=json.dumps(document), SetAsDefault=True)
    report.add(what, UPDATED)


def _document(document: Any) -> dict:
    # botocore decodes policy documents to dicts; some stand-ins answer a string.
    return json.loads(document) if isinstance(document, str) else document


def _make_room_for_a_version(iam: Any, arn: str) -> None:
    versions = iam.list_policy_versions(PolicyArn=arn)["Versions"]
    old = sorted((v for v in versions if not v["IsDefaultVersion"]), key=lambda v: v["CreateDate"])
    if len(versions) >= MAX_POLICY_VERSIONS and old:
        iam.delete_policy_version(PolicyArn=arn, VersionId=old[0]["VersionId"])


def ensure_user(iam: Any, stack: Stack, report: Report) -> AccessKey | None:
    """The user with the policy attached; a key only when it has none (shown once)."""
    name = stack.wordpress_user
    try:
        iam.get_user(UserName=name)
        report.add(f"IAM user {name}", UNCHANGED)
    except ClientError as exc:
        if not _missing(exc):
            raise
        iam.create_user(UserName=name, Path=PATH, Tags=stack.tag_list)
        report.add(f"IAM user {name}", CREATED)
    _ensure_attached(
        iam.list_attached_user_policies(UserName=name)["AttachedPolicies"],
        lambda: iam.attach_user_policy(UserName=name, PolicyArn=stack.wordpress_policy_arn),
        f"IAM user {name} policy attachment",
        stack,
        report,
    )
    if iam.list_access_keys(UserName=name)["AccessKeyMetadata"]:
        report.add(f"IAM access key of {name} (not shown again)", UNCHANGED)
        return None
    key = iam.create_access_key(UserName=name)["AccessKey"]
    report.add(f"IAM access key of {name}", CREATED)
    return AccessKey(key["AccessKeyId"], key["SecretAccessKey"])


def _ensure_attached(
    attached: list[dict], attach: Callable[[], Any], what: str, stack: Stack, report: Report
) -> None:
    if stack.wordpress_policy_arn in {p["PolicyArn"] for p in attached}:
        report.add(what, UNCHANGED)
    else:
        attach()
        report.add(what, CREATED)


def ensure_role_attachment(iam: Any, stack: Stack, role: str, report: Report) -> None:
    _ensure_attached(
        iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"],
        lambda: iam.attach_role_policy(RoleName=role, PolicyArn=stack.wordpress_policy_arn),
        f"IAM role {role} policy attachment",
        stack,
        report,
    )


def delete_all(iam: Any, stack: Stack, report: Report) -> None:
    """Detach the policy from everyone, delete our user and its keys, then the policy."""
    arn = stack.wordpress_policy_arn
    try:
        iam.get_policy(PolicyArn=arn)
    except ClientError as exc:
        if not _missing(exc):
            raise
        report.add(f"IAM policy {stack.wordpress_policy}", ABSENT)
        _delete_user(iam, stack.wordpress_user, report)
        return
    entities = iam.list_entities_for_policy(PolicyArn=arn)
    for role in entities.get("PolicyRoles", []):
        iam.detach_role_policy(RoleName=role["RoleName"], PolicyArn=arn)
        report.add(f"IAM role {role['RoleName']} policy attachment", DELETED)
    for user in entities.get("PolicyUsers", []):
        iam.detach_user_policy(UserName=user["UserName"], PolicyArn=arn)
    _delete_user(iam, stack.wordpress_user, report)
    for version in iam.list_policy_versions(PolicyArn=arn)["Versions"]:
        if not version["IsDefaultVersion"]:
            iam.delete_policy_version(PolicyArn=arn, VersionId=version["VersionId"])
    iam.delete_policy(PolicyArn=arn)
    report.add(f"IAM policy {stack.wordpress_policy}", DELETED)


def _delete_user(iam: Any, name: str, report: Report) -> None:
    try:
        keys = iam.list_access_keys(UserName=name)["AccessKeyMetadata"]
    except ClientError as exc:
        if not _missing(exc):
            raise
        return
    for key in keys:
        iam.delete_access_key(UserName=name, AccessKeyId=key["AccessKeyId"])
    for policy in iam.list_attached_user_policies(UserName=name)["AttachedPolicies"]:
        iam.detach_user_policy(UserName=name, PolicyArn=policy["PolicyArn"])
    iam.delete_user(UserName=name)
    report.add(f"IAM user {name}", DELETED)


def wp_config(stack: Stack, kms_key_arn: str, key: AccessKey | None) -> str:
    """The constants to paste into wp-config.php."""
    values = {
        "POSTBAG_BUCKET": stack.bucket,
        "POSTBAG_REGION": stack.region,
    }
    if kms_key_arn:
        values |= {"POSTBAG_SSE": "aws:kms", "POSTBAG_KMS_KEY_ID": kms_key_arn}
    if key:
        values |= {
            "POSTBAG_AWS_ACCESS_KEY_ID": key.key_id,
            "POSTBAG_AWS_SECRET_ACCESS_KEY": key.secret,
        }
    return "".join(f"define( '{name}', '{value}' );\n" for name, value in values.items())
