"""Checks for the fields every batch format carries: addresses, header values, attachments.

A format module validates its layout with its JSON Schema, then passes each
field through these, which name the field, the batch and the mail in their
errors. Nothing here knows where in a document a field lives.
"""

from __future__ import annotations

import re
from email.utils import getaddresses

from chalicelib.errors import BatchFormatError, HeaderInjectionError
from chalicelib.model import Address, Attachment

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


def header_value(value: str, field: str, batch: str, mail: str | None = None) -> str:
    """A value that may go into a header as it is."""
    if "\r" in value or "\n" in value:
        raise HeaderInjectionError(field, batch, "CR or LF in a header value", mail)
    return value


def address(value: str, field: str, batch: str, mail: str | None = None) -> Address:
    """One mailbox, with its domain IDNA-encoded; refuses anything SES could not send to."""
    header_value(value, field, batch, mail)
    parsed = getaddresses([value])
    if len(parsed) != 1 or "@" not in parsed[0][1]:
        several = len(parsed) > 1 and all("@" in addr for _, addr in parsed)
        reason = "expected one mailbox in" if several else "malformed address"
        raise BatchFormatError(field, batch, f"{reason} {value!r}", mail)
    name, addr = parsed[0]
    local, _, domain = addr.rpartition("@")
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise BatchFormatError(field, batch, f"bad domain in {value!r}", mail) from exc
    addr = f"{local}@{domain}"
    if not _ADDR_SPEC.match(addr) or ".." in addr:
        raise BatchFormatError(field, batch, f"malformed address {value!r}", mail)
    return name, addr


def addresses(
    values: list[str], field: str, batch: str, mail: str | None = None
) -> tuple[Address, ...]:
    return tuple(address(v, f"{field}[{i}]", batch, mail) for i, v in enumerate(values))


def sender_allowed(addr: str, allowed: tuple[str, ...]) -> bool:
    """Whether ``addr`` is an allowed address or at an allowed domain."""
    addr = addr.lower()
    return addr in allowed or addr.rpartition("@")[2] in allowed


def custom_header(name: str, value: str, where: str, batch: str) -> tuple[str, str]:
    """A header the batch sets itself; the MIME builder's own headers are refused."""
    if name.lower() in RESERVED_HEADERS:
        raise BatchFormatError(f"{where}.name", batch, f"{name} is set from the batch's own fields")
    return name, header_value(value, f"{where}.value", batch)


def recipient_count(count: int, field: str, batch: str, mail: str | None) -> None:
    """SES sends a mail to at least one and at most 50 recipients (To, Cc and Bcc)."""
    if not count:
        raise BatchFormatError(field, batch, "no recipient in to, cc or bcc", mail)
    if count > SES_MAX_RECIPIENTS:
        raise BatchFormatError(
            field, batch, f"more than {SES_MAX_RECIPIENTS} recipients with cc and bcc", mail
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


def attachment_name(filename: str, field: str, batch: str, mail: str) -> str:
    """A file name SES will send."""
    header_value(filename, field, batch, mail)
    extension = filename.rpartition(".")[2].lower() if "." in filename else ""
    if extension in REFUSED_EXTENSIONS:
        raise BatchFormatError(field, batch, f"SES refuses .{extension} attachments", mail)
    return filename


def inline_attachment(
    filename: str, content_type: str, content_base64: str, where: str, batch: str, mail: str
) -> Attachment:
    size = base64_size(content_base64)
    if size is None:
        raise BatchFormatError(where + ".content_base64", batch, "not base64", mail)
    return Attachment(filename, content_type, content_base64=content_base64, size=size)


def attachment_reference(
    filename: str, content_type: str, key: str, size: int | None, prefix: str,
    where: str, batch: str, mail: str,
) -> Attachment:
    # The sender reads only what the plugin may write: no other keys in the bucket.
    if not key.startswith(prefix) or ".." in key:
        raise BatchFormatError(where + ".s3_key", batch, f"must be under {prefix}", mail)
    return Attachment(filename, content_type, s3_key=key, size=size)
