"""The hostile-input table: batch files built to break the sender, each with the
refusal it must meet, and one way to run a case through the real handler.

Each case is a batch of two mails (the first always sound) changed in one
place. What must happen is one of:

- ``Quarantined(field, words)``: the envelope is unreadable; the batch is moved
  to the quarantine prefix with an error document naming the field and reason;
- ``MailFailed(field, words)``: the second mail fails with the field and reason
  in its receipt, the first is sent;
- ``AllFailed(field, words)``: every mail fails with that reason (the From);
- ``Sent()``: the input is harmless once handled (a charset the sender replaces
  with UTF-8, a TAB in a subject): both mails go out.

Whatever the case, the handler returns normally and nothing a batch says adds a
recipient or a header: every message moto's SES stored is parsed back and its
recipients and header names checked against the sound batch's.

Used by ``tests/functional/test_hostile_input.py`` and ``bench/hostile.py``.
"""

from __future__ import annotations

import copy
import email
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from email import policy
from typing import Any
from urllib.parse import quote_plus

EW_BCC = "=?utf-8?b?DQpCY2M6IGV2aWxAYmFkLm5ldA==?="  # decodes to "\r\nBcc: evil@bad.net"
EW_Q_BCC = "=?utf-8?q?=0D=0ABcc:_evil@bad.net?="
GOOD_ID, BAD_ID = "6f1c2a8e-1d2b-4c3a-8e9f-000000000001", "6f1c2a8e-1d2b-4c3a-8e9f-000000000002"
PIXEL = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8/5+hHgAHggJ/PchI7wAAAABJRU5ErkJggg=="
)

# Everyone a sound batch may reach, and every header its messages may carry.
RECIPIENTS = frozenset(
    {"zoe@example.net", "bob@example.net", "editors@example.org", "archive@example.org",
     "bob@xn--bcher-kva.example"}
)
HEADERS = frozenset(
    "from to cc reply-to subject date mime-version content-type content-transfer-encoding "
    "list-unsubscribe x-postbag-note".split()
)


@dataclass(frozen=True)
class Quarantined:
    field: str
    words: str


@dataclass(frozen=True)
class MailFailed:
    field: str
    words: str


@dataclass(frozen=True)
class AllFailed:
    field: str
    words: str


@dataclass(frozen=True)
class Sent:
    pass


Expected = Quarantined | MailFailed | AllFailed | Sent


@dataclass(frozen=True)
class Case:
    id: str
    category: str
    expected: Expected
    change: Callable[[dict[str, Any]], Any] | None = None  # edits the document, or returns bytes
    key: str | None = None  # the object key, when the key itself is the input
    body: bytes | None = field(default=None, repr=False)  # the file, when it is no document


def base_document(batch_id: str) -> dict[str, Any]:
    """Two sound mails sent through SendRawEmail (a custom header), with every kind of field."""
    return {
        "version": 1,
        "batch_id": batch_id,
        "site": {"url": "https://blog.example.org", "blog_id": 1},
        "created_at": "2026-11-22T07:00:00Z",
        "meta": {
            "from": "Blog <news@example.org>",
            "reply_to": ["Editors <editors@example.org>"],
            "cc": ["Editors <editors@example.org>"],
            "bcc": ["archive@example.org"],
            "content_type": "text/html",
            "charset": "UTF-8",
            "headers": [{"name": "List-Unsubscribe", "value": "<https://blog.example.org/u>"}],
            "configuration_set": "postbag",
            "tags": {"source": "new-post"},
        },
        "emails": [
            {"id": GOOD_ID, "to": ["Zoë <zoe@example.net>"], "subject": "Sound mail",
             "html": "<p>Hello Zoë</p>"},
            {"id": BAD_ID, "to": ["Bob <bob@example.net>"], "subject": "Second mail",
             "html": "<p>Hello Bob</p>",
             "attachments": [{"filename": "pixel.png", "content_type": "image/png",
                              "content_base64": PIXEL}]},
        ],
    }


# --- edits -----------------------------------------------------------------------------

def _parent(doc: dict[str, Any], path: str) -> tuple[Any, Any]:
    """The container of the field at ``path`` ("meta.cc.0", "emails.1.subject"), and its key."""
    *parents, last = path.split(".")
    node: Any = doc
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node, int(last) if isinstance(node, list) else last


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """An edit setting the field at ``path`` to ``value``."""

    def change(doc: dict[str, Any]) -> None:
        node, key = _parent(doc, path)
        node[key] = value

    return change


def _drop(path: str) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        node, key = _parent(doc, path)
        del node[key]

    return change


