"""The MIME builder: golden files byte for byte, and every message parsed back."""

from __future__ import annotations

import base64
import email
import os
from datetime import UTC, datetime
from email import policy

import pytest
from conftest import FIXTURES, parse_fixture

from chalicelib.errors import MessageTooLarge
from chalicelib.mime import (
    BOUNDARY_PREFIX,
    POLICY,
    SES_MAX_RAW_BYTES,
    build_message,
    encode_attachment,
    raw_message,
)
from chalicelib.model import Mail, Meta

# (golden file, batch fixture, mail index)
GOLDEN = [
    ("plain-alternative.eml", "batches/plain.json", 0),
    ("html-only.eml", "batches/plain.json", 1),
    ("attachments-custom-headers.eml", "batches/with-attachments.json", 0),
    ("legacy-layout.eml", "batches/legacy-layout.json", 0),
]


UPLOADED = datetime(2026, 11, 22, 7, 5, tzinfo=UTC)  # dates the original-layout batch


def built(relative, index, settings):
    batch = parse_fixture(relative, settings, received_at=UPLOADED)
    mail = batch.mails[index]
    files = [(a, a.content_base64) for a in mail.attachments]
    return batch, mail, raw_message(mail, batch.meta, files, batch.created_at)


def unwire(text: str) -> str:
    """A text part as written: without SMTP's CRLF and the final newline the builder adds."""
    return text.replace("\r\n", "\n").rstrip("\n")


@pytest.mark.parametrize("golden, relative, index", GOLDEN, ids=[g[0] for g in GOLDEN])
def test_matches_golden_file(settings, golden, relative, index):
    _, _, raw = built(relative, index, settings)
    path = FIXTURES / "golden" / golden
    if os.environ.get("POSTBAG_UPDATE_GOLDEN") == "1":  # regenerate after a deliberate change
        path.write_bytes(raw)
    assert raw == path.read_bytes()


@pytest.mark.parametrize("golden, relative, index", GOLDEN, ids=[g[0] for g in GOLDEN])
def test_parses_back_to_what_the_batch_said(settings, golden, relative, index):
    batch, mail, raw = built(relative, index, settings)
    parsed = email.message_from_bytes(raw, policy=policy.default)
    assert parsed["Subject"] == mail.subject
    assert [(a.display_name, a.addr_spec) for a in parsed["To"].addresses] == list(mail.to)
    assert parsed["From"].addresses[0].display_name == batch.meta.sender[0]
    assert "Bcc" not in parsed, "Bcc goes to SES as destinations, never into the headers"
    for name, value in batch.meta.headers:
        assert parsed[name] == value
    body = parsed.get_body(("plain",))
    assert body is not None and body.get_content().strip()
    if mail.html is not None:
        assert unwire(parsed.get_body(("html",)).get_content()) == mail.html
    else:
        assert unwire(parsed.get_body(("plain",)).get_content()) == mail.text.rstrip("\n")
    got = {part.get_filename(): part.get_payload(decode=True) for part in parsed.iter_attachments()}
    assert got == {a.filename: base64.b64decode(a.content_base64) for a in mail.attachments}
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998


def test_long_lines_are_wrapped_by_encoding(settings):
    batch = parse_fixture("batches/plain.json", settings)
    mail = Mail(id="long", to=batch.mails[1].to, subject="s", text="x" * 5000)
    raw = raw_message(mail, batch.meta, [], batch.created_at)
    assert max(len(line) for line in raw.split(b"\r\n")) <= 78
    parsed = email.message_from_bytes(raw, policy=policy.default)
    assert unwire(parsed.get_content()) == "x" * 5000


