"""Checks for the fields every batch format carries: addresses, header values, attachments.

A format module validates its layout with its JSON Schema, then passes each
field through these, which name the field, the batch and the mail in their
errors. Nothing here knows where in a document a field lives.
"""

from __future__ import annotations

import codecs
import re
import unicodedata
from email.utils import getaddresses

from chalicelib.config import SENDER_TAGS
from chalicelib.errors import BatchFormatError, HeaderInjectionError
from chalicelib.model import Address, Attachment

SES_MAX_RECIPIENTS = 50
# Set by the MIME builder from the batch's own fields; a custom header may not override them.
RESERVED_HEADERS = frozenset(
    "from to cc bcc reply-to subject date message-id mime-version content-type "
    "content-transfer-encoding content-disposition return-path sender".split()
)
# Written by the hops a mail passes (trace, authentication, SES's own): a batch
# that set them could forge a mail's history or its authentication results.
TRACE_HEADERS = frozenset(
    "received received-spf dkim-signature domainkey-signature authentication-results "
    "arc-seal arc-message-signature arc-authentication-results delivered-to x-original-to "
    "feedback-id".split()
)
TRACE_HEADER_PREFIXES = ("resent-", "arc-", "x-ses-", "x-amz-")
# A header field name: printable ASCII but for the colon (RFC 5322 section 3.6.8).
_FIELD_NAME = re.compile(r"^[!-9;-~]{1,76}$")
# File types SES refuses as attachments (SES developer guide, "Unsupported attachment types").
REFUSED_EXTENSIONS = frozenset(
    "ade adp app asp bas bat cer chm cmd com cpl crt csh der exe fxp gadget hlp hta inf ins "
    "isp its js jse ksh lib lnk mad maf mag mam maq mar mas mat mau mav maw mda mdb mde mdt "
    "mdw mdz msc msh msh1 msh2 mshxml msh1xml msh2xml msi msp mst ops pcd pif plg prf prg reg "
    "scf scr sct shb shs sys ps1 ps1xml ps2 ps2xml psc1 psc2 tmp url vb vbe vbs vps vsmacros "
    "vss vst vsw vxd ws wsc wsf wsh xnk".split()
)
# A MIME type as RFC 2045 spells it: token "/" token.
_MIME_TYPE = re.compile(r"^[A-Za-z0-9!#$&^_.+-]{1,64}/[A-Za-z0-9!#$&^_.+-]{1,64}$")
# Types the builder cannot send as one opaque part: a container would be parsed
# as MIME structure by the reader, with parts the sender never checked.
_CONTAINER_TYPES = ("multipart/", "message/")
# A mailbox's address part: an ASCII local part (SES does not send SMTPUTF8) at a domain.
_ADDR_SPEC = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
# A dot-atom local part (RFC 5322 section 3.4.1) at a domain of ASCII labels: the
# addresses ``email.utils`` reads back exactly as written.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM_ADDRESS = re.compile(
    rf"^{_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$"
)
# Characters no header may hold: C0 controls but TAB, DEL, C1 controls (NEL among
# them), the Unicode line and paragraph separators, and lone surrogates (JSON's
# "\ud800" escapes make them). Python's email package splits lines on some of
# these and cannot encode the others.
_FORBIDDEN_IN_HEADER = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
# Refused in addresses on top of that: TAB is folding whitespace, never part of a mailbox.
_FORBIDDEN_IN_ADDRESS = re.compile("[\t]")
# An RFC 2047 encoded word. Input never carries one: the MIME builder encodes
# values itself, and the email package would decode one that came in (on some
# Python patch levels, into a raw header line).
_ENCODED_WORD = re.compile(r"=\?[^?]*\?[A-Za-z]\?[^?]*\?=")
# A charset must write printable ASCII and CRLF as themselves: that keeps out
# codecs that are no mail charset although ``codecs.lookup`` knows them
# (utf-16, utf-7, idna, punycode, unicode_escape, hz...).
_CHARSET_PROBE = "".join(map(chr, range(32, 127))) + "\r\n"

_BASE64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _character(char: str) -> str:
    return f"U+{ord(char):04X}"