def _raw(text: str | bytes) -> Callable[[dict[str, Any]], bytes]:
    data = text.encode("utf-8") if isinstance(text, str) else text
    return lambda doc: data


def _replace_json(old: str, new: str) -> Callable[[dict[str, Any]], bytes]:
    """The sound document's JSON with ``old`` replaced by raw JSON text ``new``."""
    return lambda doc: json.dumps(doc).replace(old, new, 1).encode("utf-8")


def _header(name: str, value: str = "x") -> Callable[[dict[str, Any]], None]:
    return lambda doc: doc["meta"]["headers"].append({"name": name, "value": value})


# --- the table ---------------------------------------------------------------------------

CR_LF = "CR or LF"
# (label, value, words of the reason; None: harmless, the mail is sent)
HOSTILE_VALUES: list[tuple[str, str, str | None]] = [
    ("crlf-bcc", "x\r\nBcc: evil@bad.net", CR_LF),
    ("lf-bcc", "x\nBcc: evil@bad.net", CR_LF),
    ("cr", "x\rBcc: evil@bad.net", CR_LF),
    ("encoded-word-b", EW_BCC, "encoded word"),
    ("encoded-word-q", EW_Q_BCC, "encoded word"),
    ("encoded-word-in-text", f"Hi {EW_BCC} there", "encoded word"),
    ("nul", "x\x00y", "control character U+0000"),
    ("vt", "x\x0by", "control character U+000B"),
    ("ff", "x\x0cy", "control character U+000C"),
    ("esc", "x\x1by", "control character U+001B"),
    ("del", "x\x7fy", "control character U+007F"),
    ("nel", "x\x85Bcc: evil@bad.net", "control character U+0085"),
    ("c1-csi", "x\x9by", "control character U+009B"),
    ("line-separator", "x\u2028Bcc: evil@bad.net", "control character U+2028"),
    ("paragraph-separator", "x\u2029y", "control character U+2029"),
    ("lone-surrogate", "x\ud800y", "control character U+D800"),
    ("lone-low-surrogate", "x\udfffy", "control character U+DFFF"),
]


def _header_field_cases() -> list[Case]:
    """Every hostile value in every header-bearing field."""
    fields = [
        # (where, document path, how the value goes in, expected field, mail-level)
        ("subject", "emails.1.subject", "{}", "emails[1].subject", True),
        ("to-name", "emails.1.to.0", "Bob {} <bob@example.net>", "emails[1].to[0]", True),
        ("filename", "emails.1.attachments.0.filename", "pix{}.png",
         "emails[1].attachments[0].filename", True),
        ("from-name", "meta.from", "Blog {} <news@example.org>", "meta.from", False),
        ("reply-to-name", "meta.reply_to.0", "Ed {} <editors@example.org>", "meta.reply_to[0]",
         False),
        ("cc-name", "meta.cc.0", "Ed {} <editors@example.org>", "meta.cc[0]", False),
        ("bcc-name", "meta.bcc.0", "Arch {} <archive@example.org>", "meta.bcc[0]", False),
        ("header-value", "meta.headers.0.value", "<https://blog.example.org/u>{}",
         "meta.headers[0].value", False),
    ]
    cases = []
    for where, path, template, field_name, per_mail in fields:
        for label, value, words in HOSTILE_VALUES:
            assert words is not None
            expected: Expected = (
                MailFailed(field_name, words) if per_mail else Quarantined(field_name, words)
            )
            cases.append(Case(f"{where}-{label}", "header injection", expected,
                              _set(path, template.format(value))))
    return cases


