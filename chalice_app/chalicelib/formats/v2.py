"""Format version 2: notify jobs (``job-v2.schema.json``, docs/job-format.md).

A job is a manifest (``jobs/<job_id>/manifest.json``: templates, shared
context and meta, the list of parts) and gzip-compressed NDJSON part files of
recipients, one per line. The manifest is checked whole: anything wrong in it
refuses the job (the caller quarantines it). Rows are checked one by one when
a work item is sent: a bad row fails that recipient alone.

Not a ``BatchFormat``: a job is never sent as it comes, it is split into work
items (``split.py``) and each is rendered per recipient (``render.py``).
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import replace
from datetime import datetime
from importlib import resources
from itertools import chain, islice
from typing import Any
from urllib.parse import urlsplit

import fastjsonschema

from chalicelib import fields, unsubscribe
from chalicelib.config import JOB_TAG, JOBS_PREFIX, LIST_TAG, Settings
from chalicelib.errors import BatchFormatError
from chalicelib.formats import v1
from chalicelib.formats.document import Document, decode_batch, load_object
from chalicelib.model import Meta, NotifyJob, Part, Recipient, Template
from chalicelib.render import compile_templates

VERSION = 2
MANIFEST_NAME = "manifest.json"
# The most a part may inflate to. A part holds at most 100,000 rows; 256 MiB is
# ~2.6 KB a row, far above any real row, and what a gzip bomb is cut off at.
MAX_PART_INFLATED = 256 * 1024 * 1024
# Inflated bytes produced per step: bounds what one step of a bomb can allocate.
_INFLATE_STEP = 1024 * 1024
_JOB_KEY = re.compile(r"^" + re.escape(JOBS_PREFIX) + r"([^/]+)/" + re.escape(MANIFEST_NAME) + "$")


def _schema_text(name: str) -> Any:
    return json.loads(resources.files(__package__).joinpath(name).read_text("utf-8"))


def _local_schema(uri: str) -> Any:
    """Resolves the schemas' https ``$id``s to the files beside this module: never fetched."""
    return _schema_text(urlsplit(uri).path.rpartition("/")[2])


def _compile_validators() -> tuple[Any, Any]:
    schema = _schema_text("job-v2.schema.json")
    handlers = {"https": _local_schema}
    # Rows are checked one by one (a bad row fails alone), against the same definitions.
    recipient = {"$id": schema["$id"], "definitions": schema["definitions"],
                 "$ref": "#/definitions/recipient"}
    return (fastjsonschema.compile(schema, handlers=handlers),
            fastjsonschema.compile(recipient, handlers=handlers))


_validate_manifest, _validate_recipient = _compile_validators()


def matches(doc: Document) -> bool:
    version = doc.get("version")
    return type(version) is int and version == VERSION


def job_folder(job_id: str) -> str:
    return f"{JOBS_PREFIX}{job_id}/"


def manifest_key(job_id: str) -> str:
    return job_folder(job_id) + MANIFEST_NAME


# --- the manifest --------------------------------------------------------------------


def _schema(doc: Document, key: str) -> None:
    try:
        _validate_manifest(doc)
    except fastjsonschema.JsonSchemaValueException as exc:
        field = v1.schema_field(exc, whole="(manifest)")
        raise BatchFormatError(field, key, exc.message.removeprefix("data.")) from exc


def _job_id(doc: Document, key: str) -> str:
    """The job's id, which must be the folder its manifest is in."""
    job_id: str = doc["job_id"]
    found = _JOB_KEY.fullmatch(key)
    if found is None or found.group(1) != job_id:
        raise BatchFormatError(
            "job_id", key, f"the manifest of job {job_id} must be {manifest_key(job_id)}"
        )
    return job_id