def header_value(value: str, field: str, batch: str, mail: str | None = None) -> str:
    """A value that may go into a header as it is: no line break, no control
    character, no lone surrogate, no encoded word."""
    if "\r" in value or "\n" in value:
        raise HeaderInjectionError(field, batch, "CR or LF in a header value", mail)
    bad = _FORBIDDEN_IN_HEADER.search(value)
    if bad:
        raise HeaderInjectionError(
            field, batch, f"control character {_character(bad.group())} in a header value", mail
        )
    if _ENCODED_WORD.search(value):
        raise HeaderInjectionError(
            field, batch,
            "RFC 2047 encoded word (=?...?=) in a header value: send the text itself, "
            "the sender encodes it", mail,
        )
    return value


def _parse_mailboxes(value: str, field: str, batch: str, mail: str | None) -> list[Address]:
    try:
        return getaddresses([value])
    except (RecursionError, ValueError, IndexError) as exc:
        # email.utils recurses once per nested comment: "((((...a@b" exhausts the stack.
        reason = f"unreadable address ({type(exc).__name__}), e.g. comments nested too deeply"
        raise BatchFormatError(field, batch, reason, mail) from exc


def address(value: str, field: str, batch: str, mail: str | None = None) -> Address:
    """One mailbox, with its domain IDNA-encoded; refuses anything SES could not send to."""
    header_value(value, field, batch, mail)
    if _FORBIDDEN_IN_ADDRESS.search(value):
        raise HeaderInjectionError(field, batch, "TAB in an address", mail)
    parsed = _parse_mailboxes(value, field, batch, mail)
    if len(parsed) != 1 or "@" not in parsed[0][1]:
        several = len(parsed) > 1 and all("@" in addr for _, addr in parsed)
        reason = "expected one mailbox in" if several else "malformed address"
        raise BatchFormatError(field, batch, f"{reason} {value!r}", mail)
    name, addr = parsed[0]
    if addr not in value:
        # email.utils mends some text into an address ("bob@exa mple.net" becomes
        # bob@example.net): send only to an address the batch spelled out.
        raise BatchFormatError(field, batch, f"malformed address {value!r}", mail)
    local, _, domain = addr.rpartition("@")
    try:
        # Domains are case-insensitive: lower case matches SES identities as written.
        domain = domain.encode("idna").decode("ascii").lower()
    except UnicodeError as exc:
        raise BatchFormatError(field, batch, f"bad domain in {value!r}", mail) from exc
    addr = f"{local}@{domain}"
    if not _ADDR_SPEC.fullmatch(addr) or ".." in addr:
        raise BatchFormatError(field, batch, f"malformed address {value!r}", mail)
    return header_value(name, field, batch, mail), addr


def bare_address(value: str, field: str, batch: str, mail: str | None = None) -> str:
    """An addr-spec alone, no display name, as ``address`` returns it (notify jobs' rows).

    A plain dot-atom at an ASCII domain, nearly every row, is checked by one regular
    expression: ``address`` parses with ``email.utils`` at ~60 µs a call, which a
    million-recipient job would pay a million times. Anything else goes through it.
    """
    if _DOT_ATOM_ADDRESS.fullmatch(value):
        local, _, domain = value.rpartition("@")
        if all(len(label) <= 63 for label in domain.split(".")):  # what IDNA checks
            return f"{local}@{domain.lower()}"
    name, addr = address(value, field, batch, mail)
    if name or "<" in value:
        raise BatchFormatError(
            field, batch, "expected a bare address (user@example.org), without a name", mail
        )
    return addr


def addresses(
    values: list[str], field: str, batch: str, mail: str | None = None
) -> tuple[Address, ...]:
    return tuple(address(v, f"{field}[{i}]", batch, mail) for i, v in enumerate(values))


def sender_allowed(addr: str, allowed: tuple[str, ...]) -> bool:
    """Whether ``addr`` is an allowed address or at an allowed domain."""
    addr = addr.lower()
    return addr in allowed or addr.rpartition("@")[2] in allowed


def reserved_header(name: str) -> str | None:
    """Why a batch may not set header ``name``, or ``None`` if it may."""
    lowered = name.lower()
    if lowered in RESERVED_HEADERS:
        return f"{name} is set from the batch's own fields"
    if lowered in TRACE_HEADERS or lowered.startswith(TRACE_HEADER_PREFIXES):
        return f"{name} is a trace or authentication header, written by the hops a mail passes"
    return None