def _schema_field_cases() -> list[Case]:
    """Fields whose schema pattern refuses what the header check would: tags, configuration set,
    header names, the local part of an address."""
    cases = []
    for label, value in [("crlf", "x\r\nBcc: evil@bad.net"), ("encoded-word", EW_BCC),
                         ("nul", "x\x00y")]:
        cases += [
            Case(f"tag-value-{label}", "header injection",
                 Quarantined("meta.tags.source", "must match pattern"),
                 _set("meta.tags.source", value)),
            Case(f"tag-name-{label}", "header injection",
                 Quarantined("meta.tags", "must be named by propertyName definition"),
                 lambda doc, v=value: doc["meta"]["tags"].update({v: "x"})),
            Case(f"configuration-set-{label}", "header injection",
                 Quarantined("meta.configuration_set", "must match pattern"),
                 _set("meta.configuration_set", value)),
        ]
    cases += [
        Case("header-name-encoded-word", "header injection",
             Quarantined("meta.headers[1].name", "encoded word"), _header(EW_BCC)),
        Case("header-name-crlf", "header injection",
             Quarantined("meta.headers[1].name", "must match pattern"),
             _header("X-A\r\nBcc: evil@bad.net")),
        Case("header-name-trailing-newline", "header injection",
             Quarantined("meta.headers[1].name", "must match pattern"), _header("X-Note\n")),
        Case("header-name-space", "header injection",
             Quarantined("meta.headers[1].name", "must match pattern"), _header("X Note")),
        Case("header-name-colon", "header injection",
             Quarantined("meta.headers[1].name", "must match pattern"), _header("Bcc:X")),
        Case("header-name-empty", "header injection",
             Quarantined("meta.headers[1].name", "must match pattern"), _header("")),
        Case("header-name-non-ascii", "header injection",
             Quarantined("meta.headers[1].name", "must match pattern"), _header("X-Nöte")),
        Case("header-name-too-long", "header injection",
             Quarantined("meta.headers[1].name", "must match pattern"), _header("X-" + "a" * 80)),
        Case("header-value-too-long", "header injection",
             Quarantined("meta.headers[1].value", "must be shorter"),
             _header("X-Postbag-Note", "a" * 999)),
        Case("to-local-part-encoded-word", "header injection",
             MailFailed("emails[1].to[0]", "encoded word"),
             _set("emails.1.to.0", f"{EW_BCC}@example.net")),
        Case("from-local-part-encoded-word", "header injection",
             Quarantined("meta.from", "encoded word"), _set("meta.from", f"{EW_BCC}@example.org")),
        Case("to-name-quoted-encoded-word", "header injection",
             MailFailed("emails[1].to[0]", "encoded word"),
             _set("emails.1.to.0", f'"{EW_BCC}" <bob@example.net>')),
        Case("header-value-tab-kept", "header injection", Sent(),
             _header("X-Postbag-Note", "a\tb")),
        Case("subject-tab-kept", "header injection", Sent(), _set("emails.1.subject", "a\tb")),
        Case("subject-bcc-text-kept", "header injection", Sent(),
             _set("emails.1.subject", "Re: Bcc: evil@bad.net")),
        Case("subject-longest", "header injection", Sent(), _set("emails.1.subject", "ü" * 998)),
        Case("subject-too-long", "header injection",
             MailFailed("emails[1].subject", "must be shorter"),
             _set("emails.1.subject", "a" * 999)),
        Case("subject-equals-question-kept", "header injection", Sent(),
             _set("emails.1.subject", "Is 2+2=? Yes =? no ?=")),
    ]
    return cases


RESERVED = [
    # builder's own headers
    "Bcc", "BCC", "bcc", "To", "Cc", "From", "Subject", "Sender", "Reply-To", "Message-ID",
    "Date", "MIME-Version", "Content-Type", "Content-Transfer-Encoding", "Content-Disposition",
    "Return-Path",
    # trace and authentication
    "Received", "DKIM-Signature", "DomainKey-Signature", "Authentication-Results",
    "Received-SPF", "ARC-Seal", "ARC-Message-Signature", "ARC-Authentication-Results",
    "Delivered-To", "X-Original-To", "Feedback-ID",
    "Resent-To", "Resent-Bcc", "Resent-From", "Resent-Date", "Resent-Message-ID",
    "X-SES-CONFIGURATION-SET", "X-SES-Outgoing", "X-Amz-Cf-Id",
]


def _reserved_cases() -> list[Case]:
    cases = []
    for name in RESERVED:
        lowered = name.lower()
        own = lowered in {"bcc", "to", "cc", "from", "subject", "sender", "reply-to", "message-id",
                          "date", "mime-version", "content-type", "content-transfer-encoding",
                          "content-disposition", "return-path"}
        words = "set from the batch's own fields" if own else "trace or authentication header"
        # Resent-* with an address that is none crashed the handler once (issue 10).
        value = "not an address <<" if lowered.startswith("resent-") else "evil@bad.net"
        cases.append(Case(f"reserved-{name}", "reserved header",
                          Quarantined("meta.headers[1].name", words), _header(name, value)))
    return cases


ATTACHMENT = "emails.1.attachments.0"
FILENAME = "emails[1].attachments[0].filename"
CONTENT_TYPE = "emails[1].attachments[0].content_type"