def test_charset_falls_back_to_utf8_when_the_batch_charset_cannot_hold_the_body(settings):
    batch = parse_fixture("batches/plain.json", settings)
    meta = Meta(sender=batch.meta.sender, charset="iso-8859-1")
    mail = Mail(id="a", to=batch.mails[0].to, subject="s", text="Snow ☃")
    latin = Mail(id="b", to=batch.mails[0].to, subject="s", text="Café")
    assert build_message(mail, meta, [], batch.created_at).get_content_charset() == "utf-8"
    assert build_message(latin, meta, [], batch.created_at).get_content_charset() == "iso-8859-1"


def test_message_over_the_ses_limit_is_refused(settings):
    batch = parse_fixture("batches/with-attachments.json", settings)
    mail = batch.mails[0]
    attachment = mail.attachments[0]
    big = os.urandom(SES_MAX_RAW_BYTES * 3 // 4)  # fits raw, not once base64-encoded
    with pytest.raises(MessageTooLarge, match="SES accepts at most"):
        raw_message(mail, batch.meta, [(attachment, encode_attachment(big))], batch.created_at)


def test_any_line_ending_in_a_body_goes_out_as_crlf(settings):
    batch = parse_fixture("batches/plain.json", settings)
    mail = Mail(
        id="eol", to=batch.mails[1].to, subject="s", text="a\r\nb\rc\nd"
    )
    raw = raw_message(mail, batch.meta, [], batch.created_at)
    body = raw.split(b"\r\n\r\n", 1)[1]
    assert body.replace(b"\r\n", b"") == b"abcd"
    assert b"\r" not in body.replace(b"\r\n", b"") and b"\n" not in body.replace(b"\r\n", b"")


def test_attachment_lines_are_what_encodebytes_writes(settings):
    batch = parse_fixture("batches/with-attachments.json", settings)
    mail, attachment = batch.mails[0], batch.mails[0].attachments[0]
    for size in (0, 1, 2, 56, 57, 58, 114, 1000):
        data = bytes(range(256)) * 4
        files = [(attachment, encode_attachment(data[:size]))]
        part = next(build_message(mail, batch.meta, files, batch.created_at).iter_attachments())
        assert part.get_payload() == base64.encodebytes(data[:size]).decode(), size
        assert part.get_payload(decode=True) == data[:size]


def test_shared_headers_fold_for_the_policy_at_hand(settings):
    """Header objects are cached across messages; their folding must still follow the policy."""
    batch = parse_fixture("batches/plain.json", settings)
    mail = Mail(
        id="fold", to=batch.mails[0].to, subject="word " * 30, text="body"
    )
    message = build_message(mail, batch.meta, [], batch.created_at)
    for width in (78, 40, 78):
        folded = POLICY.clone(max_line_length=width).fold("Subject", message["Subject"])
        assert max(len(line) for line in folded.splitlines()) <= width
        assert folded.count("\n") > (1 if width == 78 else 3)


def test_boundaries_are_fixed_unless_a_body_holds_them(settings):
    batch = parse_fixture("batches/plain.json", settings)
    mail = batch.mails[1]
    other = Mail(id="other", to=(("", "dan@example.net"),), subject="x",
                           html=mail.html + "<p>P.S.</p>")
    quoting = Mail(id="quoting", to=mail.to, subject="x", html="<p>Quoted</p>",
                             text=f"--{BOUNDARY_PREFIX}0\nA body quoting a raw Postbag mail.\n")

    def boundary(m):
        return build_message(m, batch.meta, [], batch.created_at).get_boundary()

    assert boundary(mail) == boundary(other) == f"{BOUNDARY_PREFIX}0"
    assert boundary(quoting) not in quoting.text
    raw = raw_message(quoting, batch.meta, [], batch.created_at)
    body = raw.split(b"\r\n\r\n", 1)[1]
    delimiters = [line for line in body.split(b"\r\n") if boundary(quoting).encode() in line]
    delimiter = f"--{boundary(quoting)}".encode()
    assert delimiters == [delimiter, delimiter, delimiter + b"--"]
    parsed = email.message_from_bytes(raw, policy=policy.default)
    assert unwire(parsed.get_body(("plain",)).get_content()) == quoting.text.rstrip("\n")
