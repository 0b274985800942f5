"""Bytes to a JSON object, hardened the same way for every format and every file kind.

Batches, job manifests, part rows and work items all come from outside the
function: each is decoded here so that one set of rules (UTF-8 only, no NaN,
no nesting deep enough to exhaust the stack) holds for all of them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib import resources
from typing import Any

import fastjsonschema

from chalicelib.errors import BatchFormatError

Document = dict[str, Any]
Validator = Callable[[Any], Any]


def decode_batch(data: bytes, name: str) -> str:
    """The text of a batch file; ``BatchFormatError`` unless it is UTF-8."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BatchFormatError("(file)", name, f"not UTF-8: byte {exc.start} is invalid") from exc


def _refuse_constant(name: str) -> Any:
    # Python's json reads NaN and Infinity, which no JSON writer (PHP's included) emits.
    raise ValueError(f"{name} is not a JSON number")


def load_object(text: str, name: str) -> Document:
    """``text`` as a JSON object; ``BatchFormatError`` naming ``name`` otherwise."""
    try:
        doc = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        # An upload cut short ends before its closing brace.
        hint = "" if text.rstrip().endswith("}") else " (the file looks truncated)"
        raise BatchFormatError(
            "(file)", name, f"not JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}){hint}"
        ) from exc
    except RecursionError as exc:
        raise BatchFormatError("(file)", name, "JSON nested too deeply") from exc
    except ValueError as exc:
        # Integers past Python's digit limit (sys.get_int_max_str_digits), NaN, Infinity.
        raise BatchFormatError("(file)", name, f"not JSON we read: {exc}") from exc
    if not isinstance(doc, dict):
        raise BatchFormatError("(file)", name, f"expected a JSON object, got {type(doc).__name__}")
    return doc


def compile_schema(file_name: str, definition: str | None = None) -> Validator:
    """The validator of a schema file beside this module (or of one of its definitions),
    compiled once by the caller at import."""
    schema = json.loads(resources.files(__package__).joinpath(file_name).read_text("utf-8"))
    if definition is not None:
        schema = {"definitions": schema["definitions"], "$ref": f"#/definitions/{definition}"}
    return fastjsonschema.compile(schema)


def schema_field(
    exc: fastjsonschema.JsonSchemaValueException, prefix: str = "", whole: str = "(batch)"
) -> str:
    """The field a schema error is about; ``whole`` when it is the document itself."""
    name = (exc.name or "data").removeprefix("data").lstrip(".")
    return prefix + name if name else prefix.rstrip(".") or whole


def schema_reason(exc: fastjsonschema.JsonSchemaValueException) -> str:
    """The schema error's message without fastjsonschema's ``data`` prefix."""
    return exc.message.removeprefix("data.").removeprefix("data ")


def validated(data: bytes, name: str, validate: Validator, whole: str = "(document)"
              ) -> Document:
    """``data`` (the object ``name``) decoded as a JSON object and through ``validate``;
    ``BatchFormatError`` naming the field (``whole``: the document itself) otherwise."""
    doc = load_object(decode_batch(data, name), name)
    try:
        validate(doc)
    except fastjsonschema.JsonSchemaValueException as exc:
        raise BatchFormatError(schema_field(exc, whole=whole), name, schema_reason(exc)) from exc
    return doc
