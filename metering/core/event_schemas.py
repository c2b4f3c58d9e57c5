"""JSON Schemas of the usage events, generated from the decoder's own table (`DATA_FIELDS`).

Why generated: producers read docs/schemas/usage-event.*.json (and docs/asyncapi.yaml, which
points at them) to learn each event type's `data` fields and allowed values; written by hand
they would drift from what `metering.core.events` accepts. tests/unit/core/test_event_schemas.py
asserts the committed files equal what this module returns, so they cannot drift;
`python -m metering.core.event_schemas docs/schemas` rewrites them after a change.

What a schema cannot say exactly is named in its `description`: an account id must also be
printable (Python's `str.isprintable`), an event's time may be at most
`METERING_MAX_FUTURE_S` ahead of the processor's clock, and the whole record at most
`METERING_MAX_EVENT_BYTES`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Final

from metering.core.events import (
    DATA_FIELDS,
    DATA_SCHEMA,
    MAX_ID_CHARS,
    MAX_QUANTITY,
    MAX_TEXT_CHARS,
    SPEC_VERSION,
    DataField,
    EventType,
)

DRAFT: Final = "https://json-schema.org/draft/2020-12/schema"
BASE: Final = "https://metering.example/schemas/"
"""Base of the schemas' `$id`s: names, not addresses to fetch (the files are in docs/schemas/)."""
ACCOUNT_PATTERN: Final = "^[^\\s{}\\x00-\\x1f\\x7f]+$"
"""No whitespace, braces or control characters (the decoder also requires `isprintable`)."""
RFC3339_PATTERN: Final = (
    "^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)
"""The forms `metering.core.rfc3339` reads (validators need not check `format`); the decoder
also checks that the date and time exist."""


def file_name(event_type: EventType) -> str:
    """`usage-event.email.sent.json`."""
    return f"usage-event.{event_type.value}.json"


def _data_field(spec: DataField) -> dict[str, Any]:
    schema: dict[str, Any]
    if spec.enum is not None:
        schema = {"type": "string", "enum": list(spec.values)}
    elif spec.boolean:
        schema = {"type": "boolean", "default": False}
    elif spec.integer:
        schema = {"type": "integer", "minimum": 1, "maximum": MAX_QUANTITY}
        if not spec.required:
            schema["default"] = 1
    else:
        schema = {"type": "string", "minLength": 1, "maxLength": MAX_TEXT_CHARS}
    if not spec.required:  # the decoder reads null as absent
        schema = {"anyOf": [schema, {"type": "null"}]}
    return schema


def usage_event_schema(event_type: EventType) -> dict[str, Any]:
    """The JSON Schema of one event type (CloudEvents 1.0 attributes + its `data`)."""
    specs = DATA_FIELDS[event_type]
    data: dict[str, Any] = {
        "type": "object",
        "description": "Fields not listed are ignored (producers may add information).",
        "properties": {spec.name: _data_field(spec) for spec in specs},
    }
    required_data = [spec.name for spec in specs if spec.required]
    if required_data:
        data["required"] = required_data
    required = ["specversion", "id", "source", "type", "subject", "time"]
    if required_data:
        required.append("data")
    return {
        "$schema": DRAFT,
        "$id": BASE + file_name(event_type),
        "title": f"{event_type.value} usage event ({DATA_SCHEMA})",
        "description": (
            "A CloudEvents 1.0 usage event, JSON, UTF-8, keyed by the account (the `subject`). "
            "Unknown attributes (CloudEvents extensions) are ignored, except `holdid`. Not "
            "expressible here: "
            "`subject` must also be printable, `time` at most METERING_MAX_FUTURE_S ahead of "
            "the processor's clock and not before 1970, the record at most "
            "METERING_MAX_EVENT_BYTES. Generated from metering/core/events.py (DATA_FIELDS)."
        ),
        "type": "object",
        "required": required,
        "properties": {
            "specversion": {"const": SPEC_VERSION},
            "id": {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_ID_CHARS,
                "description": "Idempotency key: an id seen again within the dedup window "
                "counts once.",
            },
            "source": {"type": "string", "minLength": 1, "maxLength": MAX_TEXT_CHARS},
            "type": {"const": event_type.value},
            "subject": {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_ID_CHARS,
                "pattern": ACCOUNT_PATTERN,
                "description": "The account id; the Kafka record key must be the same bytes "
                "(UTF-8) or the record is dead-lettered as key_mismatch.",
            },
            "time": {
                "type": "string",
                "format": "date-time",
                "pattern": RFC3339_PATTERN,
                "description": "RFC 3339 event time: decides the period the event counts in.",
            },
            "dataschema": {"const": DATA_SCHEMA},
            "holdid": {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_ID_CHARS,
                "description": "CloudEvents extension attribute, optional: the admission hold "
                "this event captures (the id in the admission answer's `hold`). The processor "
                "replaces the hold's units by this event's usage; after the hold expired the "
                "event counts as ordinary usage (docs/api.md, \"Holds\").",
            },
            "data": data,
        },
    }


def usage_event_union() -> dict[str, Any]:
    """`usage-event.json`: any usage event, by its `type`."""
    return {
        "$schema": DRAFT,
        "$id": BASE + "usage-event.json",
        "title": f"Usage event ({DATA_SCHEMA}), any type",
        "oneOf": [{"$ref": file_name(t)} for t in EventType],
    }


def usage_event_files() -> dict[str, dict[str, Any]]:
    """Every generated file of docs/schemas/: name -> schema."""
    files = {file_name(t): usage_event_schema(t) for t in EventType}
    files["usage-event.json"] = usage_event_union()
    return files


def render(schema: dict[str, Any]) -> str:
    """The committed text of a schema file (stable: indented, keys in insertion order)."""
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    """`python -m metering.core.event_schemas DIR`: (re)write the generated files in DIR."""
    if len(argv) != 1:
        sys.stderr.write("usage: python -m metering.core.event_schemas DIR\n")
        return 2
    folder = Path(argv[0])
    folder.mkdir(parents=True, exist_ok=True)
    for name, schema in usage_event_files().items():
        (folder / name).write_text(render(schema), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
