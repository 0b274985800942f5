"""Batch formats: which module reads a file, and the documents re-sending writes.

Each format is one module in this package that implements ``BatchFormat``.
Adding a format is adding a module (and its schema and fixtures) to ``FORMATS``.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Protocol

from chalicelib.config import Settings
from chalicelib.errors import BatchFormatError
from chalicelib.formats import v1
from chalicelib.model import Batch

Document = dict[str, Any]


class BatchFormat(Protocol):
    """What a format module provides (mypy checks each module against it)."""

    VERSION: int

    def matches(self, doc: Document) -> bool:
        """Whether a decoded JSON document is in this format."""

    def parse(
        self, doc: Document, text: str, name: str, settings: Settings,
        received_at: datetime | None,
    ) -> Batch:
        """The document as a ``Batch``: the envelope checked whole, each mail on its own."""

    def subset(self, document: Document, mail_ids: set[str], **changes: Any) -> Document:
        """The document holding only some mails (continuations, ``failed/``)."""

    def merge(self, documents: list[Document], redrive: int) -> Document:
        """One document with the mails of a generation's failed-mail documents (re-drive)."""


# Version => module; the first whose ``matches`` accepts a document reads it.
FORMATS: dict[int, BatchFormat] = {v1.VERSION: v1}


def decode_batch(data: bytes, name: str) -> str:
    """The text of a batch file; ``BatchFormatError`` unless it is UTF-8."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BatchFormatError("(file)", name, f"not UTF-8: byte {exc.start} is invalid") from exc


def _refuse_constant(name: str) -> Any:
    # Python's json reads NaN and Infinity, which no JSON writer (PHP's included) emits.
    raise ValueError(f"{name} is not a JSON number")


def _load(text: str, name: str) -> Document:
    try:
        doc = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        # An upload cut short ends before its closing brace.
        hint = "" if text.rstrip().endswith("}") else " (the file looks truncated)"
        raise BatchFormatError(
            "(file)", name, f"not JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}){hint}"
        ) from exc
    except RecursionError as exc:
        raise BatchFormatError("(file)", name, "not a batch: JSON nested too deeply") from exc
    except ValueError as exc:
        # Integers past Python's digit limit (sys.get_int_max_str_digits), NaN, Infinity.
        raise BatchFormatError("(file)", name, f"not a batch: {exc}") from exc
    if not isinstance(doc, dict):
        raise BatchFormatError("(file)", name, f"expected a JSON object, got {type(doc).__name__}")
    return doc


def _unknown(version: Any, name: str) -> BatchFormatError:
    known = " and ".join(f"version {v}" for v in FORMATS)
    return BatchFormatError(
        "version", name,
        f"unknown format version {version!r}; this sender reads {known} and the original layout",
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
    for module in FORMATS.values():
        if module.matches(doc):
            return module.parse(doc, text, name, settings, received_at)
    raise _unknown(doc.get("version"), name)


def subset(batch: Batch, mail_ids: set[str], **changes: Any) -> Document:
    """``batch``'s document holding only ``mail_ids``, in the format it came in."""
    return FORMATS[batch.version].subset(batch.document, mail_ids, **changes)


def merge(documents: list[Document], redrive: int, name: str) -> Document:
    """One re-driven document from the failed-mail documents of one generation."""
    version = documents[0].get("version")
    module = FORMATS.get(version) if isinstance(version, int) else None
    if module is None:
        raise _unknown(version, name)
    return module.merge(documents, redrive)
