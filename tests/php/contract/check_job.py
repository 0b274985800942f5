"""The sender's view of a notify job the plugin wrote: schema, manifest, parts, rows.

Reads JSON on stdin: {"manifest_key": key, "objects": {s3 key: base64 bytes}}.
The manifest is validated against fixtures/job-v2.schema.json (its ``$id``s
resolved to the files beside it, never fetched) and parsed by the sender's own
``chalicelib.formats.v2.parse_manifest``; each part is checked against its
manifest entry (size, SHA-256, row count) and read with ``read_rows``, each
line also validated against the schema's ``recipient``. Prints a summary as
JSON for the PHP test to compare with what WordPress was given. Settings come
from the environment (POSTBAG_ALLOWED_SENDERS ...).
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
import zlib
from pathlib import Path
from urllib.parse import urlsplit

import fastjsonschema

from chalicelib.config import Settings
from chalicelib.errors import BatchFormatError
from chalicelib.formats import v2

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures"


def _load(uri: str) -> dict:
    return json.loads((FIXTURES / urlsplit(uri).path.rpartition("/")[2]).read_text("utf-8"))


def _validators():
    schema = _load("job-v2.schema.json")
    row = {
        "$id": schema["$id"],
        "definitions": schema["definitions"],
        "$ref": "#/definitions/recipient",
    }
    handlers = {"https": _load}
    return fastjsonschema.compile(schema, handlers=handlers), fastjsonschema.compile(
        row, handlers=handlers
    )


def _schema_errors(validate, doc) -> list[str]:
    try:
        validate(doc)
    except fastjsonschema.JsonSchemaValueException as exc:
        return [exc.message]
    return []


def check(manifest_key: str, objects: dict[str, bytes], settings: Settings) -> dict:
    validate_manifest, validate_row = _validators()
    data = objects[manifest_key]
    errors = _schema_errors(validate_manifest, json.loads(data))
    try:
        job = v2.parse_manifest(data, manifest_key, settings)
    except BatchFormatError as exc:
        return {"refused": str(exc), "schema_errors": errors}
    recipients, bad = [], []
    for i, part in enumerate(job.parts):
        body = objects.get(part.key)
        if body is None:
            errors.append(f"{part.key}: missing")
            continue
        if len(body) != part.bytes or hashlib.sha256(body).hexdigest() != part.sha256:
            errors.append(f"{part.key}: size or checksum differs from the manifest")
        if v2.count_rows(body, i, part.key) != part.rows:
            errors.append(f"{part.key}: row count differs from the manifest")
        text = zlib.decompress(body, wbits=16 + zlib.MAX_WBITS)
        if not text.endswith(b"\n"):
            errors.append(f"{part.key}: last line without \\n")
        for line in text.splitlines():
            errors += [f"{part.key}: {e}" for e in _schema_errors(validate_row, json.loads(line))]
        good, wrong = v2.read_rows(body, i, 0, part.rows, part.key)
        recipients += [
            {"email": r.email, "name": r.name, "user_id": r.user_id, "vars": r.vars,
             "unsubscribe_url": r.unsubscribe_url}
            for r in good
        ]
        bad += [f"{part.key} row {row}: {reason}" for row, reason in wrong]
    return {
        "job_id": job.job_id,
        "schema_errors": errors,
        "from": list(job.meta.sender),
        "reply_to": [list(address) for address in job.meta.reply_to],
        "headers": [list(header) for header in job.meta.headers],
        "list": job.list_name,
        "template": {
            "subject": job.template.subject,
            "html": job.template.html,
            "text": job.template.text,
        },
        "context": job.context,
        "attachments": [
            {"filename": a.filename, "content_type": a.content_type, "s3_key": a.s3_key}
            for a in job.attachments
        ],
        "recipients": recipients,
        "bad": bad,
        "keys": sorted(json.loads(data)),
        "send_at": job.send_at.isoformat() if job.send_at else None,
        "send_between": [t.isoformat() for t in job.send_between] if job.send_between else None,
    }


def main() -> None:
    request = json.load(sys.stdin)
    objects = {k: base64.b64decode(v) for k, v in request["objects"].items()}
    json.dump(check(request["manifest_key"], objects, Settings.from_env()), sys.stdout)


if __name__ == "__main__":
    main()