def _parts(doc: Document, job_id: str, label: str) -> tuple[Part, ...]:
    """Every part, in the job's own folder, each once, with as many rows as ``recipients``."""
    parts, seen = [], set()
    for i, raw in enumerate(doc["parts"]):
        if not raw["key"].startswith(job_folder(job_id)):
            raise BatchFormatError(f"parts[{i}].key", label, f"not in {job_folder(job_id)}")
        if raw["key"] in seen:
            raise BatchFormatError(f"parts[{i}].key", label, f"{raw['key']} is listed twice")
        seen.add(raw["key"])
        parts.append(Part(raw["key"], raw["rows"], raw["bytes"], raw["sha256"]))
    rows = sum(part.rows for part in parts)
    if rows != doc["recipients"]:
        raise BatchFormatError(
            "recipients", label, f"{doc['recipients']} recipients, but the parts hold {rows} rows"
        )
    return tuple(parts)


def _template(doc: Document, label: str) -> Template:
    raw = doc["template"]
    for name in ("subject", "html", "text"):
        if name in raw:
            fields.body(raw[name], f"template.{name}", label, "")
    template = Template(raw["subject"], raw["html"], raw.get("text"))
    compile_templates(template, label)  # a syntax error refuses the job, not each recipient
    return template


def parse_manifest(data: bytes, key: str, settings: Settings) -> NotifyJob:
    """A manifest's bytes (S3 key ``key``) as a ``NotifyJob``; ``BatchFormatError`` naming
    the field for anything that makes the job unusable."""
    doc = load_object(decode_batch(data, key), key)
    if not matches(doc):
        raise BatchFormatError("version", key, f"expected version {VERSION}, a notify job")
    _schema(doc, key)
    job_id = _job_id(doc, key)
    label = f"{job_id} ({key})"
    send_at = doc.get("send_at")
    list_name = doc["meta"].get("list", "")
    meta = v1.parse_meta(doc, label, settings)
    if list_name:
        unsubscribe.refuse_job_headers(meta.headers, label)
    elif meta.unsubscribe_mailto:
        raise BatchFormatError("meta.unsubscribe_mailto", label, "only with meta.list")
    return NotifyJob(
        job_id=job_id,
        created_at=v1.parse_time(doc["created_at"], label),
        send_at=None if send_at is None else v1.parse_time(send_at, label, "send_at"),
        send_between=_window(doc.get("send_between"), label),
        meta=_with_job_tags(meta, job_id, list_name),
        template=_template(doc, label),
        context=doc.get("context", {}),
        parts=_parts(doc, job_id, label),
        recipients=doc["recipients"],
        attachments=tuple(
            v1.parse_attachment(raw, f"attachments[{i}]", label, "")
            for i, raw in enumerate(doc.get("attachments", ()))
        ),
        list_name=list_name,
    )


def _window(raw: dict[str, str] | None, label: str) -> tuple[datetime, datetime] | None:
    """``send_between`` as two aware times; ``split.py`` checks them against its clock."""
    if raw is None:
        return None
    return (v1.parse_time(raw["start"], label, "send_between.start"),
            v1.parse_time(raw["end"], label, "send_between.end"))


def _with_job_tags(meta: Meta, job_id: str, list_name: str) -> Meta:
    """``meta`` with the tags that name the job and its list in SES's events (bounces,
    complaints, and the unsubscribes to come). SES takes only letters, digits, ``_`` and
    ``-`` in a tag's value: a job id's dots become ``_``."""
    tags = [(JOB_TAG, job_id.replace(".", "_"))]
    if list_name:
        tags.append((LIST_TAG, list_name))
    return replace(meta, tags=(*meta.tags, *tags))


# --- part files ----------------------------------------------------------------------


def inflate(chunks: Iterable[bytes], part: int, name: str) -> Iterator[bytes]:
    """The inflated bytes of a gzip stream given in ``chunks``, a step at a time; refuses
    more than ``MAX_PART_INFLATED`` bytes and a corrupt or truncated stream, naming
    ``parts[part]`` of ``name``. Several gzip members follow each other as one text."""
    field, total = f"parts[{part}]", 0
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        for chunk in chunks:
            pending = chunk
            while pending:
                out = inflater.decompress(pending, _INFLATE_STEP)
                pending = inflater.unconsumed_tail
                if inflater.eof and inflater.unused_data:  # the next member
                    pending = inflater.unused_data + pending
                    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
                total += len(out)
                if total > MAX_PART_INFLATED:
                    raise BatchFormatError(
                        field, name, f"inflates to more than {MAX_PART_INFLATED:,} bytes"
                    )
                if out:
                    yield out
    except zlib.error as exc:
        raise BatchFormatError(field, name, f"not gzip, or corrupt: {exc}") from exc
    if not inflater.eof:
        raise BatchFormatError(field, name, "the gzip stream is truncated")