def _attachment_cases() -> list[Case]:
    refused_names = [
        ("exe", "setup.exe", ".exe"), ("exe-upper", "SETUP.EXE", ".exe"),
        ("trailing-dot", "setup.exe.", ".exe"), ("trailing-space", "setup.exe ", ".exe"),
        ("trailing-dots-spaces", "setup.exe. . ", ".exe"),
        ("fullwidth-extension", "setup.ｅｘｅ", ".exe"),
        ("fullwidth-dot", "setup．exe", ".exe"),
        ("directory", "../../setup.exe", ".exe"), ("windows-path", "C:\\temp\\setup.exe", ".exe"),
        ("bat", "run.bat", ".bat"), ("js", "x.js", ".js"), ("vbs", "x.vbs", ".vbs"),
        ("scr", "x.pdf.scr", ".scr"), ("lnk", "x.lnk", ".lnk"),
        ("nul-before-pdf", "setup.exe\x00.pdf", "control character U+0000"),
        ("rtl-override", "photo\u202egpj.exe", "format character U+202E"),
        ("rtl-override-pdf", "invoice\u202efdp.exe", "format character U+202E"),
        ("zero-width-space", "setup.ex\u200be", "format character U+200B"),
        ("bom", "\ufeffsetup.exe", "format character U+FEFF"),
        ("only-dots", "...", "no file name left"), ("only-slash", "a/", "no file name left"),
        ("only-spaces", "   ", "no file name left"),
    ]
    cases = [
        Case(f"filename-{label}", "attachment", MailFailed(FILENAME, words),
             _set(f"{ATTACHMENT}.filename", name))
        for label, name, words in refused_names
    ]
    refused_types = [
        ("multipart-mixed", "multipart/mixed", "multipart/mixed are not supported"),
        ("multipart-alternative", "multipart/alternative", "are not supported"),
        ("message-rfc822", "message/rfc822", "message/rfc822 are not supported"),
        ("message-upper", "MESSAGE/RFC822", "message/rfc822 are not supported"),
        ("message-partial", "message/partial", "are not supported"),
        ("message-global", "message/global", "are not supported"),
    ]
    cases += [
        Case(f"type-{label}", "attachment", MailFailed(CONTENT_TYPE, words),
             _set(f"{ATTACHMENT}.content_type", value))
        for label, value, words in refused_types
    ]
    schema_types = ["text", "text/", "/plain", "text/plain; charset=utf-8",
                    "multipart/mixed; boundary=x", "text/plain\r\nBcc: evil@bad.net", "",
                    "tëxt/plain"]
    cases += [
        Case(f"type-not-a-type-{i}", "attachment", MailFailed(CONTENT_TYPE, "must match pattern"),
             _set(f"{ATTACHMENT}.content_type", value))
        for i, value in enumerate(schema_types)
    ]
    cases += [
        Case("type-trailing-newline", "attachment", MailFailed(CONTENT_TYPE, "must match pattern"),
             _set(f"{ATTACHMENT}.content_type", "image/png\n")),
        Case("filename-path-kept-as-name", "attachment", Sent(),
             _set(f"{ATTACHMENT}.filename", "../../pixel.png")),
        Case("filename-exe-inside-kept", "attachment", Sent(),
             _set(f"{ATTACHMENT}.filename", "setup.exe.png")),
        Case("filename-non-ascii-kept", "attachment", Sent(),
             _set(f"{ATTACHMENT}.filename", "Grüße ☕.png")),
        Case("base64-with-newline", "attachment",
             MailFailed("emails[1].attachments[0].content_base64", "not base64"),
             _set(f"{ATTACHMENT}.content_base64", PIXEL[:40] + "\n" + PIXEL[40:])),
        Case("s3-key-outside-prefix", "attachment",
             MailFailed("emails[1].attachments[0].s3_key", "must be under"),
             lambda doc: doc["emails"][1]["attachments"].__setitem__(0, {
                 "filename": "a.pdf", "content_type": "application/pdf",
                 "s3_key": "receipts/x.json"})),
        Case("s3-key-dot-dot", "attachment",
             MailFailed("emails[1].attachments[0].s3_key", "must be under"),
             lambda doc: doc["emails"][1]["attachments"].__setitem__(0, {
                 "filename": "a.pdf", "content_type": "application/pdf",
                 "s3_key": "queue/attachments/../../receipts/x.json"})),
        Case("attachment-both-sources", "attachment",
             MailFailed("emails[1].attachments[0]", "must be valid exactly by one"),
             _set(f"{ATTACHMENT}.s3_key", "queue/attachments/b/m/0")),
    ]
    return cases


def _nested(depth: int) -> bytes:
    return ('{"version": 1, "x": ' + "[" * depth + "]" * depth + "}").encode()


