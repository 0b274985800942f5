"""``postbag notify FILE``: one notification to many recipients, from the command line.

FILE is a job spec (JSON): what a manifest says of the mail (``meta``,
``template``, ``context``, optional ``site`` and ``attachments`` already
uploaded under ``queue/attachments/``), and ``recipients``: a list of
recipient objects, or the path (relative to FILE) of a CSV file of
``email,name[,user_id]`` rows (a header row is skipped) or of an NDJSON file
of recipient objects; optional ``send_at`` or ``send_between`` hold it on the
sender's side until then (docs/scheduling.md). The recipients become gzip NDJSON parts of at most
``PART_ROWS`` rows, uploaded one by one; the manifest goes last, as the
plugin does: its upload is what starts the send (docs/job-format.md).

A bad row is reported with its line and left out; the others are sent.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chalicelib import fields
from chalicelib.config import Settings
from chalicelib.formats import v2
from postbag.aws import CommandError

# Rows per part: small enough to build in memory and upload in one PUT,
# large enough that a million recipients make a hundred objects.
PART_ROWS = 10_000
# The spec's own fields; ``recipients`` is the one that differs from a manifest.
SPEC_FIELDS = ("meta", "template", "context", "site", "attachments", "recipients", "send_at",
               "send_between")
DEFAULT_SITE = {"url": "postbag notify"}
CSV_COLUMNS = ("email", "name", "user_id")

Row = dict[str, Any]


class Unreadable(str):
    """Why a row could not even be read (CSV columns, not JSON): it is left out."""


@dataclass(frozen=True)
class Source:
    """Where a row came from, for the operator's error messages: ``file:line``."""

    name: str
    line: int

    def __str__(self) -> str:
        return f"{self.name}:{self.line}"


@dataclass
class Outcome:
    job_id: str
    manifest_key: str
    recipients: int
    parts: int
    skipped: list[str] = field(default_factory=list)


def load_spec(path: Path) -> dict[str, Any]:
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise CommandError(f"{path} is not JSON: {exc}") from exc
    if not isinstance(spec, dict):
        raise CommandError(f"{path}: a job spec is a JSON object")
    unknown = sorted(set(spec) - set(SPEC_FIELDS))
    if unknown:
        raise CommandError(f"{path}: unknown field(s) {', '.join(unknown)}")
    if "recipients" not in spec:
        raise CommandError(f"{path}: field recipients is missing (a list, or a file's path)")
    return spec


def _csv_rows(path: Path) -> Iterator[tuple[Source, Any]]:
    with path.open(newline="", encoding="utf-8-sig") as lines:
        for number, cells in enumerate(csv.reader(lines), start=1):
            if not cells or (number == 1 and cells[0].strip().lower() == "email"):
                continue
            yield Source(path.name, number), _csv_row(cells)


def _csv_row(cells: list[str]) -> Any:
    if len(cells) > len(CSV_COLUMNS):
        return Unreadable(
            f"{len(cells)} columns, expected at most {len(CSV_COLUMNS)} (email,name,user_id)"
        )
    row: Row = {"email": cells[0].strip()}
    if len(cells) > 1 and cells[1].strip():
        row["name"] = cells[1].strip()
    if len(cells) > 2 and cells[2].strip():
        if not cells[2].strip().isdigit():
            return Unreadable(f"user_id {cells[2]!r} is not a number")
        row["user_id"] = int(cells[2])
    return row


def _ndjson_rows(path: Path) -> Iterator[tuple[Source, Any]]:
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                yield Source(path.name, number), json.loads(line)
            except json.JSONDecodeError as exc:
                yield Source(path.name, number), Unreadable(f"not JSON ({exc.msg})")


def recipient_rows(spec: dict[str, Any], spec_path: Path) -> Iterator[tuple[Source, Any]]:
    """Each row as read, or ``Unreadable`` saying why it could not be read."""
    try:
        yield from _rows(spec, spec_path)
    except UnicodeDecodeError as exc:
        # Parts uploaded so far are never sent: no manifest names them.
        raise CommandError(f"{spec_path}: the recipients file is not UTF-8 ({exc.reason})") from exc


def _rows(spec: dict[str, Any], spec_path: Path) -> Iterator[tuple[Source, Any]]:
    given = spec["recipients"]
    if isinstance(given, list):
        for index, row in enumerate(given):
            yield Source(f"{spec_path.name} recipients[{index}]", index + 1), row
        return
    if not isinstance(given, str) or not given:
        raise CommandError(f"{spec_path}: recipients is a list or the path of a file")
    path = (spec_path.parent / given).resolve()
    if not path.is_file():
        raise CommandError(f"{spec_path}: recipients file {path} does not exist")
    if path.suffix.lower() == ".csv":
        yield from _csv_rows(path)
    elif path.suffix.lower() in (".ndjson", ".jsonl"):
        yield from _ndjson_rows(path)
    else:
        raise CommandError(f"{spec_path}: recipients file must end in .csv or .ndjson")


@dataclass(frozen=True)
class PartFile:
    key: str
    rows: int
    body: bytes

    def entry(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "rows": self.rows,
            "bytes": len(self.body),
            "sha256": hashlib.sha256(self.body).hexdigest(),
        }


def part_key(job_id: str, number: int) -> str:
    return f"{v2.job_folder(job_id)}part-{number:05d}.ndjson.gz"


