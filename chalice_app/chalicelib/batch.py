"""Parse and validate a batch file into the model the later stages use.

Version 1 is checked against ``batch-v1.schema.json``; the original layout is
first turned into version 1, so both go through one validator. The envelope
(everything but the mails) must be sound or the whole batch is refused; each
mail is then checked on its own, so one bad mail fails alone.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import getaddresses
from importlib import resources
from typing import Any

import fastjsonschema

from chalicelib.config import Settings
from chalicelib.errors import (
    BatchFormatError,
    HeaderInjectionError,
    SenderNotAllowed,
)

FORMAT_VERSION = 1
SES_MAX_RECIPIENTS = 50
# Set by the MIME builder from the batch's own fields; a custom header may not override them.
RESERVED_HEADERS = frozenset(
    "from to cc bcc reply-to subject date message-id mime-version content-type "
    "content-transfer-encoding content-disposition return-path sender".split()
)
# File types SES refuses as attachments (SES developer guide, "Unsupported attachment types").
REFUSED_EXTENSIONS = frozenset(
    "ade adp app asp bas bat cer chm cmd com cpl crt csh der exe fxp gadget hlp hta inf ins "
    "isp its js jse ksh lib lnk mad maf mag mam maq mar mas mat mau mav maw mda mdb mde mdt "
    "mdw mdz msc msh msh1 msh2 mshxml msh1xml msh2xml msi msp mst ops pcd pif plg prf prg reg "
    "scf scr sct shb shs sys ps1 ps1xml ps2 ps2xml psc1 psc2 tmp url vb vbe vbs vps vsmacros "
    "vss vst vsw vxd ws wsc wsf wsh xnk".split()
)
# A mailbox's address part: an ASCII local part (SES does not send SMTPUTF8) at a domain.
_ADDR_SPEC = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")

_BASE64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

Address = tuple[str, str]  # (display name, addr-spec with an ASCII domain)


@dataclass(frozen=True, slots=True)
class Attachment:
    """An inline attachment (``content_base64``) or a reference to an object (``s3_key``)."""

    filename: str
    content_type: str
    # Kept as the batch's base64 text: the MIME part only rewraps it, so the
    # bytes are never decoded and encoded again.
    content_base64: str | None = None
    s3_key: str | None = None
    size: int | None = None  # bytes once decoded; for a reference, what the plugin said


@dataclass(frozen=True, slots=True)
class Meta:
    sender: Address
    reply_to: tuple[Address, ...] = ()
    cc: tuple[Address, ...] = ()
    bcc: tuple[Address, ...] = ()
    content_type: str = "text/plain"
    charset: str = "utf-8"
    headers: tuple[tuple[str, str], ...] = ()
    configuration_set: str = ""
    tags: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Mail:
    id: str
    to: tuple[Address, ...]
    subject: str
    html: str | None = None
    text: str | None = None
    attachments: tuple[Attachment, ...] = ()


@dataclass(frozen=True, slots=True)
class Rejected:
    """A mail that breaks the format: recorded as failed, never sent."""

    mail_id: str
    error: BatchFormatError


@dataclass(frozen=True)
class Batch:
    batch_id: str
    created_at: datetime
    meta: Meta
    mails: tuple[Mail, ...]
    rejected: tuple[Rejected, ...] = ()
    redrive: int = 0
    part: int = 0
    # The batch as version 1, for writing continuations and failed-mail batches.
    document: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def mail_ids(self) -> frozenset[str]:
        return frozenset(mail.id for mail in self.mails)

    def subset(self, mail_ids: set[str], **changes: Any) -> dict[str, Any]:
        """This batch as a version 1 document holding only ``mail_ids``."""
        doc = {k: v for k, v in self.document.items() if k != "emails"}
        doc["emails"] = [m for m in self.document["emails"] if m.get("id") in mail_ids]
        doc.update(changes)
        return doc


def _load_schema() -> dict[str, Any]:
    text = resources.files("chalicelib").joinpath("batch-v1.schema.json").read_text("utf-8")
    return json.loads(text)


def _compile_validators() -> tuple[Any, Any]:
    schema = _load_schema()
    envelope = copy.deepcopy(schema)
    # Mails are checked one by one, so a bad mail does not sink its batch.
    envelope["properties"]["emails"]["items"] = {"type": "object"}
    mail = {"definitions": schema["definitions"], "$ref": "#/definitions/mail"}
    return fastjsonschema.compile(envelope), fastjsonschema.compile(mail)


_validate_envelope, _validate_mail = _compile_validators()


def _schema_error(exc: fastjsonschema.JsonSchemaValueException, prefix: str = "") -> str:
    name = exc.name.removeprefix("data").lstrip(".")
    return prefix + name if name else prefix.rstrip(".") or "(batch)"


def decode_batch(data: bytes, name: str) -> str:
    """The text of a batch file; ``BatchFormatError`` unless it is UTF-8."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BatchFormatError("(file)", name, f"not UTF-8: byte {exc.start} is invalid") from exc


