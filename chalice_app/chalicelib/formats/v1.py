"""Format version 1 (``batch-v1.schema.json``), and the original design's layout.

A version 1 file is one ``meta`` shared by up to a few dozen ``emails``; the
original layout (no ``version``, ``meta.contentType``, ``message``) is first
turned into version 1, so both go through one validator. The envelope
(everything but the mails) must be sound or the whole batch is refused; each
mail is then checked on its own, so one bad mail fails alone.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import fastjsonschema

from chalicelib import fields, unsubscribe
from chalicelib.config import ATTACHMENTS_PREFIX, Settings
from chalicelib.errors import BatchFormatError
from chalicelib.formats.document import schema_field
from chalicelib.model import Attachment, Batch, Mail, Meta, Rejected

VERSION = 1
# The largest ``redrive`` and ``continuation.part`` taken: far more than any
# operator re-drives or any chain of continuations, short enough for object names.
MAX_COUNTER = 1_000_000

Document = dict[str, Any]


def _compile_validators() -> tuple[Any, Any, re.Pattern[str]]:
    text = resources.files(__package__).joinpath("batch-v1.schema.json").read_text("utf-8")
    schema = json.loads(text)
    envelope = copy.deepcopy(schema)
    # Mails are checked one by one, so a bad mail (even one that is no object) does
    # not sink its batch.
    envelope["properties"]["emails"]["items"] = {}
    mail = {"definitions": schema["definitions"], "$ref": "#/definitions/mail"}
    ids = re.compile(schema["definitions"]["id"]["pattern"])
    return fastjsonschema.compile(envelope), fastjsonschema.compile(mail), ids


_validate_envelope, _validate_mail, _ID = _compile_validators()


def _is_original_layout(doc: Document) -> bool:
    return "version" not in doc and "meta" in doc and "emails" in doc


def matches(doc: Document) -> bool:
    version = doc.get("version")
    return (type(version) is int and version == VERSION) or _is_original_layout(doc)


def _from_original_layout(doc: Document, text: str, received_at: str) -> Document:
    """The original design's layout as version 1; ids come from the file's bytes."""
    meta, emails = doc["meta"], doc["emails"]
    if not isinstance(meta, dict) or not isinstance(emails, list):
        return doc  # let the validator name what is wrong
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:40]
    html = meta.get("contentType", "text/plain") == "text/html"
    mails = []
    for i, mail in enumerate(emails):
        if not isinstance(mail, dict):
            mails.append(mail)
            continue
        to = mail.get("to")
        converted = {
            "id": f"m{i}",
            "to": [to] if isinstance(to, str) else to,
            "subject": mail.get("subject"),
            ("html" if html else "text"): mail.get("message"),
        }
        if mail.get("attachments"):
            converted["attachments"] = mail["attachments"]
        mails.append({k: v for k, v in converted.items() if v is not None})
    v1_meta = {"from": meta.get("from"), "charset": meta.get("charset", "UTF-8")}
    if "contentType" in meta:
        v1_meta["content_type"] = meta["contentType"]
    return {
        "version": VERSION,
        "batch_id": f"legacy-{digest}",
        "site": {"url": "unknown"},
        "created_at": received_at,
        "meta": {k: v for k, v in v1_meta.items() if v is not None},
        "emails": mails,
    }


def parse_meta(doc: Document, batch: str, settings: Settings) -> Meta:
    """The envelope's ``meta``. Whether its From may send is checked when the mails
    go out (``pipeline``), so that a From not allowed fails each mail for re-drive."""
    meta = doc["meta"]
    headers = tuple(
        fields.custom_header(h["name"], h["value"], f"meta.headers[{i}]", batch)
        for i, h in enumerate(meta.get("headers", ()))
    )
    tags = tuple(
        fields.tag(name, value, f"meta.tags.{name}", batch)
        for name, value in sorted(meta.get("tags", {}).items())
    )
    configuration_set = meta.get("configuration_set") or settings.default_configuration_set
    return Meta(
        sender=fields.address(meta["from"], "meta.from", batch),
        reply_to=fields.addresses(meta.get("reply_to", []), "meta.reply_to", batch),
        cc=fields.addresses(meta.get("cc", []), "meta.cc", batch),
        bcc=fields.addresses(meta.get("bcc", []), "meta.bcc", batch),
        content_type=meta.get("content_type", "text/plain"),
        charset=fields.charset(meta.get("charset", "utf-8")),
        headers=headers,
        configuration_set=fields.header_value(configuration_set, "meta.configuration_set", batch),
        tags=tags,
        list_name=meta.get("list", ""),
        unsubscribe_mailto=fields.bare_address(meta["unsubscribe_mailto"],
                                               "meta.unsubscribe_mailto", batch)
        if "unsubscribe_mailto" in meta else "",
    )


def parse_attachment(raw: Document, where: str, batch: str, mail: str) -> Attachment:
    filename = fields.attachment_name(raw["filename"], where + ".filename", batch, mail)
    content_type = fields.content_type(raw["content_type"], where + ".content_type", batch, mail)
    if "s3_key" in raw:
        return fields.attachment_reference(
            filename, content_type, raw["s3_key"], raw.get("size"),
            ATTACHMENTS_PREFIX, where, batch, mail,
        )
    return fields.inline_attachment(
        filename, content_type, raw["content_base64"], where, batch, mail
    )


def _mail(raw: Any, index: int, batch: str, meta: Meta) -> Mail:
    where = f"emails[{index}]"
    mail_id = raw.get("id") if isinstance(raw, dict) else None
    # Only an id the schema would accept names the mail in receipts: anything else
    # (a lone surrogate, 10 KB of text) is the mail's position.
    mail_ref = mail_id if isinstance(mail_id, str) and _ID.fullmatch(mail_id) else f"#{index}"
    try:
        _validate_mail(raw)
    except fastjsonschema.JsonSchemaValueException as exc:
        field_name = schema_field(exc, where + ".")
        message = exc.message.removeprefix("data.")
        raise BatchFormatError(field_name, batch, message, mail_ref) from exc
    mail_id = raw["id"]  # a string, now that the schema held
    to = fields.addresses(raw["to"], where + ".to", batch, mail_id)
    fields.recipient_count(len(to) + len(meta.cc) + len(meta.bcc), where + ".to", batch, mail_id)
    attachments = tuple(
        parse_attachment(a, f"{where}.attachments[{i}]", batch, mail_id)
        for i, a in enumerate(raw.get("attachments", ()))
    )
    return Mail(
        id=mail_id,
        to=to,
        subject=fields.header_value(raw["subject"], where + ".subject", batch, mail_id),
        html=fields.body(raw.get("html"), where + ".html", batch, mail_id),
        text=fields.body(raw.get("text"), where + ".text", batch, mail_id),
        attachments=attachments,
    )


def parse_time(value: str, batch: str, field: str = "created_at") -> datetime:
    """The schema's ``date-time`` as an aware datetime; its pattern lets through
    dates that do not exist (``2026-02-30``) and times ``fromisoformat`` refuses."""
    try:
        created = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        if created.tzinfo is None:
            raise ValueError("no time zone")
        created.astimezone(UTC)  # a time that UTC cannot hold (year 9999, -14:00)
    except (ValueError, OverflowError) as exc:
        raise BatchFormatError(field, batch, f"not a time: {value!r} ({exc})") from exc
    return created


def _counter(field: str, value: int, batch: str) -> int:
    # Bounded here rather than by a schema "maximum": the plugin's schema
    # checker refuses keywords it does not know. Part of object names (S3 keys
    # hold at most 1,024 bytes), so a huge count would fail every write.
    if value > MAX_COUNTER:
        raise BatchFormatError(field, batch, f"{value} is above the most this sender takes, "
                               f"{MAX_COUNTER:,}")
    return value


def _mails(doc: Document, label: str, meta: Meta) -> tuple[list[Mail], list[Rejected]]:
    """Each mail on its own: a bad one is rejected with its reason, the others kept."""
    mails, rejected, seen = [], [], set()
    for index, raw in enumerate(doc["emails"]):
        try:
            mail = _mail(raw, index, label, meta)
            if mail.id in seen:
                raise BatchFormatError(f"emails[{index}].id", label, "duplicate mail id", mail.id)
        except BatchFormatError as exc:
            rejected.append(Rejected(exc.mail or f"#{index}", exc))
            continue
        seen.add(mail.id)
        mails.append(mail)
    return mails, rejected


def parse(
    doc: Document, text: str, name: str, settings: Settings, received_at: datetime | None
) -> Batch:
    """A version 1 (or original layout) document as a ``Batch``; see ``formats.parse_batch``."""
    if _is_original_layout(doc):
        received = received_at or datetime.now(UTC)
        doc = _from_original_layout(doc, text, received.strftime("%Y-%m-%dT%H:%M:%SZ"))
    try:
        _validate_envelope(doc)
    except fastjsonschema.JsonSchemaValueException as exc:
        raise BatchFormatError(schema_field(exc), name, exc.message.removeprefix("data.")) from exc
    label = f"{doc['batch_id']} ({name})"
    created_at = parse_time(doc["created_at"], label)
    continuation = doc.get("continuation", {})
    redrive = _counter("redrive", doc.get("redrive", 0), label)
    part = _counter("continuation.part", continuation.get("part", 0), label)
    meta = parse_meta(doc, label, settings)
    if meta.list_name:
        unsubscribe.check_batch_headers(meta.headers, label)
    mails, rejected = _mails(doc, label, meta)
    return Batch(
        batch_id=doc["batch_id"],
        created_at=created_at,
        meta=meta,
        mails=tuple(mails),
        rejected=tuple(rejected),
        redrive=redrive,
        part=part,
        continuation_of=continuation.get("of"),
        version=VERSION,
        document=doc,
    )


def subset(document: Document, mail_ids: set[str], **changes: Any) -> Document:
    """``document`` holding only ``mail_ids``; ``changes`` set top-level fields
    (``continuation``, ``redrive``)."""
    doc = {k: v for k, v in document.items() if k != "emails"}
    doc["emails"] = [
        m for m in document["emails"] if isinstance(m, dict) and m.get("id") in mail_ids
    ]
    doc.update(changes)
    return doc


def merge(documents: list[Document], redrive: int) -> Document:
    """One document with every mail of ``documents`` (the parts of one generation)."""
    merged = {k: v for k, v in documents[0].items() if k not in ("emails", "continuation")}
    merged["redrive"] = redrive
    seen: set[str] = set()
    merged["emails"] = []
    for doc in documents:
        for mail in doc.get("emails", ()):
            if mail.get("id") not in seen:
                seen.add(mail.get("id"))
                merged["emails"].append(mail)
    return merged
