"""Batch formats: which module reads a file, and the documents re-sending writes.

Each format is one module in this package that implements ``BatchFormat``.
Adding a format is adding a module (and its schema and fixtures) to ``FORMATS``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from chalicelib.config import Settings
from chalicelib.errors import BatchFormatError
from chalicelib.formats import v1, v2
from chalicelib.formats.document import Document, decode_batch, load_object
from chalicelib.model import Batch

__all__ = ["Document", "decode_batch", "merge", "parse_batch", "subset"]


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
    doc = load_object(text, name)
    for module in FORMATS.values():
        if module.matches(doc):
            return module.parse(doc, text, name, settings, received_at)
    if v2.matches(doc):
        # Not a batch: a job is split into work items, never sent from the queue.
        raise BatchFormatError(
            "version", name,
            "a version-2 notify job belongs at jobs/<id>/manifest.json, not under the queue",
        )
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
