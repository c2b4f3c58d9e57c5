"""The decoder's fast path: taken for well-formed events, identical to the checked decoder.

tests/unit/core/test_fuzz_events.py proves that `decode_event` (fast path first) and `check_event`
(the checked decoder alone) agree on hostile input. This file proves the other half: the fast
path is really taken for the events producers send (else the speed-up would be imaginary),
with the limits counted the same way (characters, not bytes), and that the inputs it does not
take still decode through the checked path.
"""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metering.core.events import (
    _FAST,
    DATA_FIELDS,
    MAX_FUTURE_MS,
    MAX_ID_CHARS,
    MAX_QUANTITY,
    MAX_TEXT_CHARS,
    EventType,
    check_event,
    decode_event,
)
from metering.core.rfc3339 import format_ms, parse_ms
from tests.unit.helpers import draw_data

NOW = parse_ms("2026-11-23T10:00:00Z")


SMS: dict[str, Any] = {
    "specversion": "1.0",
    "id": "e",
    "source": "s",
    "type": "sms.sent",
    "subject": "acme",
    "time": "2026-11-23T09:00:00Z",
    "data": {"contact": "c", "quantity": 3},
}


def fast(raw: bytes, max_quantity: int = MAX_QUANTITY) -> Any:
    return _FAST.decode(raw, NOW, MAX_FUTURE_MS, max_quantity)


_texts = st.text(min_size=1, max_size=MAX_TEXT_CHARS) | st.sampled_from(
    ["😀" * MAX_TEXT_CHARS, "é" * MAX_TEXT_CHARS, 'quote " back \\ slash', "\u202e", "\t\n"]
)


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    """Events as a producer writes them: every type, every optional field present or not,
    texts at their length limits in multi-byte characters."""
    event_type = draw(st.sampled_from(list(EventType)))
    data = draw_data(draw, event_type, _texts)
    doc: dict[str, Any] = {
        "specversion": "1.0",
        "id": draw(st.text(min_size=1, max_size=MAX_ID_CHARS) | st.just("😀" * MAX_ID_CHARS)),
        "source": draw(_texts),
        "type": event_type.value,
        "subject": draw(st.from_regex(r"[!-z|~]{1,128}", fullmatch=True)),
        "time": format_ms(draw(st.integers(0, NOW + MAX_FUTURE_MS))),
        "data": data,
    }
    if draw(st.booleans()):
        doc["dataschema"] = "metering/v1"
    return doc


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents())
def test_well_formed_events_take_the_fast_path_and_decode_identically(doc: dict[str, Any]) -> None:
    raw = orjson.dumps(doc)
    event = fast(raw)
    assert event is not None, raw
    assert event == check_event(raw, now_ms=NOW)


def test_every_event_type_takes_the_fast_path() -> None:
    seen = set()
    for event_type, specs in DATA_FIELDS.items():
        data = {
            spec.name: (
                True
                if spec.boolean
                else spec.values[0]
                if spec.values
                else 2
                if spec.integer
                else "c-1"
            )
            for spec in specs
        }
        doc = {"specversion": "1.0", "id": "e", "source": "s", "type": event_type.value}
        doc |= {"subject": "acme", "time": "2026-11-23T09:00:00Z", "data": data}
        event = fast(orjson.dumps(doc))
        assert event is not None, event_type
        assert event == check_event(orjson.dumps(doc), now_ms=NOW)
        seen.add(event.type)
    assert seen == set(EventType)


def test_what_the_fast_path_leaves_to_the_checked_decoder_still_decodes() -> None:
    """Extensions, unknown data fields, non-ASCII accounts, null data fields and timestamps
    with offsets are valid: the fast path declines some of them, the result is the same."""
    base = dict(SMS)
    declined = [
        base | {"traceparent": "00-abc"},
        base | {"data": {"contact": "c", "quantity": 3, "note": "x"}},
        base | {"subject": "café"},
        base | {"data": {"contact": "c", "quantity": None}},  # null for a field with a default
    ]
    for doc in declined:
        raw = orjson.dumps(doc)
        assert fast(raw) is None, doc
        assert decode_event(raw, now_ms=NOW) == check_event(raw, now_ms=NOW)
    taken = [
        base | {"data": {"contact": "c", "campaign": None}},
        base | {"time": "2026-11-23T10:00:00+01:00"},
    ]
    for doc in taken:
        raw = orjson.dumps(doc)
        assert fast(raw) == check_event(raw, now_ms=NOW), doc


def test_quantities_over_the_limit_and_future_events_are_left_to_the_checked_decoder() -> None:
    doc: dict[str, Any] = SMS | {"data": {"contact": "c", "quantity": 50}}
    assert fast(orjson.dumps(doc), max_quantity=49) is None
    assert fast(orjson.dumps(doc), max_quantity=50) is not None
    doc["time"] = format_ms(NOW + MAX_FUTURE_MS + 1)
    assert fast(orjson.dumps(doc)) is None
