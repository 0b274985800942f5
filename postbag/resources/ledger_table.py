"""The DynamoDB tables: the sender's exactly-once ledger, and the suppression list
(``chalicelib/suppression.py``), which has the same key and its own table so that listing
it is a Scan of suppressions alone."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from chalicelib.ledger import ATTRIBUTE_DEFINITIONS, KEY_SCHEMA, TTL_ATTRIBUTE
from postbag.aws import CommandError, error_code
from postbag.report import ABSENT, CREATED, DELETED, UNCHANGED, Report
from postbag.stack import Stack


def ensure_ledger(ddb: Any, stack: Stack, report: Report) -> None:
    ensure_table(ddb, stack, stack.ledger_table, report)


def ensure_suppression_table(ddb: Any, stack: Stack, report: Report) -> None:
    ensure_table(ddb, stack, stack.suppression_table, report)


def ensure_table(ddb: Any, stack: Stack, name: str, report: Report) -> None:
    """On-demand table, TTL on; an existing table with another key is refused."""
    try:
        table = ddb.describe_table(TableName=name)["Table"]
    except ClientError as exc:
        if error_code(exc) != "ResourceNotFoundException":
            raise
        ddb.create_table(
            TableName=name,
            AttributeDefinitions=ATTRIBUTE_DEFINITIONS,
            KeySchema=KEY_SCHEMA,
            BillingMode="PAY_PER_REQUEST",
            Tags=stack.tag_list,
        )
        ddb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1})
        report.add(f"DynamoDB table {name}", CREATED)
    else:
        if table["KeySchema"] != KEY_SCHEMA:
            raise CommandError(f"table {name} exists with another key schema; not touching it")
        report.add(f"DynamoDB table {name}", UNCHANGED)
    report.converge(
        f"DynamoDB table {name} TTL on {TTL_ATTRIBUTE}",
        lambda: _ttl(ddb, name),
        {"TimeToLiveStatus": "ENABLED", "AttributeName": TTL_ATTRIBUTE},
        lambda: ddb.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE},
        ),
    )


def _ttl(ddb: Any, name: str) -> dict[str, Any]:
    ttl = ddb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
    status = ttl.get("TimeToLiveStatus")
    return {
        # Right after enabling, AWS says ENABLING for up to an hour: same intent.
        "TimeToLiveStatus": "ENABLED" if status == "ENABLING" else status,
        "AttributeName": ttl.get("AttributeName"),
    }


def delete_ledger(ddb: Any, stack: Stack, report: Report) -> None:
    """The ledger's table and the suppression list's."""
    for name in (stack.ledger_table, stack.suppression_table):
        try:
            ddb.delete_table(TableName=name)
        except ClientError as exc:
            if error_code(exc) != "ResourceNotFoundException":
                raise
            report.add(f"DynamoDB table {name}", ABSENT)
            continue
        report.add(f"DynamoDB table {name}", DELETED)
