"""Suppression documents: the inbox format, the export's schema, the address hash."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from conftest import fixture_bytes, load_fixture

from chalicelib.errors import BatchFormatError, HeaderInjectionError
from chalicelib.formats.suppression import parse_inbox, validate_export
from chalicelib.suppression import Change, address_hash, normalise

VECTORS = load_fixture("suppression/address-hash.json")["vectors"]


@pytest.mark.parametrize("vector", VECTORS, ids=[v["id"] for v in VECTORS])
def test_addresses_are_normalised_and_hashed_as_the_plugin_does(vector):
    assert normalise(vector["address"]) == vector["normalised"]
    assert address_hash(vector["address"]) == vector["address_hash"]


def test_an_unsubscribe_is_read_normalised():
    key = "suppression/inbox/unsubscribe.json"
    assert parse_inbox(fixture_bytes(key), key) == Change(
        "add", "list:new-posts", "zoe@example.net", "unsubscribe", "site",
        datetime(2026, 11, 30, 0, 40, tzinfo=UTC))


def test_a_removal_keeps_its_milliseconds():
    key = "suppression/inbox/manual-remove.json"
    change = parse_inbox(fixture_bytes(key), key)
    assert (change.action, change.scope, change.at.microsecond) == ("remove", "all", 250000)


BAD = [
    ("unknown-action", "action", "must be one of"),
    ("scope-bad", "scope", "must match pattern"),
    ("address-malformed", "address", "malformed address"),
    ("reason-bounce-from-site", "reason", "must be one of"),
    ("at-not-utc", "at", "must match pattern"),
    ("at-missing", "(document)", "must contain"),
    ("version-2", "version", "must be same as const"),
    ("extra-field", "(document)", "must not contain"),
    ("not-json", "(file)", "JSON"),
]


@pytest.mark.parametrize(("name", "field", "reason"), BAD, ids=[b[0] for b in BAD])
def test_a_bad_inbox_document_names_the_field(name, field, reason):
    key = f"suppression/bad/{name}.json"
    with pytest.raises(BatchFormatError) as caught:
        parse_inbox(fixture_bytes(key), key)
    assert (caught.value.field, caught.value.batch) == (field, key)
    assert reason in caught.value.reason


def test_an_address_with_a_line_break_is_header_injection():
    key = "suppression/bad/address-header-injection.json"
    with pytest.raises(HeaderInjectionError) as caught:
        parse_inbox(fixture_bytes(key), key)
    assert caught.value.field == "address"


def test_the_export_example_matches_its_schema():
    validate_export(load_fixture("suppression/export/example.json"))
