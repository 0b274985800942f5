"""``postbag suppression list|add|remove`` against moto, on the committed dev stage's tables."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from chalicelib.ledger import create_table
from chalicelib.suppression import address_hash
from postbag import cli

STAGE = ["--stage", "dev", "--region", "us-east-1"]


@pytest.fixture
def tables():
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        create_table(dynamodb, "postbag-dev-ledger")
        create_table(dynamodb, "postbag-dev-suppression")
        yield dynamodb


def listed(capsys) -> list[dict]:
    capsys.readouterr()
    assert cli.main(["suppression", "list", *STAGE, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_add_list_and_remove(tables, capsys):
    assert cli.main(["suppression", "add", *STAGE, " Bob@Example.NET "]) == 0
    assert cli.main(["suppression", "add", *STAGE, "--scope", "list:news", "ana@example.net"]) == 0
    entries = listed(capsys)
    assert [(e["address"], e["scope"], e["reason"], e["source"]) for e in entries] == [
        ("ana@example.net", "list:news", "manual", "operator"),
        ("bob@example.net", "all", "manual", "operator")]
    assert entries[1]["address_hash"] == address_hash("bob@example.net")
    assert cli.main(["suppression", "list", *STAGE]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["ana@example.net", "list:news", "manual", "operator"]
    assert cli.main(["suppression", "remove", *STAGE, "bob@example.net"]) == 0
    assert [e["address"] for e in listed(capsys)] == ["ana@example.net"]
    # The export is marked for the minute's run.
    pending = tables.get_item(TableName="postbag-dev-ledger",
                              Key={"id": {"S": "postbag-sender#feedback#pending"}})["Item"]
    assert "export_due" in pending


@pytest.mark.parametrize(("args", "message"), [
    (["--scope", "list:News Letter", "a@example.net"], "expected all or list:NAME"),
    (["not-an-address"], "malformed address"),
], ids=["bad-scope", "bad-address"])
def test_bad_input_is_refused_naming_it(tables, capsys, args, message):
    assert cli.main(["suppression", "add", *STAGE, *args]) == 1
    assert message in capsys.readouterr().err
    assert listed(capsys) == []
