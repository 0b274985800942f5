"""The stand-in's cached parsing of DynamoDB condition expressions: the same answers as
moto's own parsing, whether the tree comes from the cache or not.

``cached_condition_parsing`` patches moto for the whole process, as the stand-in's
server does: it must change nothing but the cost, so the other tests are unaffected."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError
from conftest import LEDGER_TABLE

from standin.server import cached_condition_parsing

FREE = "attribute_not_exists(#id) OR #expiry < :now"


def put(client, key: str, now: int, names=None) -> str:
    try:
        client.put_item(TableName=LEDGER_TABLE,
                        Item={"id": {"S": key}, "expiration": {"N": "100"}},
                        ConditionExpression=FREE,
                        ExpressionAttributeNames=names or {"#id": "id", "#expiry": "expiration"},
                        ExpressionAttributeValues={":now": {"N": str(now)}})
    except ClientError as exc:
        return str(exc.response["Error"]["Code"])
    return "ok"


@pytest.fixture
def cached(dynamodb):
    cached_condition_parsing()
    return dynamodb


def test_the_same_condition_gives_each_item_its_own_answer(cached):
    assert put(cached, "a", now=50) == "ok"
    assert put(cached, "a", now=50) == "ConditionalCheckFailedException"  # the tree, cached
    assert put(cached, "b", now=50) == "ok"
    assert put(cached, "a", now=150) == "ok"  # other values: another tree


def test_a_cached_condition_still_has_its_names_checked(cached):
    extra = {"#id": "id", "#expiry": "expiration", "#unused": "status"}
    assert put(cached, "c", now=50, names=extra) == "ValidationException"
    assert put(cached, "c", now=50, names=extra) == "ValidationException"
    assert put(cached, "c", now=50) == "ok"
