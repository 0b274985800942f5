"""RFC 8058 headers: exactly what a list mail carries, and the URLs that are refused."""

from __future__ import annotations

import fastjsonschema
import pytest
from conftest import load_fixture

from chalicelib.errors import BatchFormatError, HeaderInjectionError
from chalicelib.unsubscribe import MAX_URL, check_batch_headers, headers, refuse_job_headers, url

URL = "https://blog.example.org/wp-json/postbag/v1/unsubscribe?list=news&t=AbC-_123"


def test_the_two_headers_are_exactly_rfc_8058s():
    assert headers(URL) == (
        ("List-Unsubscribe", f"<{URL}>"),
        ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
    )


def test_a_mailto_follows_the_one_https_uri():
    assert headers(URL, "unsubscribe@example.org")[0] == (
        "List-Unsubscribe", f"<{URL}>, <mailto:unsubscribe@example.org?subject=unsubscribe>")


BAD_URLS = [
    ("http", "http://blog.example.org/u?t=1", "https URL"),
    ("no-scheme", "blog.example.org/u", "https URL"),
    ("closing-bracket", "https://blog.example.org/u>, <https://evil.example/x", "https URL"),
    ("comma", "https://blog.example.org/u?a=1,2", "https URL"),
    ("space", "https://blog.example.org/u?a=1 2", "https URL"),
    ("quote", 'https://blog.example.org/u?a="x"', "https URL"),
    ("non-ascii", "https://blog.example.org/désabonner", "https URL"),
    ("too-long", "https://blog.example.org/?t=" + "a" * 950, "longer than 975"),
]


@pytest.mark.parametrize(("value", "reason"), [(v, r) for _, v, r in BAD_URLS],
                         ids=[i for i, _, _ in BAD_URLS])
def test_a_url_that_is_not_one_https_uri_is_refused_naming_the_field(value, reason):
    with pytest.raises(BatchFormatError) as caught:
        url(value, "unsubscribe_url", "job-1", "0:3")
    assert caught.value.field == "unsubscribe_url"
    assert reason in caught.value.reason


@pytest.mark.parametrize("value", ["https://a.example/u\r\nBcc: x@evil.example",
                                   "https://a.example/u\x00", "https://a.example/u\x7f"],
                         ids=["crlf", "nul", "del"])
def test_control_characters_are_refused_as_header_injection(value):
    with pytest.raises(HeaderInjectionError):
        url(value, "unsubscribe_url", "job-1", "0:3")


def test_a_list_batch_with_both_headers_passes():
    check_batch_headers([("X-Other", "1"), *headers(URL, "u@example.org")], "batch-1")


BAD_BATCH_HEADERS = [
    ("missing-list-unsubscribe", [("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")],
     "meta.headers", "one List-Unsubscribe header is required"),
    ("missing-post", [("List-Unsubscribe", f"<{URL}>")], "meta.headers",
     "List-Unsubscribe-Post: List-Unsubscribe=One-Click"),
    ("wrong-post-value", [("List-Unsubscribe", f"<{URL}>"), ("List-Unsubscribe-Post", "yes")],
     "meta.headers", "List-Unsubscribe-Post"),
    ("twice", [*headers(URL), ("List-Unsubscribe", f"<{URL}>")], "meta.headers",
     "one List-Unsubscribe header"),
    ("no-brackets", [("List-Unsubscribe", URL), headers(URL)[1]], "meta.headers[0].value",
     "<https://...>"),
    ("http-uri", [("List-Unsubscribe", "<http://a.example/u>"), headers(URL)[1]],
     "meta.headers[0].value", "<https://...>"),
    ("mailto-only", [("List-Unsubscribe", "<mailto:u@example.org?subject=unsubscribe>"),
                     headers(URL)[1]], "meta.headers[0].value", "<https://...>"),
    ("two-https", [("List-Unsubscribe", f"<{URL}>, <{URL}>"), headers(URL)[1]],
     "meta.headers[0].value", "<https://...>"),
]


@pytest.mark.parametrize(("given", "field", "reason"), [c[1:] for c in BAD_BATCH_HEADERS],
                         ids=[c[0] for c in BAD_BATCH_HEADERS])