def _envelope_cases() -> list[Case]:
    file = "(file)"
    cases = [
        Case("json-nesting-10000", "envelope", Quarantined(file, "nested too deeply"),
             _raw(_nested(10_000))),
        Case("json-nesting-100000-objects", "envelope", Quarantined(file, "nested too deeply"),
             _raw('{"a":' * 100_000 + "1" + "}" * 100_000)),
        Case("number-5001-digits", "envelope", Quarantined(file, "digits"),
             _replace_json('"version": 1', '"version": ' + "9" * 5001)),
        Case("redrive-4000-digits", "envelope", Quarantined("redrive", "above the most"),
             _replace_json('"version": 1', '"redrive": ' + "9" * 4000 + ', "version": 1')),
        Case("redrive-huge", "envelope", Quarantined("redrive", "above the most"),
             _set("redrive", 10**7)),
        Case("redrive-negative", "envelope", Quarantined("redrive", "bigger than or equal to 0"),
             _set("redrive", -1)),
        Case("redrive-float", "envelope", Quarantined("redrive", "must be integer"),
             _set("redrive", 1.5)),
        Case("part-huge", "envelope", Quarantined("continuation.part", "above the most"),
             _set("continuation", {"of": "queue/x.json", "part": 10**12})),
        Case("continuation-of-too-long", "envelope",
             Quarantined("continuation.of", "must be shorter"),
             _set("continuation", {"of": "queue/" + "a" * 1100, "part": 1})),
        Case("nan", "envelope", Quarantined(file, "NaN is not a JSON number"),
             _replace_json('"blog_id": 1', '"blog_id": NaN')),
        Case("infinity", "envelope", Quarantined(file, "Infinity is not a JSON number"),
             _replace_json('"blog_id": 1', '"blog_id": -Infinity')),
        Case("huge-exponent", "envelope", Quarantined("site.blog_id", "must be integer"),
             _replace_json('"blog_id": 1', '"blog_id": 1e999')),
    ]
    dates = [
        ("feb-30", "2026-02-30T07:00:00Z", "must be date-time"),
        ("hour-24", "2026-11-22T24:00:00Z", "must be date-time"),
        ("leap-second", "2026-12-31T23:59:60Z", "not a time"),
        ("overflow-late", "9999-12-31T23:59:59-14:00", "not a time"),
        ("overflow-early", "0001-01-01T00:00:00+14:00", "not a time"),
        ("month-13", "2026-13-01T00:00:00Z", "date-time"),
        ("no-zone", "2026-11-22T07:00:00", "date-time"),
        ("empty", "", "date-time"),
        ("words", "yesterday", "date-time"),
        ("trailing-newline", "2026-11-22T07:00:00Z\n", "date-time"),
    ]
    cases += [
        Case(f"created-at-{label}", "envelope", Quarantined("created_at", words),
             _set("created_at", value))
        for label, value, words in dates
    ]
    not_objects = [("array", "[]"), ("number", "1"), ("null", "null"), ("string", '"x"'),
                   ("true", "true")]
    cases += [
        Case(f"json-{label}", "envelope", Quarantined(file, "expected a JSON object"), _raw(text))
        for label, text in not_objects
    ]
    cases += [
        Case("empty-file", "envelope", Quarantined(file, "not JSON"), _raw("")),
        Case("utf8-bom", "envelope", Quarantined(file, "not JSON"),
             lambda doc: b"\xef\xbb\xbf" + json.dumps(doc).encode()),
        Case("utf16", "envelope", Quarantined(file, "not UTF-8"),
             lambda doc: json.dumps(doc).encode("utf-16")),
        Case("latin1-byte", "envelope", Quarantined(file, "not UTF-8"),
             lambda doc: json.dumps(doc).encode().replace(b"Sound mail", b"Caf\xe9")),
        Case("surrogate-escape-utf8", "envelope", Quarantined(file, "not UTF-8"),
             lambda doc: json.dumps(doc).encode().replace(b"Sound", b"\xed\xa0\x80")),
        Case("batch-id-surrogate", "envelope", Quarantined("batch_id", "must match pattern"),
             _set("batch_id", "b\ud800")),
        Case("batch-id-trailing-newline", "envelope",
             Quarantined("batch_id", "must match pattern"),
             lambda doc: doc.update(batch_id=doc["batch_id"] + "\n")),
        Case("batch-id-too-long", "envelope", Quarantined("batch_id", "must match pattern"),
             _set("batch_id", "b" * 65)),
        Case("batch-id-path", "envelope", Quarantined("batch_id", "must match pattern"),
             _set("batch_id", "../receipts/x")),
        Case("version-string", "envelope", Quarantined("version", "unknown format version '1'"),
             _set("version", "1")),
        Case("version-float", "envelope", Quarantined("version", "unknown format version 1.0"),
             _set("version", 1.0)),
        Case("version-true", "envelope", Quarantined("version", "unknown format version True"),
             _set("version", True)),
        # Version 2 is a notify job's manifest, which never belongs under the queue.
        Case("version-2", "envelope",
             Quarantined("version", "a version-2 notify job belongs at jobs/<id>/manifest.json"),
             _set("version", 2)),
        Case("version-3", "envelope", Quarantined("version", "unknown format version 3"),
             _set("version", 3)),
        Case("extra-property", "envelope", Quarantined("(batch)", "must not contain"),
             _set("bcc", ["evil@bad.net"])),
        Case("meta-extra-property", "envelope", Quarantined("meta", "must not contain"),
             _set("meta.bcc_extra", ["evil@bad.net"])),
        Case("meta-not-object", "envelope", Quarantined("meta", "must be object"),
             _set("meta", [])),
        Case("from-missing", "envelope", Quarantined("meta", "must contain ['from']"),
             _drop("meta.from")),
        Case("from-two-mailboxes", "envelope", Quarantined("meta.from", "expected one mailbox"),
             _set("meta.from", "news@example.org, evil@bad.net")),
        Case("from-nested-comments", "envelope", Quarantined("meta.from", "unreadable address"),
             _set("meta.from", "(" * 970 + "news@example.org")),
        Case("from-unclosed-comments", "envelope", Quarantined("meta.from", "unreadable address"),
             _set("meta.from", "news@example.org " + "(" * 980)),
        Case("bcc-not-a-list", "envelope", Quarantined("meta.bcc", "must be array"),
             _set("meta.bcc", "evil@bad.net")),
        Case("site-url-too-long", "envelope", Quarantined("site.url", "must be shorter"),
             _set("site.url", "https://" + "a" * 3000)),
        Case("emails-empty", "envelope", Quarantined("emails", "at least 1"), _set("emails", [])),
        Case("emails-object", "envelope", Quarantined("emails", "must be array"),
             _set("emails", {})),
        Case("tags-too-many", "envelope", Quarantined("meta.tags", "must contain less than"),
             _set("meta.tags", {f"t{i}": "x" for i in range(51)})),
        Case("charset-injection", "envelope", Quarantined("meta.charset", "must match pattern"),
             _set("meta.charset", "utf-8\r\nBcc: evil@bad.net")),
    ]
    return cases