def custom_header(name: str, value: str, where: str, batch: str) -> tuple[str, str]:
    """A header the batch sets itself; the MIME builder's own headers and trace headers
    are refused."""
    if not _FIELD_NAME.fullmatch(name):
        reason = "not a header field name (printable ASCII without ':' or space, 1 to 76)"
        raise BatchFormatError(f"{where}.name", batch, f"{name!r} is {reason}")
    header_value(name, f"{where}.name", batch)
    refused = reserved_header(name)
    if refused:
        raise BatchFormatError(f"{where}.name", batch, refused)
    return name, header_value(value, f"{where}.value", batch)


def tag(name: str, value: str, where: str, batch: str) -> tuple[str, str]:
    """An SES message tag: both parts go to SES as they are. Postbag's own tags are refused:
    SES's Send event would carry the batch's value back as another mail's evidence (or
    name another job)."""
    if name in SENDER_TAGS:
        raise BatchFormatError(f"{where}.name", batch, f"{name} is set by the sender")
    return header_value(name, f"{where}.name", batch), header_value(value, f"{where}.value", batch)


def charset(value: str) -> str:
    """The charset to write text parts in: ``value`` if it is a mail charset, UTF-8 otherwise.

    WordPress's ``blog_charset`` is a free-form setting; an unusable one
    (``undefined``, ``rot13``, ``utf-16``) falls back to UTF-8 like an unknown
    one, which can write every text.
    """
    name = value.lower()
    try:
        codec = codecs.lookup(name)
        usable = codec._is_text_encoding and _CHARSET_PROBE.encode(name) == _CHARSET_PROBE.encode()
    except (LookupError, UnicodeError, TypeError, ValueError):
        usable = False
    return name if usable else "utf-8"


def body(value: str | None, field: str, batch: str, mail: str) -> str | None:
    """A text or HTML body: any text that can be written as UTF-8."""
    if value is not None:
        bad = _FORBIDDEN_IN_HEADER.search(value)
        if bad and 0xD800 <= ord(bad.group()) <= 0xDFFF:
            raise BatchFormatError(field, batch, f"lone surrogate {_character(bad.group())}", mail)
        if "\x00" in value:
            raise BatchFormatError(field, batch, "NUL character (U+0000) in a body", mail)
    return value


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


def _normalised_name(filename: str) -> str:
    """The name a reader's system sees: no directories, no trailing dots or spaces
    (Windows drops them: ``setup.exe.`` opens as ``setup.exe``), composed Unicode."""
    name = unicodedata.normalize("NFC", filename)
    name = name.replace("\\", "/").rpartition("/")[2]
    return name.rstrip(". ")


def _extension(name: str) -> str:
    return name.rpartition(".")[2].lower() if "." in name else ""


def attachment_name(filename: str, field: str, batch: str, mail: str) -> str:
    """A file name SES will send, as it will be sent (normalised before the type check)."""
    header_value(filename, field, batch, mail)
    invisible = next((c for c in filename if unicodedata.category(c) == "Cf"), None)
    if invisible is not None:
        # Bidirectional overrides make "invoice\u202egnp.exe" read "invoiceexe.png".
        raise BatchFormatError(
            field, batch, f"invisible format character {_character(invisible)} in a file name",
            mail,
        )
    name = _normalised_name(filename)
    if not name:
        raise BatchFormatError(field, batch, f"no file name left in {filename!r}", mail)
    # Compatibility forms too: a fullwidth "．ｅｘｅ" is ".exe" once normalised.
    for extension in {_extension(name), _extension(unicodedata.normalize("NFKC", name))}:
        if extension in REFUSED_EXTENSIONS:
            raise BatchFormatError(field, batch, f"SES refuses .{extension} attachments", mail)
    return name


def content_type(value: str, field: str, batch: str, mail: str) -> str:
    """An attachment's MIME type: ``type/subtype``, and no container type."""
    if not _MIME_TYPE.fullmatch(value):
        raise BatchFormatError(field, batch, f"{value!r} is not a MIME type (type/subtype)", mail)
    lowered = value.lower()
    if lowered.startswith(_CONTAINER_TYPES):
        raise BatchFormatError(
            field, batch, f"attachments of type {lowered} are not supported (send a file type)",
            mail,
        )
    return lowered


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