def _encode(rows: list[Any]) -> bytes:
    compact = (",", ":")
    text = "".join(json.dumps(row, ensure_ascii=False, separators=compact) + "\n" for row in rows)
    # mtime=0: the same rows make the same bytes (and checksum).
    return gzip.compress(text.encode("utf-8"), mtime=0)


# The sender's own row check on a stored part: ``(row, reason)`` of each bad row.
CheckPart = Callable[[bytes, int, str], list[tuple[int, str]]]


def _checked(
    chunk: list[tuple[Source, Any]], key: str, check: CheckPart, skipped: list[str]
) -> tuple[list[Any], bytes]:
    """The chunk's rows the sender would take, and their part file; the others'
    places and reasons are added to ``skipped`` in the order they came."""
    readable = [(source, row) for source, row in chunk if not isinstance(row, Unreadable)]
    body = _encode([row for _, row in readable])
    bad = dict(check(body, len(readable), key))
    reasons: dict[Source, str] = {
        source: row for source, row in chunk if isinstance(row, Unreadable)
    }
    reasons |= {readable[i][0]: reason for i, reason in bad.items()}
    skipped += [f"{source}: {reasons[source]}" for source, _ in chunk if source in reasons]
    if not bad:
        return [row for _, row in readable], body
    good = [row for i, (_, row) in enumerate(readable) if i not in bad]
    return good, _encode(good)


def parts(
    job_id: str,
    rows: Iterable[tuple[Source, Any]],
    check: CheckPart,
    skipped: list[str],
    part_rows: int = PART_ROWS,
) -> Iterator[PartFile]:
    """The good rows in parts of at most ``part_rows``, built one at a time; each
    bad row's place and reason go to ``skipped``."""
    chunks = _chunks(rows, part_rows)
    number = 0
    for chunk in chunks:
        key = part_key(job_id, number + 1)
        good, body = _checked(chunk, key, check, skipped)
        if good:
            number += 1
            yield PartFile(key, len(good), body)


def _chunks(rows: Iterable[tuple[Source, Any]], size: int) -> Iterator[list[tuple[Source, Any]]]:
    chunk: list[tuple[Source, Any]] = []
    for item in rows:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def manifest(
    spec: dict[str, Any], job_id: str, entries: list[dict[str, Any]], now: datetime
) -> dict[str, Any]:
    return {
        "version": 2,
        "kind": "notify",
        "job_id": job_id,
        "site": spec.get("site", DEFAULT_SITE),
        "created_at": now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        # When to send (docs/scheduling.md): held by the sender until then.
        "send_at": spec.get("send_at"),
        **({"send_between": spec["send_between"]} if spec.get("send_between") else {}),
        "meta": spec.get("meta"),
        "template": spec.get("template"),
        "context": spec.get("context", {}),
        "attachments": spec.get("attachments", []),
        "recipients": sum(e["rows"] for e in entries),
        "parts": entries,
    }


def sender_checks(settings: Settings) -> tuple[CheckPart, Callable[[bytes, str], object]]:
    """What the sender itself will refuse: the manifest parser (with the stage's
    settings: a From it may not send from is refused here already) and the row
    reader, so that what is uploaded is what will be sent."""

    def check_part(body: bytes, rows: int, key: str) -> list[tuple[int, str]]:
        return v2.read_rows(body, 0, 0, rows, key)[1]

    def check_manifest(body: bytes, key: str) -> object:
        job = v2.parse_manifest(body, key, settings)
        # The sender checks the From as it sends, failing every recipient: say it now.
        sender = job.meta.sender[1]
        if settings.allowed_senders and not fields.sender_allowed(
            sender, settings.allowed_senders
        ):
            raise CommandError(
                f"field meta.from: {sender} is not among the stage's sender identities "
                f"({', '.join(settings.allowed_senders)}): see provision --sender-identity"
            )
        return job

    return check_part, check_manifest


def notify(
    s3: Any,
    bucket: str,
    spec_path: Path,
    check_part: CheckPart,
    check_manifest: Callable[[bytes, str], object],
    job_id: str | None = None,
    now: datetime | None = None,
) -> Outcome:
    """Upload the job FILE describes; answers its id, the manifest's key and counts.

    ``check_manifest`` (the sender's manifest parser: it raises naming the field)
    sees the envelope before anything is uploaded, so a spec with a bad template
    or sender stores nothing; ``check_part`` (the sender's row reader) finds the
    rows it would refuse, which are left out.
    """
    spec = load_spec(spec_path)
    job_id = job_id or str(uuid.uuid4())
    now = now or datetime.now(UTC)
    key = v2.manifest_key(job_id)
    check_manifest(_json(manifest(spec, job_id, [], now)), key)
    skipped: list[str] = []
    entries = []
    for part in parts(job_id, recipient_rows(spec, spec_path), check_part, skipped):
        s3.put_object(
            Bucket=bucket, Key=part.key, Body=part.body, ContentType="application/x-ndjson"
        )
        entries.append(part.entry())
    document = manifest(spec, job_id, entries, now)
    body = _json(document)
    check_manifest(body, key)
    s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")
    return Outcome(job_id, key, document["recipients"], len(entries), skipped)


def _json(document: dict[str, Any]) -> bytes:
    return json.dumps(document, ensure_ascii=False, indent=2).encode("utf-8")
