"""Build the raw MIME message for ``SendRawEmail`` with Python's ``email`` package.

The batch stage has already refused line breaks, control characters and
encoded words in header values and checked every address; here
``policy.SMTP`` encodes non-ASCII headers (RFC 2047/2231), picks transfer
encodings that keep lines short (SES refuses lines over 1,000 characters) and
writes CRLF line endings.

Two guards keep a batch's text from ever becoming a header of its own,
whatever the Python patch level: unstructured values (Subject, custom headers)
are taken literally, never decoded as encoded words (some versions decode
``=?utf-8?b?DQpCY2M6...?=`` into a raw ``Bcc:`` line when they write the
header again), and ``raw_message`` checks that the header lines written are
exactly those set.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import re
from collections.abc import Sequence
from datetime import datetime
from email import policy
from email._header_value_parser import (
    UnstructuredTokenList,
    ValueTerminal,
    WhiteSpaceTerminal,
)
from email.generator import NLCRE, BytesGenerator  # type: ignore[attr-defined]
from email.headerregistry import Address as HeaderAddress
from email.headerregistry import BaseHeader, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.policy import Policy
from email.utils import format_datetime
from typing import Any

from chalicelib.errors import MessageTooLarge
from chalicelib.html_text import text_body
from chalicelib.model import Address, Attachment, Mail, Meta

# SES's limit for a raw message, counted after base64 encoding.
SES_MAX_RAW_BYTES = 10 * 1024 * 1024
BASE64_LINE = 76  # characters, RFC 2045
BOUNDARY_PREFIX = "=_postbag_"
_BASE64_LINES = re.compile(f".{{1,{BASE64_LINE}}}")
# Distinct header texts kept parsed: a batch's repeating ones stay among the
# latest few hundred, whatever the per-mail Subjects and boundaries push through.
HEADER_CACHE_SIZE = 512


class _Generator(BytesGenerator):
    """``BytesGenerator`` writing each body in one piece.

    The stock generator writes a body line by line (two calls a line), which
    makes a 100 KB attachment cost thousands of calls; joining with the policy's
    line separator at once gives the same bytes.
    """

    def _write_lines(self, lines: str) -> None:
        # Bodies we build hold bare LFs only; str.replace is then the same, and cheaper.
        newline = self._NL  # type: ignore[attr-defined]  # the generator's own, not in the stubs
        self.write(lines.replace("\n", newline) if "\r" not in lines else NLCRE.sub(newline, lines))


class _Header(BaseHeader):
    """A header that folds once: a shared header is written into many messages."""

    def fold(self, *, policy: Policy) -> str:
        # The generator clones the policy for every part; these are what folding reads.
        key = (policy.max_line_length, policy.linesep, getattr(policy, "utf8", False))
        folded = getattr(self, "_folded", None)
        if folded is None or folded[0] != key:
            folded = self._folded = (key, super().fold(policy=policy))
        return folded[1]


_WORDS = re.compile(r"[ \t]+|[^ \t]+")


def _literal_unstructured(value: str) -> UnstructuredTokenList:
    """What ``get_unstructured`` makes of a value, without decoding encoded words:
    words and the spaces between them, so folding encodes non-ASCII words itself."""
    tokens = UnstructuredTokenList()
    for run in _WORDS.findall(value):
        is_space = run[0] in " \t"
        tokens.append(WhiteSpaceTerminal(run, "fws") if is_space else ValueTerminal(run, "vtext"))
    return tokens


class _LiteralUnstructured(UnstructuredHeader):
    """An unstructured header whose value is the text as given."""

    value_parser = staticmethod(_literal_unstructured)


class _LiteralSubject(_LiteralUnstructured):
    max_count = 1


class _ListUnsubscribe(_LiteralUnstructured, _Header):
    """``List-Unsubscribe`` as written, never as encoded words, which would hide its URIs
    from every mail client: on one line, or one URI a line when that is too long. Its
    value is printable ASCII without spaces inside a URI (``unsubscribe.url``), and each
    URI short enough for a line (``unsubscribe.MAX_URL``). A value a batch set without a
    list (not checked as such) that is not plain ASCII or too long is folded as any."""

    def fold(self, *, policy: Policy) -> str:
        line = f"{self.name}: {self}"
        lines = [line] if _PLAIN_LINE.fullmatch(line) else line.split(", ")
        if not all(_PLAIN_LINE.fullmatch(part) for part in lines):
            return super().fold(policy=policy)
        return f",{policy.linesep} ".join(lines) + policy.linesep


# A header line as written: printable ASCII, at most 998 characters (RFC 5322).
_PLAIN_LINE = re.compile(r"[ -~]{1,997}")


class _HeaderClasses(HeaderRegistry):
    """``HeaderRegistry`` that builds each header class once, not on every lookup, and
    parses a header given as text once: most repeat from mail to mail
    (``Content-Transfer-Encoding: base64``, the batch's ``Date``).

    Sharing is safe: a header object is a ``str`` and never changes once built.
    """

    def __init__(self) -> None:
        # The stubs type header classes as parsers or BaseHeader; the registry mixes them in.
        super().__init__(
            base_class=_Header, default_class=_LiteralUnstructured  # type: ignore[arg-type]
        )
        self.map_to_type("subject", _LiteralSubject)  # type: ignore[arg-type]
        self.map_to_type("list-unsubscribe", _ListUnsubscribe)
        self._built: dict[str, type] = {}
        self._parsed = functools.lru_cache(maxsize=HEADER_CACHE_SIZE)(super().__call__)

    def __getitem__(self, name: str) -> type:
        built = self._built.get(name)
        if built is None:
            built = self._built.setdefault(name, super().__getitem__(name))
        return built

    def __call__(self, name: str, value: Any) -> BaseHeader:
        if isinstance(value, str):
            return self._parsed(name, value)
        return super().__call__(name, value)


# policy.SMTP with the cached header classes: same output, less work per header.
POLICY = policy.SMTP.clone(header_factory=_HeaderClasses())


def _wrap(content_base64: str) -> str:
    """Base64 text in lines of 76 characters, as ``base64.encodebytes`` writes it."""
    lines = _BASE64_LINES.findall(content_base64)  # in C: faster than slicing in a loop
    lines.append("")
    return "\n".join(lines) if len(lines) > 1 else ""


def _attachment_part(attachment: Attachment, content_base64: str) -> EmailMessage:
    """What ``add_attachment`` builds, byte for byte, from base64 text that needs only wrapping.

    The stock content manager would take the decoded bytes and encode them
    again one 57-byte line at a time in Python: most of the CPU a 100 KB
    attachment cost.
    """
    part = EmailMessage(policy=POLICY)
    part["Content-Type"] = attachment.content_type
    part["Content-Transfer-Encoding"] = "base64"
    part["Content-Disposition"] = "attachment"
    part.set_param("filename", attachment.filename, header="Content-Disposition")
    part.set_payload(_wrap(content_base64))
    return part


def encode_attachment(data: bytes) -> str:
    """An attachment's bytes as the base64 text the builder takes."""
    return base64.b64encode(data).decode("ascii")


@functools.lru_cache(maxsize=HEADER_CACHE_SIZE)
def _address_header(name: str, addresses: tuple[Address, ...]) -> BaseHeader:
    """An address header, built once for a batch's From, Cc and Reply-To."""
    mailboxes = tuple(HeaderAddress(display_name=n, addr_spec=a) for n, a in addresses)
    return POLICY.header_factory(name, mailboxes)


def _charset_for(body: str, charset: str) -> str:
    """The batch's charset where it can hold the body, UTF-8 otherwise."""
    try:
        body.encode(charset)
    except (LookupError, UnicodeError):  # unknown, unusable ("undefined"), or too small
        return "utf-8"
    return charset


def estimated_size(payload_bytes: int) -> int:
    """Bytes an attachment of ``payload_bytes`` takes once base64-encoded (76-char lines)."""
    encoded = (payload_bytes + 2) // 3 * 4
    return encoded + encoded // BASE64_LINE * 2


def _text_part_args(body: str, charset: str) -> tuple[str, str | None]:
    """The charset and transfer encoding of a text part."""
    # 8-bit parts are not safe on every hop; quoted-printable keeps them 7-bit.
    return _charset_for(body, charset), None if body.isascii() else "quoted-printable"


def _finish(message: EmailMessage, bodies: Sequence[str | None]) -> None:
    # '=_' cannot occur in quoted-printable or base64, so only a 7bit text body
    # could hold a boundary: a fixed one (deterministic, and the same multipart
    # headers for every mail, parsed once) unless a body holds it; then one from
    # the bodies' hash, which they cannot hold.
    prefix = BOUNDARY_PREFIX
    if any(body is not None and BOUNDARY_PREFIX in body for body in bodies):
        seed = "\0".join(body or "" for body in bodies)
        prefix += hashlib.sha256(seed.encode()).hexdigest()[:32] + "_"
    multiparts = (part for part in message.walk() if part.is_multipart())
    for index, part in enumerate(multiparts):
        part.set_boundary(f"{prefix}{index}")
    for part in message.walk():
        if part is not message:
            del part["MIME-Version"]  # add_alternative/add_attachment repeat it on every part


def build_message(
    mail: Mail, meta: Meta, files: Sequence[tuple[Attachment, str]], date: datetime
) -> EmailMessage:
    """The mail as an ``EmailMessage``; Bcc stays out of it (SES gets Bcc as destinations).

    ``files`` holds each attachment with its content as unwrapped base64 text.
    """
    message = EmailMessage(policy=POLICY)
    message["From"] = _address_header("From", (meta.sender,))
    if mail.to:
        message["To"] = _address_header("To", mail.to)
    if meta.cc:
        message["Cc"] = _address_header("Cc", meta.cc)
    if meta.reply_to:
        message["Reply-To"] = _address_header("Reply-To", meta.reply_to)
    message["Subject"] = mail.subject
    message["Date"] = format_datetime(date)
    for name, value in meta.headers:
        message[name] = value
    text = text_body(mail.html, mail.text)
    assert text is not None  # the schema requires html or text
    charset, cte = _text_part_args(text, meta.charset)
    message.set_content(text, charset=charset, cte=cte)
    if mail.html is not None:
        charset, cte = _text_part_args(mail.html, meta.charset)
        message.add_alternative(mail.html, subtype="html", charset=charset, cte=cte)
    if files:
        message.make_mixed()
        for attachment, content_base64 in files:
            message.attach(_attachment_part(attachment, content_base64))
    _finish(message, (text, mail.html))
    return message


def _header_names(raw: bytes) -> list[str]:
    """The names of the top-level header lines in ``raw``, lower-cased, in order."""
    head = raw[: raw.find(b"\r\n\r\n")].split(b"\r\n")
    return [
        line.partition(b":")[0].decode("ascii", "replace").lower()
        for line in head if line[:1] not in (b" ", b"\t")
    ]


def check_headers(message: EmailMessage, raw: bytes) -> None:
    """``ValueError`` unless ``raw`` has exactly the header lines set on ``message``:
    nothing a value held became a header of its own (a ``Bcc:`` line above all)."""
    written, built = _header_names(raw), [name.lower() for name in message.keys()]
    if sorted(written) != sorted(built):
        extra = sorted(set(written) - set(built)) or sorted(written)
        raise ValueError(f"header lines written ({', '.join(extra)}) are not those set")


def raw_message(
    mail: Mail, meta: Meta, files: Sequence[tuple[Attachment, str]], date: datetime
) -> bytes:
    """The wire bytes of the mail; ``MessageTooLarge`` past SES's 10 MB."""
    message = build_message(mail, meta, files, date)
    buffer = io.BytesIO()
    _Generator(buffer, policy=POLICY).flatten(message)
    raw = buffer.getvalue()
    check_headers(message, raw)
    if len(raw) > SES_MAX_RAW_BYTES:
        raise MessageTooLarge(
            f"mail {mail.id}: the raw message is {len(raw):,} bytes; SES accepts at most "
            f"{SES_MAX_RAW_BYTES:,}"
        )
    return raw
