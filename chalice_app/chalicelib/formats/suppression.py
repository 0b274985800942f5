"""Suppression documents (``suppression-v1.schema.json``): the site's inbox changes in,
the export out (docs/suppression.md)."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import fastjsonschema

from chalicelib import fields
from chalicelib.errors import BatchFormatError
from chalicelib.formats import v1
from chalicelib.formats.document import decode_batch, load_object
from chalicelib.suppression import Change, normalise


def _compile_validators() -> tuple[Any, Any]:
    text = resources.files(__package__).joinpath("suppression-v1.schema.json").read_text("utf-8")
    schema = json.loads(text)

    def one(name: str) -> Any:
        return fastjsonschema.compile({"definitions": schema["definitions"],
                                       "$ref": f"#/definitions/{name}"})

    return one("inbox"), one("export")


_validate_inbox, validate_export = _compile_validators()


def parse_inbox(data: bytes, key: str) -> Change:
    """An inbox document's bytes (S3 key ``key``) as a ``Change``; ``BatchFormatError``
    naming the field otherwise."""
    doc = load_object(decode_batch(data, key), key)
    try:
        _validate_inbox(doc)
    except fastjsonschema.JsonSchemaValueException as exc:
        reason = exc.message.removeprefix("data.").removeprefix("data ")
        raise BatchFormatError(v1.schema_field(exc, whole="(document)"), key, reason) from exc
    address = fields.bare_address(normalise(doc["address"]), "address", key)
    return Change(action=doc["action"], scope=doc["scope"], address=address,
                  reason=doc["reason"], source=doc["source"],
                  at=v1.parse_time(doc["at"], key, "at"))
