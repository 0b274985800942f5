"""The sender's view of batch files the plugin wrote: parse, validate, build MIME.

Reads JSON on stdin: {"batches": {name: batch text}, "attachments": {s3 key:
base64 bytes}}. Each batch goes through the sender's own stages
(``chalicelib.formats.parse_batch``, then ``chalicelib.mime.raw_message``); the
wire bytes are parsed back with the standard library and summarised as JSON,
so the PHP test compares what a recipient would get with what WordPress was
given. Settings come from the environment (POSTBAG_ALLOWED_SENDERS ...).
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from datetime import UTC, datetime
from email import policy
from email.parser import BytesParser
from email.utils import getaddresses

from chalicelib.config import Settings
from chalicelib.errors import BatchFormatError
from chalicelib.formats import parse_batch
from chalicelib.mime import encode_attachment, raw_message


def _addresses(message, name: str) -> list[str]:
    return [addr for _, addr in getaddresses(message.get_all(name, []))]


def _attachments(message):
    # The transfer-decoded bytes: get_content() would decode text/* into str.
    return [(part, part.get_payload(decode=True)) for part in message.iter_attachments()]


def _content(part) -> str | None:
    # Lines end in CRLF on the wire; a reader sees lines.
    return part.get_content().replace("\r\n", "\n") if part else None


def _summary(raw: bytes) -> dict:
    message = BytesParser(policy=policy.default).parsebytes(raw)
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    return {
        "from": _addresses(message, "From"),
        "to": _addresses(message, "To"),
        "cc": _addresses(message, "Cc"),
        "reply_to": _addresses(message, "Reply-To"),
        "subject": str(message["Subject"]),
        "raw_subject": raw.split(b"\r\nSubject: ", 1)[1].split(b"\r\n", 1)[0].decode("ascii"),
        "text": _content(text),
        "html": _content(html),
        "attachments": [
            {
                "filename": part.get_filename(),
                "content_type": part.get_content_type(),
                "sha256": hashlib.sha256(data).hexdigest(),
                "size": len(data),
            }
            for part, data in _attachments(message)
        ],
        "list_unsubscribe": message.get("List-Unsubscribe"),
        "list_unsubscribe_post": message.get("List-Unsubscribe-Post"),
        "max_line": max(len(line) for line in raw.split(b"\r\n")),
        "ascii_only": raw.isascii(),
    }


def _files(mail, attachments: dict[str, bytes]):
    return [
        (item, item.content_base64 or encode_attachment(attachments[item.s3_key]))
        for item in mail.attachments
    ]


def check(name: str, text: str, attachments: dict[str, bytes], settings: Settings) -> dict:
    try:
        batch = parse_batch(text.encode("utf-8"), name, settings)
    except BatchFormatError as exc:
        return {"refused": str(exc)}
    return {
        "batch_id": batch.batch_id,
        "rejected": {r.mail_id: str(r.error) for r in batch.rejected},
        "bcc": [addr for _, addr in batch.meta.bcc],
        "mails": {
            mail.id: _summary(
                raw_message(mail, batch.meta, _files(mail, attachments), datetime.now(UTC))
            )
            for mail in batch.mails
        },
    }


def main() -> None:
    request = json.load(sys.stdin)
    attachments = {k: base64.b64decode(v) for k, v in request.get("attachments", {}).items()}
    settings = Settings.from_env()
    result = {
        name: check(name, text, attachments, settings) for name, text in request["batches"].items()
    }
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