def _lines(data: Iterable[bytes]) -> Iterator[bytes]:
    """Lines of an inflated stream without their ``\\n``; a last line without one counts.
    A line's pieces are joined once, so a very long line costs no more than a short one."""
    rest: list[bytes] = []
    for piece in data:
        lines = piece.split(b"\n")
        if len(lines) == 1:
            rest.append(piece)
            continue
        rest.append(lines[0])
        yield b"".join(rest)
        yield from lines[1:-1]
        rest = [lines[-1]] if lines[-1] else []
    if rest:
        yield b"".join(rest)


def count_rows(data: bytes | Iterable[bytes], part: int, name: str) -> int:
    """How many rows a part holds (bytes, or an object's body in chunks), without parsing
    them; ``BatchFormatError`` for a part that is no sound gzip."""
    rows, last = 0, b"\n"
    for piece in inflate([data] if isinstance(data, bytes) else data, part, name):
        rows += piece.count(b"\n")
        last = piece
    return rows + (not last.endswith(b"\n"))


def _recipient(line: bytes, row: int, name: str) -> Recipient:
    where = f"row {row}"
    raw = load_object(decode_batch(line, name), name)
    try:
        _validate_recipient(raw)
    except fastjsonschema.JsonSchemaValueException as exc:
        field = v1.schema_field(exc, whole="(row)")
        reason = exc.message.removeprefix("data.").removeprefix("data ")
        raise BatchFormatError(field, name, reason, where) from exc
    return Recipient(
        row=row,
        email=fields.bare_address(raw["email"], "email", name, where),
        name=fields.header_value(raw.get("name", ""), "name", name, where),
        user_id=raw.get("user_id"),
        vars=raw.get("vars", {}),
        unsubscribe_url=unsubscribe.url(raw["unsubscribe_url"], "unsubscribe_url", name, where)
        if "unsubscribe_url" in raw else "",
    )


def _lines_from(data: Iterable[bytes], start: int) -> Iterator[bytes]:
    """Lines from line ``start`` on. Whole pieces before it are skipped by counting their
    newlines, so the lines before ``start`` are never cut out one by one."""
    pieces, seen = iter(data), 0
    for piece in pieces:
        newlines = piece.count(b"\n")
        if seen + newlines < start:
            seen += newlines
            continue
        cut = 0
        for _ in range(start - seen):
            cut = piece.index(b"\n", cut) + 1
        yield from _lines(chain([piece[cut:]], pieces))
        return


def parse_rows(
    lines: Iterable[bytes], first: int, name: str
) -> tuple[list[Recipient], list[tuple[int, str]]]:
    """Each line a row, numbered from ``first``: the valid ones as ``Recipient``s, and
    ``(row, reason)`` for each bad one (a re-drive's inline rows come this way)."""
    recipients: list[Recipient] = []
    bad: list[tuple[int, str]] = []
    for row, line in enumerate(lines, start=first):
        try:
            recipients.append(_recipient(line, row, name))
        except BatchFormatError as exc:
            field = "(row)" if exc.field == "(file)" else exc.field
            bad.append((row, f"field {field}: {exc.reason}"))
    return recipients, bad


def read_rows(
    data: bytes, part: int, start: int, end: int, name: str
) -> tuple[list[Recipient], list[tuple[int, str]]]:
    """Rows ``start``..``end`` (exclusive, 0-based) of a stored part, as ``parse_rows``
    gives them. Lines outside the range are neither decoded nor parsed; inflating stops
    at line ``end``."""
    if end <= start:
        return [], []
    lines = _lines_from(inflate([data], part, name), start)
    return parse_rows(islice(lines, end - start), start, name)
