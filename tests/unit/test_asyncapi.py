"""docs/asyncapi.yaml agrees with the code: one channel per topic at the default address, one
message per usage event type with its generated schema, every schema file referenced and
present, internal references resolved, examples valid, every dead-letter reason listed.

Why: it is the document downstream code is written against (README points to it)."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from metering.core.errors import RejectReason
from metering.core.event_schemas import file_name
from metering.core.events import EventType
from metering.settings import Settings
from tests.unit.core.test_event_schemas import SCHEMAS, validator

DOC = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.yaml"
CHANNEL_TOPICS = {
    "usageEvents": "events_topic",
    "thresholds": "thresholds_topic",
    "reminders": "reminders_topic",
    "statements": "statements_topic",
    "tiers": "tiers_topic",
    "deadLetters": "dead_letter_topic",
    "lateEvents": "late_topic",
    "configuration": "accounts_topic",
}


def document() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(DOC.read_text(encoding="utf-8"))
    return loaded


def refs(node: object) -> list[str]:
    """Every `$ref` value under `node`."""
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in refs(value)]
    return []


def resolve(doc: dict[str, Any], pointer: str) -> object:
    node: object = doc
    for part in pointer.removeprefix("#/").split("/"):
        assert isinstance(node, dict), pointer
        assert part in node, pointer
        node = node[part]
    return node


def test_it_is_asyncapi_3_and_every_reference_resolves() -> None:
    doc = document()
    assert doc["asyncapi"] == "3.0.0"
    files = set()
    for ref in refs(doc):
        if ref.startswith("#/"):
            resolve(doc, ref)
        else:
            assert ref.startswith("./schemas/"), ref
            assert (SCHEMAS / ref.removeprefix("./schemas/")).exists(), ref
            files.add(ref.removeprefix("./schemas/"))
    assert files == {p.name for p in SCHEMAS.glob("*.json")}, "a schema file nobody references"


def test_one_channel_per_topic_at_the_default_address() -> None:
    defaults = {f.name: f.default for f in fields(Settings)}
    channels = document()["channels"]
    assert set(channels) == set(CHANNEL_TOPICS)
    for channel, setting in CHANNEL_TOPICS.items():
        expected = defaults[setting]
        assert channels[channel]["address"] == expected, channel


def test_every_usage_event_type_has_its_generated_schema() -> None:
    doc = document()
    messages = doc["components"]["messages"]
    usage = [resolve(doc, m["$ref"]) for m in doc["channels"]["usageEvents"]["messages"].values()]
    by_name = {m["name"]: m for m in usage if isinstance(m, dict)}
    assert set(by_name) == {t.value for t in EventType}
    for event_type in EventType:
        assert by_name[event_type.value]["payload"]["$ref"] == f"./schemas/{file_name(event_type)}"
    assert messages["thresholdCrossed"]["payload"]["$ref"] == "./schemas/threshold.v2.json"


def test_examples_validate_against_their_payload() -> None:
    for message in document()["components"]["messages"].values():
        for example in message.get("examples", []):
            name = message["payload"]["$ref"].removeprefix("./schemas/")
            validator(name).validate(json.loads(json.dumps(example["payload"], default=str)))


def test_every_dead_letter_reason_is_listed() -> None:
    schema = json.loads((SCHEMAS / "dead-letter.json").read_text(encoding="utf-8"))
    assert set(schema["properties"]["reason"]["enum"]) == {r.value for r in RejectReason} | {
        "late"
    }