def _mail_cases() -> list[Case]:
    to = "emails[1].to"
    refused_to = [
        ("two-mailboxes", "bob@example.net, evil@bad.net", "expected one mailbox"),
        ("name-then-second", "<bob@example.net> <evil@bad.net>", "expected one mailbox"),
        ("semicolon", "bob@example.net;evil@bad.net", "malformed address"),
        ("nested-comments", "(" * 970 + "bob@example.net", "unreadable address"),
        ("tab", "bob@example.net\t", "TAB in an address"),
        ("tab-in-name", "Bob\tSmith <bob@example.net>", "TAB in an address"),
        ("space-in-domain", "bob@exa mple.net", "malformed address"),
        ("spaces-around-at", "bob @ example.net", "malformed address"),
        ("ip-literal", "bob@[127.0.0.1]", "malformed address"),
        ("no-dot", "bob@localhost", "malformed address"),
        ("non-ascii-local", "zoë@example.net", "malformed address"),
        ("group-syntax", "undisclosed-recipients:;", "malformed address"),
    ]
    cases = [
        Case(f"to-{label}", "mail", MailFailed(f"{to}[0]", words), _set("emails.1.to.0", value))
        for label, value, words in refused_to
    ]
    cases += [
        Case("to-too-many", "mail", MailFailed(to, "more than 50 recipients"),
             _set("emails.1.to", [f"r{i}@example.net" for i in range(49)])),
        Case("to-not-a-list", "mail", MailFailed(to, "must be array"),
             _set("emails.1.to", "bob@example.net")),
        Case("to-name-like-address-kept", "mail", Sent(),
             _set("emails.1.to.0", '"evil@bad.net" <bob@example.net>')),
        Case("to-name-with-comma-kept", "mail", Sent(),
             _set("emails.1.to.0", '"Evil, Bcc: evil@bad.net" <bob@example.net>')),
        Case("to-idn-kept", "mail", Sent(), _set("emails.1.to.0", "bob@bücher.example")),
        Case("mail-id-trailing-newline", "mail", MailFailed("emails[1].id", "must match pattern"),
             _set("emails.1.id", BAD_ID + "\n")),
        Case("mail-id-surrogate", "mail", MailFailed("emails[1].id", "must match pattern"),
             _set("emails.1.id", "m\ud800")),
        Case("mail-extra-property", "mail", MailFailed("emails[1]", "must not contain"),
             _set("emails.1.bcc", ["evil@bad.net"])),
        Case("mail-no-body", "mail", MailFailed("emails[1]", "cannot be validated by any"),
             _drop("emails.1.html")),
        Case("mail-not-object", "mail", MailFailed("emails[1]", "must be object"),
             _set("emails.1", ["x"])),
        Case("html-lone-surrogate", "mail", MailFailed("emails[1].html", "lone surrogate U+D800"),
             _set("emails.1.html", "<p>\ud800</p>")),
        Case("text-nul", "mail", MailFailed("emails[1].text", "NUL character"),
             _set("emails.1.text", "a\x00b")),
        Case("html-60k-unclosed-tags", "mail", Sent(), _set("emails.1.html", "<a " * 20_000)),
        Case("html-marked-sections", "mail", Sent(), _set("emails.1.html", "<![" * 20_000)),
        Case("html-unclosed-comment", "mail", Sent(), _set("emails.1.html", "<!--" * 15_000)),
        Case("html-unclosed-quote", "mail", Sent(),
             _set("emails.1.html", '<a href="' * 10_000)),
        Case("html-bcc-text-kept", "mail", Sent(),
             _set("emails.1.html", "<p>\r\nBcc: evil@bad.net\r\n\r\n</p>")),
        Case("html-boundary-text-kept", "mail", Sent(),
             _set("emails.1.html", "--=_postbag_0\r\nBcc: evil@bad.net\r\n\r\n")),
    ]
    charsets = ["undefined", "utf-16", "utf-32", "rot13", "base64", "idna", "utf-7",
                "unicode_escape", "x-unknown", "hz"]
    cases += [
        Case(f"charset-{name}", "charset", Sent(), _set("meta.charset", name))
        for name in charsets
    ]
    return cases


