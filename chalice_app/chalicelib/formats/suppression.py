"""Suppression documents (``suppression-v1.schema.json``): the site's inbox changes in,
the export out (docs/suppression.md)."""

from __future__ import annotations

from chalicelib import fields
from chalicelib.formats import v1
from chalicelib.formats.document import compile_schema, validated
from chalicelib.suppression import Change, normalise

_validate_inbox = compile_schema("suppression-v1.schema.json", "inbox")
validate_export = compile_schema("suppression-v1.schema.json", "export")


def parse_inbox(data: bytes, key: str) -> Change:
    """An inbox document's bytes (S3 key ``key``) as a ``Change``; ``BatchFormatError``
    naming the field otherwise."""
    doc = validated(data, key, _validate_inbox)
    address = fields.bare_address(normalise(doc["address"]), "address", key)
    return Change(action=doc["action"], scope=doc["scope"], address=address,
                  reason=doc["reason"], source=doc["source"],
                  at=v1.parse_time(doc["at"], key, "at"))
