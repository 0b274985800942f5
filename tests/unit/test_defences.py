"""The sender's defences one by one, without I/O: what the handler-level table
(tests/functional/test_hostile_input.py) relies on."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from conftest import load_fixture

from chalicelib import fields
from chalicelib.errors import MailBuildError
from chalicelib.html_text import html_to_text
from chalicelib.mime import raw_message
from chalicelib.model import Mail, Meta
from chalicelib.outcome import MAX_KEY_BYTES, quarantine_name
from chalicelib.pipeline import build

EW_BCC = "=?utf-8?b?DQpCY2M6IGV2aWxAYmFkLm5ldA==?="
DATE = datetime(2026, 11, 22, 7, tzinfo=UTC)


def header_names(raw: bytes) -> list[str]:
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    return [line.split(b":", 1)[0].decode().lower() for line in head if line[:1] not in b" \t"]


# Values the batch stage refuses, given straight to the builder: the MIME layer alone must
# still never write them as a header line of their own, whatever the Python patch level.
def test_an_encoded_word_in_an_unstructured_header_stays_text():
    meta = Meta(sender=("Blog", "news@example.org"), headers=(("X-Note", f"a {EW_BCC}"),))
    mail = Mail(id="m", to=(("", "bob@example.net"),), subject=f"Hi {EW_BCC} Café", text="x")
    raw = raw_message(mail, meta, [], DATE)
    assert "bcc" not in header_names(raw)
    assert f"Subject: Hi {EW_BCC} =?utf-8?q?Caf=C3=A9?=".encode() in raw


def test_an_encoded_word_in_a_display_name_fails_the_mail_by_name():
    meta = Meta(sender=(EW_BCC, "news@example.org"))
    mail = Mail(id="m", to=(("", "bob@example.net"),), subject="Hi", text="x")
    with pytest.raises(MailBuildError) as caught:
        build(meta, DATE, "b1", mail, [])
    assert caught.value.mail == "m" and "are not those set" in caught.value.reason


def test_whatever_the_email_package_raises_fails_that_mail_alone():
    meta = Meta(sender=("Blog", "news@example.org"))
    mail = Mail(id="m", to=(("", "bob@example.net"),), subject="lone \ud800", text="x")
    with pytest.raises(MailBuildError, match="batch b1, mail m: field \\(MIME message\\)"):
        build(meta, DATE, "b1", mail, [])


@pytest.mark.parametrize("value", ["undefined", "UTF-16", "rot13", "base64", "idna", "utf-7",
                                   "unicode_escape", "x-unknown", "hz", "cp037"])
def test_a_charset_that_cannot_write_mail_becomes_utf8(value):
    assert fields.charset(value) == "utf-8"


@pytest.mark.parametrize("value", ["UTF-8", "iso-8859-1", "windows-1252", "koi8-r", "shift_jis"])
def test_a_mail_charset_is_kept(value):
    assert fields.charset(value) == value.lower()


def test_the_reserved_lists_are_the_ones_the_plugin_shares():
    rules = load_fixture("sending-rules.json")
    assert set(rules["builder_headers"]) == fields.RESERVED_HEADERS
    assert set(rules["trace_headers"]) == fields.TRACE_HEADERS
    assert tuple(sorted(rules["trace_header_prefixes"])) == tuple(
        sorted(fields.TRACE_HEADER_PREFIXES))
    assert set(rules["refused_extensions"]) == fields.REFUSED_EXTENSIONS


def test_a_key_too_long_for_the_quarantine_prefix_is_hashed():
    fits = "queue/" + "k" * 900 + ".json"
    assert quarantine_name(fits) == ("quarantine/" + "k" * 900 + ".json", False)
    for key in ("queue/" + "k" * 1013 + ".json", "queue/" + "é" * 505 + ".json"):
        target, hashed = quarantine_name(key)
        assert hashed and target.startswith("quarantine/hashed/")
        assert len((target + ".error.json").encode()) <= MAX_KEY_BYTES


# Every pattern that made html.parser slow or raise, at 600 KB. Not a timing
# assertion: the bound is a hundred times what a linear pass takes, and the
# quadratic parser needed over an hour for the first of them.
SLOW_HTML = ["<a ", "<div", "<!--", "<![", '<a href="', "<a x=", "<<", "</", "<?", "<p>"]


@pytest.mark.parametrize("unit", SLOW_HTML, ids=range(len(SLOW_HTML)))
def test_html_to_text_is_linear_in_its_input(unit):
    html = (unit * (600_000 // len(unit) + 1))[:600_000]
    started = time.perf_counter()
    html_to_text(html + "<p>end</p>")
    assert time.perf_counter() - started < 10


def test_html_to_text_keeps_tables_pre_and_skips_scripts():
    html = ("<table><tr><td>a</td><td>b</td></tr></table><pre>x = 1\ny = 2</pre>"
            "<script>if (a<b) {}</script><p>ok &lt;3</p>")
    assert html_to_text(html) == "a  b\n\nx = 1\ny = 2\n\nok <3\n"


def test_a_batch_cannot_set_the_tag_that_carries_the_ledger_key(settings):
    """SES's Send event would bring the batch's value back as another mail's evidence."""
    import json

    from conftest import load_fixture

    from chalicelib.errors import BatchFormatError
    from chalicelib.formats import parse_batch

    doc = load_fixture("batches/plain.json")
    doc["meta"]["tags"] = {"postbag-key": "0" * 32}
    with pytest.raises(BatchFormatError) as caught:
        parse_batch(json.dumps(doc).encode(), "queue/tag.json", settings)
    assert caught.value.field == "meta.tags.postbag-key.name"
    assert "set by the sender" in caught.value.reason