def _sender_cases() -> list[Case]:
    words = "is not in POSTBAG_ALLOWED_SENDERS"
    refused = [("wordpress-default", "WordPress <wordpress@blog.example.com>"),
               ("lookalike-domain", "news@example.org.evil.example"),
               ("subdomain", "news@mail.example.org")]
    cases = [
        Case(f"from-{label}", "sender", AllFailed("meta.from", words), _set("meta.from", value))
        for label, value in refused
    ]
    cases += [
        Case("from-upper-case-domain-kept", "sender", Sent(),
             _set("meta.from", "news@EXAMPLE.ORG")),
        Case("from-address-after-name", "sender", Quarantined("meta.from", "expected one mailbox"),
             _set("meta.from", "news@example.org <mallory@evil.example>")),
        Case("from-name-with-address-kept", "sender", Sent(),
             _set("meta.from", '"mallory@evil.example" <news@example.org>')),
    ]
    return cases


def _size_cases() -> list[Case]:
    long_key = "queue/" + "k" * (1024 - len("queue/") - len(".json")) + ".json"
    unicode_key = "queue/" + "é" * 505 + ".json"
    return [
        Case("key-quarantine-name-too-long", "size", Quarantined("(file)", "not JSON"),
             key=long_key, body=b"not json"),
        Case("key-multibyte-too-long", "size", Quarantined("(file)", "not JSON"),
             key=unicode_key, body=b"not json"),
        Case("batch-over-32-mib", "size", Quarantined("(file)", "the sender reads batches"),
             lambda doc: json.dumps(doc).encode() + b" " * (32 * 1024 * 1024)),
    ]


def cases() -> list[Case]:
    """The whole table, ids unique."""
    table = (_header_field_cases() + _schema_field_cases() + _reserved_cases()
             + _attachment_cases() + _envelope_cases() + _mail_cases() + _sender_cases()
             + _size_cases())
    ids = [case.id for case in table]
    assert len(ids) == len(set(ids)), "case ids are unique"
    return table


# --- running a case ------------------------------------------------------------------------

def batch_file(case: Case, batch_id: str) -> bytes:
    """The bytes of ``case``'s batch file."""
    if case.body is not None:
        return case.body
    doc = copy.deepcopy(base_document(batch_id))
    made = case.change(doc) if case.change else None
    if isinstance(made, bytes):
        return made
    # Lone surrogates must reach the file as JSON escapes, as PHP would write them.
    return json.dumps(doc).encode("utf-8")