def _load(text: str, name: str) -> dict[str, Any]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        # An upload cut short ends before its closing brace.
        hint = "" if text.rstrip().endswith("}") else " (the file looks truncated)"
        raise BatchFormatError(
            "(file)", name, f"not JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}){hint}"
        ) from exc
    if not isinstance(doc, dict):
        raise BatchFormatError("(file)", name, f"expected a JSON object, got {type(doc).__name__}")
    return doc


def _from_original_layout(doc: dict[str, Any], text: str, received_at: str) -> dict[str, Any]:
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
        "version": FORMAT_VERSION,
        "batch_id": f"legacy-{digest}",
        "site": {"url": "unknown"},
        "created_at": received_at,
        "meta": {k: v for k, v in v1_meta.items() if v is not None},
        "emails": mails,
    }


def _no_crlf(value: str, field_name: str, batch: str, mail: str | None = None) -> str:
    if "\r" in value or "\n" in value:
        raise HeaderInjectionError(field_name, batch, "CR or LF in a header value", mail)
    return value


def parse_address(value: str, field_name: str, batch: str, mail: str | None = None) -> Address:
    """One mailbox, with its domain IDNA-encoded; refuses anything SES could not send to."""
    _no_crlf(value, field_name, batch, mail)
    parsed = getaddresses([value])
    if len(parsed) != 1 or "@" not in parsed[0][1]:
        several = len(parsed) > 1 and all("@" in addr for _, addr in parsed)
        reason = "expected one mailbox in" if several else "malformed address"
        raise BatchFormatError(field_name, batch, f"{reason} {value!r}", mail)
    name, addr = parsed[0]
    local, _, domain = addr.rpartition("@")
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise BatchFormatError(field_name, batch, f"bad domain in {value!r}", mail) from exc
    addr = f"{local}@{domain}"
    if not _ADDR_SPEC.match(addr) or ".." in addr:
        raise BatchFormatError(field_name, batch, f"malformed address {value!r}", mail)
    return name, addr


def _addresses(values: list[str], field_name: str, batch: str, mail: str | None = None):
    return tuple(parse_address(v, f"{field_name}[{i}]", batch, mail) for i, v in enumerate(values))


def _sender_allowed(addr: str, allowed: tuple[str, ...]) -> bool:
    addr = addr.lower()
    return addr in allowed or addr.rpartition("@")[2] in allowed


def _meta(doc: dict[str, Any], batch: str, settings: Settings) -> Meta:
    meta = doc["meta"]
    sender = parse_address(meta["from"], "meta.from", batch)
    if not _sender_allowed(sender[1], settings.allowed_senders):
        raise SenderNotAllowed("meta.from", batch, f"{sender[1]} is not in POSTBAG_ALLOWED_SENDERS")
    headers = []
    for i, header in enumerate(meta.get("headers", ())):
        name, value = header["name"], header["value"]
        if name.lower() in RESERVED_HEADERS:
            raise BatchFormatError(
                f"meta.headers[{i}].name", batch, f"{name} is set from the batch's own fields"
            )
        headers.append((name, _no_crlf(value, f"meta.headers[{i}].value", batch)))
    return Meta(
        sender=sender,
        reply_to=_addresses(meta.get("reply_to", []), "meta.reply_to", batch),
        cc=_addresses(meta.get("cc", []), "meta.cc", batch),
        bcc=_addresses(meta.get("bcc", []), "meta.bcc", batch),
        content_type=meta.get("content_type", "text/plain"),
        charset=meta.get("charset", "utf-8").lower(),
        headers=tuple(headers),
        configuration_set=meta.get("configuration_set") or settings.default_configuration_set,
        tags=tuple(sorted(meta.get("tags", {}).items())),
    )


def base64_size(text: str) -> int | None:
    """Bytes ``text`` decodes to, or ``None`` unless it is strict, padded base64.

    Accepts what ``binascii.a2b_base64(strict_mode=True)`` accepts, without
    decoding: only the alphabet, no line breaks, at most two ``=`` and only at
    the end, a length that is a multiple of four.
    """
    if len(text) % 4 or not text.isascii():
        return None
    data = text.encode("ascii")
    body = data.rstrip(b"=")
    padding = len(data) - len(body)
    if padding > 2 or body.translate(None, _BASE64_ALPHABET):
        return None
    return len(data) // 4 * 3 - padding


