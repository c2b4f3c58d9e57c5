"""The schemas in docs/schemas/ are the code's: the usage-event files equal what the decoder's
table generates, and what the code emits validates against the hand-written ones.

Why: producers and billing code against docs/asyncapi.yaml and these files; a schema that
drifted from the decoder or the publisher would be a contract nobody keeps. Real messages read
from real topics are validated by tests/integration/streams/test_contracts.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
from referencing import Registry, Resource

from metering.core.event_schemas import BASE, file_name, render, usage_event_files
from metering.core.events import DATA_FIELDS, EventType, UsageEvent, encode_event
from metering.core.ports import OutboxEntry
from metering.core.rfc3339 import parse_ms
from sinks.outbox_publisher import crossing_event

SCHEMAS = Path(__file__).resolve().parents[3] / "docs" / "schemas"
NOW = parse_ms("2026-11-23T10:00:00Z")


def load(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((SCHEMAS / name).read_text(encoding="utf-8"))
    return schema


def validator(name: str) -> jsonschema.Draft202012Validator:
    """A validator of docs/schemas/NAME that resolves the other files by their `$id`."""
    registry: Registry[Any] = Registry().with_resources(
        (BASE + p.name, Resource.from_contents(json.loads(p.read_text(encoding="utf-8"))))
        for p in SCHEMAS.glob("*.json")
    )
    return jsonschema.Draft202012Validator(
        load(name), registry=registry, format_checker=jsonschema.FormatChecker()
    )


def test_the_committed_usage_event_schemas_are_generated_from_the_decoders_table() -> None:
    for name, schema in usage_event_files().items():
        path = SCHEMAS / name
        assert path.exists(), f"{name} missing: python -m metering.core.event_schemas docs/schemas"
        assert path.read_text(encoding="utf-8") == render(schema), (
            f"{name} is stale: python -m metering.core.event_schemas docs/schemas"
        )
    generated = {p.name for p in SCHEMAS.glob("usage-event*.json")}
    assert generated == set(usage_event_files()), "a usage-event file no event type generates"


def test_every_schema_file_is_a_valid_2020_12_schema() -> None:
    for path in SCHEMAS.glob("*.json"):
        jsonschema.Draft202012Validator.check_schema(json.loads(path.read_text(encoding="utf-8")))


def sample(event_type: EventType) -> UsageEvent:
    """An event of `event_type` with every data field set (first enum value, quantity 3)."""
    values: dict[str, Any] = {}
    for spec in DATA_FIELDS[event_type]:
        if spec.enum is not None:
            values[spec.name] = spec.enum(spec.values[0])
        elif spec.boolean:
            values[spec.name] = True
        elif spec.integer:
            values[spec.name] = 3
        else:
            values[spec.name] = f"{spec.name}-1"
    return UsageEvent("e-1", "crm", event_type, "acme", NOW, **values)


@pytest.mark.parametrize("event_type", list(EventType))
def test_encoded_events_validate_and_wrong_values_do_not(event_type: EventType) -> None:
    doc = orjson.loads(encode_event(sample(event_type)))
    validator(file_name(event_type)).validate(doc)
    validator("usage-event.json").validate(doc)
    for spec in DATA_FIELDS[event_type]:
        wrong = {**doc, "data": {**doc["data"], spec.name: "" if spec.enum else []}}
        assert not validator(file_name(event_type)).is_valid(wrong), spec.name
    for attribute, bad in (("subject", "ac me"), ("specversion", "0.3"), ("time", "yesterday")):
        assert not validator("usage-event.json").is_valid({**doc, attribute: bad}), attribute


def test_the_threshold_body_is_v2_and_validates() -> None:
    fields = {
        "id": "7d3c8f0e-0b8e-5b55-9c3e-2f1f0e6f9a11",
        "account": "acme",
        "meter": "profiles",
        "period": "",
        "scope": "L50",
        "threshold": "third",
        "num": "1",
        "den": "3",
        "strict": "0",
        "limit": "50",
        "used": "17",
        "before": "16",
        "at_ms": str(NOW),
        "event_ms": str(NOW - 1500),
    }
    body = crossing_event(OutboxEntry("1-0", fields))
    validator("threshold.v2.json").validate(body)
    assert (body["period"], body["strict"], "scope" in body) == (None, False, False)
    assert (body["percent"], body["ratio"]) == (33.33, "1/3")
    assert (body["event_time"], body["processed_at"]) == (
        "2026-11-23T09:59:58.500Z",
        "2026-11-23T10:00:00Z",
    )
    exact = crossing_event(OutboxEntry("2-0", {**fields, "num": "4", "den": "5", "strict": "1"}))
    assert (exact["percent"], exact["strict"]) == (80, True)
    older = {k: v for k, v in fields.items() if k != "event_ms"}  # decided before v2
    assert crossing_event(OutboxEntry("3-0", older))["event_time"] is None
    validator("threshold.v2.json").validate(crossing_event(OutboxEntry("3-0", older)))