@dataclass
class Result:
    case: Case
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def check_messages(raws: list[bytes], simple: list[dict[str, Any]]) -> list[str]:
    """Problems with what SES was handed: a recipient or header a sound batch would not add."""
    problems = []
    for raw in raws:
        message = email.message_from_bytes(raw, policy=policy.compat32)
        names = {name.lower() for name in message.keys()}
        if names - HEADERS:
            problems.append(f"headers added: {sorted(names - HEADERS)}")
        for name in ("to", "cc", "bcc", "resent-to", "resent-cc", "resent-bcc"):
            for value in message.get_all(name, []):
                addrs = {a.lower() for _, a in email.utils.getaddresses([value])}
                if addrs - RECIPIENTS:
                    problems.append(f"{name} adds {sorted(addrs - RECIPIENTS)}")
    for destinations in simple:
        addrs = {email.utils.parseaddr(a)[1].lower() for v in destinations.values() for a in v}
        if addrs - RECIPIENTS:
            problems.append(f"destinations add {sorted(addrs - RECIPIENTS)}")
    return problems


def outcome_problems(expected: Expected, quarantine: dict[str, Any] | None,
                     mails: dict[str, dict[str, Any]] | None, sent_count: int) -> list[str]:
    """How what happened differs from what ``expected`` says."""
    if isinstance(expected, Quarantined):
        if quarantine is None:
            return ["not quarantined"]
        if quarantine["field"] != expected.field or expected.words not in quarantine["reason"]:
            return [f"quarantined with field {quarantine['field']!r}: {quarantine['reason']!r}"]
        return [] if sent_count == 0 else [f"{sent_count} sent"]
    if quarantine is not None:
        return [f"quarantined: {quarantine['field']}: {quarantine['reason']}"]
    if mails is None:
        return ["no receipt"]
    statuses = {mail_id: (m["status"], m.get("reason", "")) for mail_id, m in mails.items()}
    if isinstance(expected, Sent):
        return [] if {s for s, _ in statuses.values()} == {"sent"} else [f"not sent: {statuses}"]
    failing = list(statuses) if isinstance(expected, AllFailed) else [
        m for m in statuses if m != GOOD_ID]
    problems = []
    for mail_id in failing:
        status, reason = statuses[mail_id]
        if status != "failed" or expected.field not in reason or expected.words not in reason:
            problems.append(f"{mail_id}: {status}: {reason!r}")
    if isinstance(expected, MailFailed) and statuses.get(GOOD_ID, ("",))[0] != "sent":
        problems.append(f"the sound mail was not sent: {statuses.get(GOOD_ID)}")
    return problems


def s3_event(bucket: str, key: str) -> dict[str, Any]:
    """An S3 object-created event with the key URL-encoded, as S3 sends it."""
    return {"Records": [{
        "eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "awsRegion": "us-east-1",
        "s3": {"bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
               "object": {"key": quote_plus(key), "size": 1}},
    }]}


def run(case: Case, index: int, s3: Any, bucket: str) -> Result:
    """``case`` through the real handler (``app.on_batch_uploaded`` by ``chalice.test.Client``)
    inside an active moto mock; judged by what S3 and moto's SES hold afterwards."""
    from chalice.test import Client
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import ses_backends

    import app
    from chalicelib.outcome import quarantine_name

    backend = ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]
    backend.sent_messages.clear()
    batch_id = f"hostile-{index:04d}"
    key = case.key or f"queue/{batch_id}.json"
    s3.put_object(Bucket=bucket, Key=key, Body=batch_file(case, batch_id))
    with Client(app.app) as client:
        try:
            response = client.lambda_.invoke("on_batch_uploaded", s3_event(bucket, key))
        except Exception as exc:  # the handler must never raise for input
            return Result(case, [f"handler raised {type(exc).__name__}: {exc}"])
    problems = [] if response.payload is None else [f"handler answered {response.payload!r}"]
    quarantine = _read(s3, bucket, quarantine_name(key)[0] + ".error.json")
    receipt = _read(s3, bucket, f"receipts/{batch_id}.json")
    if receipt is not None and "quarantined_as" in receipt:
        # A quarantined batch's error document is also at its receipt key, for the site.
        if quarantine is None or receipt["reason"] != quarantine["reason"]:
            problems.append(f"receipt names a quarantine the sender did not write: {receipt!r}")
        receipt = None
    mails = {m["mail_id"]: m for m in receipt["mails"]} if receipt else None
    messages = backend.sent_messages
    raws = [m.raw_data.encode("utf-8") for m in messages if hasattr(m, "raw_data")]
    # SendEmail's destinations by kind; SendRawEmail's as a list (moto adds the headers' own).
    simple = [m.destinations if isinstance(m.destinations, dict) else {"raw": m.destinations}
              for m in messages]
    problems += outcome_problems(case.expected, quarantine, mails, len(messages))
    problems += check_messages(raws, simple)
    return Result(case, problems)


def _read(s3: Any, bucket: str, key: str) -> Any:
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None
    return json.loads(body)