def _attachment(raw: dict[str, Any], where: str, batch: str, mail: str, settings: Settings):
    filename = _no_crlf(raw["filename"], where + ".filename", batch, mail)
    extension = filename.rpartition(".")[2].lower() if "." in filename else ""
    if extension in REFUSED_EXTENSIONS:
        raise BatchFormatError(
            where + ".filename", batch, f"SES refuses .{extension} attachments", mail
        )
    if "s3_key" in raw:
        key = raw["s3_key"]
        # The sender reads only what the plugin may write: no other keys in the bucket.
        if not key.startswith(settings.attachments_prefix) or ".." in key:
            raise BatchFormatError(
                where + ".s3_key", batch, f"must be under {settings.attachments_prefix}", mail
            )
        return Attachment(filename, raw["content_type"], s3_key=key, size=raw.get("size"))
    text = raw["content_base64"]
    size = base64_size(text)
    if size is None:
        raise BatchFormatError(where + ".content_base64", batch, "not base64", mail)
    return Attachment(filename, raw["content_type"], content_base64=text, size=size)


def _mail(raw: Any, index: int, batch: str, meta: Meta, settings: Settings) -> Mail:
    where = f"emails[{index}]"
    mail_id = raw.get("id") if isinstance(raw, dict) else None
    mail_ref = mail_id if isinstance(mail_id, str) else f"#{index}"
    try:
        _validate_mail(raw)
    except fastjsonschema.JsonSchemaValueException as exc:
        field_name = _schema_error(exc, where + ".")
        message = exc.message.removeprefix("data.")
        raise BatchFormatError(field_name, batch, message, mail_ref) from exc
    to = _addresses(raw["to"], where + ".to", batch, mail_id)
    recipients = len(to) + len(meta.cc) + len(meta.bcc)
    if not recipients:
        raise BatchFormatError(where + ".to", batch, "no recipient in to, cc or bcc", mail_id)
    if recipients > SES_MAX_RECIPIENTS:
        raise BatchFormatError(
            where + ".to",
            batch,
            f"more than {SES_MAX_RECIPIENTS} recipients with cc and bcc",
            mail_id,
        )
    attachments = tuple(
        _attachment(a, f"{where}.attachments[{i}]", batch, mail_id, settings)
        for i, a in enumerate(raw.get("attachments", ()))
    )
    return Mail(
        id=mail_id,
        to=to,
        subject=_no_crlf(raw["subject"], where + ".subject", batch, mail_id),
        html=raw.get("html"),
        text=raw.get("text"),
        attachments=attachments,
    )


def parse_batch(
    data: bytes | str, name: str, settings: Settings, received_at: datetime | None = None
) -> Batch:
    """A batch file, as bytes or as text from ``decode_batch``, to a ``Batch``; ``name``
    (the S3 key) names it in errors.

    ``received_at`` (the object's upload time) dates batches in the original
    layout, which carry no time of their own.

    Raises ``BatchFormatError`` when the batch as a whole cannot be used; bad
    mails come back in ``Batch.rejected``.
    """
    text = data if isinstance(data, str) else decode_batch(data, name)
    doc = _load(text, name)
    if "version" not in doc and "meta" in doc and "emails" in doc:
        received = received_at or datetime.now(UTC)
        doc = _from_original_layout(doc, text, received.strftime("%Y-%m-%dT%H:%M:%SZ"))
    if doc.get("version") != FORMAT_VERSION:
        raise BatchFormatError(
            "version",
            name,
            f"unknown format version {doc.get('version')!r}; "
            f"this sender reads version {FORMAT_VERSION} and the original layout",
        )
    try:
        _validate_envelope(doc)
    except fastjsonschema.JsonSchemaValueException as exc:
        raise BatchFormatError(_schema_error(exc), name, exc.message.removeprefix("data.")) from exc
    label = f"{doc['batch_id']} ({name})"
    meta = _meta(doc, label, settings)
    mails, rejected, seen = [], [], set()
    for index, raw in enumerate(doc["emails"]):
        try:
            mail = _mail(raw, index, label, meta, settings)
            if mail.id in seen:
                raise BatchFormatError(f"emails[{index}].id", label, "duplicate mail id", mail.id)
        except BatchFormatError as exc:
            rejected.append(Rejected(exc.mail or f"#{index}", exc))
            continue
        seen.add(mail.id)
        mails.append(mail)
    return Batch(
        batch_id=doc["batch_id"],
        created_at=datetime.fromisoformat(doc["created_at"].replace("Z", "+00:00")),
        meta=meta,
        mails=tuple(mails),
        rejected=tuple(rejected),
        redrive=doc.get("redrive", 0),
        part=doc.get("continuation", {}).get("part", 0),
        document=doc,
    )