def test_a_list_batch_without_well_formed_headers_is_refused(given, field, reason):
    with pytest.raises(BatchFormatError) as caught:
        check_batch_headers(given, "batch-1")
    assert (caught.value.field, caught.value.batch) == (field, "batch-1")
    assert reason in caught.value.reason


def test_a_list_job_may_not_set_the_headers_the_sender_builds():
    with pytest.raises(BatchFormatError) as caught:
        refuse_job_headers([("X-A", "1"), ("list-unsubscribe", "<https://a.example/>")], "job-1")
    assert caught.value.field == "meta.headers[1].name"


def _raw(headers_: tuple[tuple[str, str], ...]) -> bytes:
    from datetime import UTC, datetime

    from chalicelib.mime import raw_message
    from chalicelib.model import Mail, Meta

    meta = Meta(sender=("", "news@example.org"), headers=headers_)
    mail = Mail(id="m1", to=(("", "zoe@example.net"),), subject="s", text="t")
    return raw_message(mail, meta, [], datetime(2026, 11, 30, tzinfo=UTC))


def test_the_raw_message_carries_both_headers_exactly_on_one_line_each():
    raw = _raw(headers(URL))
    assert (f"\r\nList-Unsubscribe: <{URL}>\r\n"
            f"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n").encode() in raw


def test_a_long_url_is_never_encoded_only_folded_after_the_comma():
    long_url = "https://blog.example.org/u?t=" + "a" * 940  # MAX_URL, nearly
    raw = _raw(headers(url(long_url, "unsubscribe_url", "job-1"), "u@example.org"))
    assert (f"\r\nList-Unsubscribe: <{long_url}>,\r\n"
            f" <mailto:u@example.org?subject=unsubscribe>\r\n").encode() in raw
    assert b"=?utf-8?" not in raw
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998


def test_a_custom_non_ascii_value_without_a_list_is_still_encoded():
    raw = _raw((("List-Unsubscribe", "<https://a.example/dé>"),))
    assert b"List-Unsubscribe: =?utf-8?q?" in raw


def test_a_list_batch_as_the_plugin_writes_it_parses_with_its_list_and_headers(settings):
    from conftest import parse_fixture

    batch = parse_fixture("batches/list.json", settings)
    assert batch.meta.list_name == "weekly"
    assert dict(batch.meta.headers)["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


# --- the contract: the schema, the sender and the plugin agree on one limit -------------

ROW_SCHEMA = fastjsonschema.compile({
    **load_fixture("job-v2.schema.json"),
    "$ref": "#/definitions/recipient"})
AT_LIMIT = "https://blog.example.org/u?t=" + "a" * (MAX_URL - len("https://blog.example.org/u?t="))
CONTRACT = [
    ("at-the-limit", AT_LIMIT, True),
    ("one-over", AT_LIMIT + "a", False),
    ("space", "https://blog.example.org/u?a=1 2", False),
    ("closing-bracket", "https://blog.example.org/u>", False),
    ("comma", "https://blog.example.org/u?a=1,2", False),
    ("non-ascii", "https://blog.example.org/désabonner", False),
    ("http", "http://blog.example.org/u", False),
]


@pytest.mark.parametrize(("value", "good"), [(v, g) for _, v, g in CONTRACT],
                         ids=[i for i, _, _ in CONTRACT])
def test_the_job_schema_and_the_sender_take_the_same_urls(value, good):
    row = {"email": "a@example.net", "unsubscribe_url": value}
    try:
        ROW_SCHEMA(row)
        schema_ok = True
    except fastjsonschema.JsonSchemaValueException:
        schema_ok = False
    try:
        url(value, "unsubscribe_url", "job-1")
        sender_ok = True
    except BatchFormatError:
        sender_ok = False
    assert (schema_ok, sender_ok) == (good, good)


def test_the_limit_is_what_fits_a_header_line():
    assert MAX_URL == 975  # the contract's figure (docs/suppression.md)
    line = f"List-Unsubscribe: <{AT_LIMIT}>,"
    assert len(line) <= 998 and len(AT_LIMIT) == MAX_URL
