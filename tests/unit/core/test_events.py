"""Event schema v1: decoding every type, refusals naming reason and field, round trip, fuzz."""

from __future__ import annotations

from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metering.core.errors import EventRejected, RejectReason
from metering.core.events import (
    DATA_FIELDS,
    Channel,
    ContactOrigin,
    EmailKind,
    EventType,
    SearchSurface,
    SuppressionReason,
    UsageEvent,
    decode_event,
    encode_event,
    event_document,
)
from metering.core.rfc3339 import parse_ms
from tests.unit.helpers import draw_data

NOW = parse_ms("2026-11-23T12:00:00Z")

EXAMPLES: dict[EventType, dict[str, Any]] = {
    EventType.EMAIL_SENT: {"contact": "c-9", "kind": "marketing", "campaign": "nov"},
    EventType.EMAIL_OPENED: {"contact": "c-9", "with_recommendations": True},
    EventType.SMS_SENT: {"contact": "c-9", "quantity": 2},
    EventType.SMS_CREDITS_ADDED: {"quantity": 1000},
    EventType.SEARCH_VIEWED: {"surface": "instant"},
    EventType.RECOMMENDATION_VIEWED: {"quantity": 3},
    EventType.CONTACT_ADDED: {"contact": "c-9", "origin": "import"},
    EventType.CONTACT_UNSUBSCRIBED: {"contact": "c-9"},
    EventType.CONTACT_DELETED: {"contact": "c-9"},
    EventType.CONTACT_SUPPRESSED: {"contact": "c-9", "reason": "hard_bounce"},
    EventType.CAMPAIGN_INTERACTION: {"contact": "c-9", "channel": "print", "campaign": "c1"},
    EventType.GOAL_TRIGGERED: {"contact": "c-9", "goal": "visited-pricing"},
    EventType.RESOURCE_ADDED: {"resource": "user", "resource_id": "u-7"},
    EventType.RESOURCE_REMOVED: {"resource": "scenario", "resource_id": "welcome-flow"},
}


def document(event_type: EventType | str = EventType.EMAIL_SENT, **override: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "specversion": "1.0",
        "id": "e-123",
        "source": "crm/eu-1",
        "type": str(event_type),
        "subject": "acct-42",
        "time": "2026-11-23T10:00:00Z",
        "dataschema": "metering/v1",
        "data": dict(EXAMPLES.get(EventType(event_type), {}))
        if event_type in EventType.__members__.values()
        else {},
    }
    doc.update(override)
    return {k: v for k, v in doc.items() if v is not ...}


def decode(doc: dict[str, Any], **kwargs: Any) -> UsageEvent:
    return decode_event(orjson.dumps(doc), now_ms=NOW, **kwargs)


def rejected(doc: dict[str, Any] | bytes, **kwargs: Any) -> EventRejected:
    raw = doc if isinstance(doc, bytes) else orjson.dumps(doc)
    with pytest.raises(EventRejected) as info:
        decode_event(raw, now_ms=NOW, **kwargs)
    return info.value


def test_every_event_type_has_an_example() -> None:
    assert set(EXAMPLES) == set(EventType) == set(DATA_FIELDS)


@pytest.mark.parametrize("event_type", list(EventType))
def test_each_type_decodes_with_typed_fields_and_round_trips(event_type: EventType) -> None:
    event = decode(document(event_type))
    assert event.type is event_type
    assert event.account == "acct-42"
    assert event.time_ms == parse_ms("2026-11-23T10:00:00Z")
    for name, value in EXAMPLES[event_type].items():
        assert getattr(event, name) == value
    assert decode_event(encode_event(event), now_ms=NOW) == event


def test_enumerations_decode_to_their_enums() -> None:
    assert decode(document(EventType.EMAIL_SENT)).kind is EmailKind.MARKETING
    assert decode(document(EventType.CONTACT_ADDED)).origin is ContactOrigin.IMPORT
    assert decode(document(EventType.CAMPAIGN_INTERACTION)).channel is Channel.PRINT
    assert decode(document(EventType.SEARCH_VIEWED)).surface is SearchSurface.INSTANT
    assert decode(document(EventType.CONTACT_SUPPRESSED)).reason is SuppressionReason.HARD_BOUNCE


def test_defaults_and_optional_fields() -> None:
    event = decode(document(EventType.RECOMMENDATION_VIEWED, data={}))
    assert event.quantity == 1
    opened = decode(document(EventType.EMAIL_OPENED, data={"contact": "c"}))
    assert opened.with_recommendations is False
    no_data = decode(document(EventType.RECOMMENDATION_VIEWED, data=...))
    assert no_data.quantity == 1
    minimal = decode(document(EventType.SEARCH_VIEWED, dataschema=...))
    assert minimal.surface is SearchSurface.INSTANT


def test_unknown_attributes_and_data_fields_are_ignored() -> None:
    doc = document(EventType.SEARCH_VIEWED, traceparent="00-abc", data={"surface": "page", "x": 1})
    assert decode(doc).surface is SearchSurface.PAGE


def test_decoded_events_equal_constructed_ones_and_are_immutable() -> None:
    event = decode(document(EventType.EMAIL_SENT))
    same = UsageEvent(
        "e-123",
        "crm/eu-1",
        EventType.EMAIL_SENT,
        "acct-42",
        event.time_ms,
        contact="c-9",
        kind=EmailKind.MARKETING,
        campaign="nov",
    )
    assert event == same
    assert hash(event) == hash(same)
    with pytest.raises(AttributeError):
        event.quantity = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("override", "reason", "field"),
    [
        ({"specversion": ...}, RejectReason.MISSING_FIELD, "specversion"),
        ({"specversion": 1.0}, RejectReason.WRONG_TYPE, "specversion"),
        ({"specversion": "0.3"}, RejectReason.UNSUPPORTED_VERSION, "specversion"),
        ({"dataschema": "metering/v2"}, RejectReason.UNSUPPORTED_VERSION, "dataschema"),
        ({"id": ...}, RejectReason.MISSING_FIELD, "id"),
        ({"id": ""}, RejectReason.INVALID_VALUE, "id"),
        ({"id": "x" * 129}, RejectReason.INVALID_VALUE, "id"),
        ({"id": 7}, RejectReason.WRONG_TYPE, "id"),
        ({"source": ...}, RejectReason.MISSING_FIELD, "source"),
        ({"type": ...}, RejectReason.MISSING_FIELD, "type"),
        ({"type": 3}, RejectReason.WRONG_TYPE, "type"),
        ({"type": "email.bounced"}, RejectReason.UNKNOWN_TYPE, "type"),
        ({"subject": ...}, RejectReason.MISSING_FIELD, "subject"),
        ({"subject": "a{b}"}, RejectReason.INVALID_VALUE, "subject"),
        ({"subject": "a b"}, RejectReason.INVALID_VALUE, "subject"),
        ({"subject": "a\nb"}, RejectReason.INVALID_VALUE, "subject"),
        ({"subject": "x" * 129}, RejectReason.INVALID_VALUE, "subject"),
        ({"time": ...}, RejectReason.MISSING_FIELD, "time"),
        ({"time": 1795428000000}, RejectReason.WRONG_TYPE, "time"),
        ({"time": "2026-11-23T10:00:00"}, RejectReason.INVALID_VALUE, "time"),
        ({"time": "2026-11-23"}, RejectReason.INVALID_VALUE, "time"),
        ({"time": "2026-02-30T10:00:00Z"}, RejectReason.INVALID_VALUE, "time"),
        ({"time": "2026-11-23T24:00:00Z"}, RejectReason.INVALID_VALUE, "time"),
        ({"time": "1969-12-31T23:59:59Z"}, RejectReason.INVALID_VALUE, "time"),
        ({"time": "2026-11-23T12:05:00.001Z"}, RejectReason.FUTURE_TIMESTAMP, "time"),
        ({"data": []}, RejectReason.WRONG_TYPE, "data"),
        ({"data": {"kind": "marketing"}}, RejectReason.MISSING_FIELD, "data.contact"),
        ({"data": {"contact": "c"}}, RejectReason.MISSING_FIELD, "data.kind"),
        ({"data": {"contact": 5, "kind": "marketing"}}, RejectReason.WRONG_TYPE, "data.contact"),
        (
            {"data": {"contact": "", "kind": "marketing"}},
            RejectReason.INVALID_VALUE,
            "data.contact",
        ),
        ({"data": {"contact": "c", "kind": "promo"}}, RejectReason.INVALID_VALUE, "data.kind"),
        ({"data": {"contact": "c", "kind": True}}, RejectReason.WRONG_TYPE, "data.kind"),
    ],
)
def test_refusals_name_the_reason_and_the_field(
    override: dict[str, Any], reason: RejectReason, field: str
) -> None:
    error = rejected(document(EventType.EMAIL_SENT, **override))
    assert (error.reason, error.field) == (reason, field)
    assert field in str(error)
    assert reason.value in str(error)


@pytest.mark.parametrize(
    ("quantity", "reason"),
    [
        (-1, RejectReason.NEGATIVE_QUANTITY),
        (0, RejectReason.INVALID_VALUE),
        (1_000_001, RejectReason.ABSURD_QUANTITY),
        (2.0, RejectReason.WRONG_TYPE),
        (True, RejectReason.WRONG_TYPE),
        ("3", RejectReason.WRONG_TYPE),
    ],
)
def test_quantities_are_positive_integers_within_reason(
    quantity: object, reason: RejectReason
) -> None:
    doc = document(EventType.SMS_SENT, data={"contact": "c", "quantity": quantity})
    error = rejected(doc)
    assert (error.reason, error.field) == (reason, "data.quantity")


def test_quantity_limit_is_configurable() -> None:
    doc = document(EventType.SMS_CREDITS_ADDED, data={"quantity": 5000})
    assert rejected(doc, max_quantity=4999).reason is RejectReason.ABSURD_QUANTITY
    assert decode(doc, max_quantity=5000).quantity == 5000


def test_whole_record_refusals() -> None:
    assert rejected(b"not json").reason is RejectReason.NOT_JSON
    assert rejected(b"\xff\xfe").reason is RejectReason.NOT_JSON
    assert rejected(b"[1, 2]").reason is RejectReason.NOT_OBJECT
    assert rejected(b"null").reason is RejectReason.NOT_OBJECT
    assert rejected(b'{"a": 1e400}').reason is RejectReason.NOT_JSON
    huge = document(EventType.SMS_CREDITS_ADDED, data=...)
    raw = orjson.dumps(huge)[:-1] + b', "data": {"quantity": 99999999999999999999999}}'
    assert rejected(raw).field == "data.quantity"
    big = orjson.dumps(document(EventType.SEARCH_VIEWED, padding="x" * 70_000))
    error = rejected(big)
    assert (error.reason, error.field) == (RejectReason.OVERSIZED, None)
    assert rejected(orjson.dumps(document()), max_bytes=50).reason is RejectReason.OVERSIZED


def test_future_tolerance_is_configurable() -> None:
    doc = document(time="2026-11-23T12:05:00Z")  # exactly 5 minutes ahead: accepted
    assert decode(doc).time_ms == NOW + 300_000
    assert rejected(doc, max_future_ms=0).reason is RejectReason.FUTURE_TIMESTAMP


def test_time_with_offset_is_converted_to_utc() -> None:
    assert decode(document(time="2026-11-23T11:00:00+01:00")).time_ms == parse_ms(
        "2026-11-23T10:00:00Z"
    )


def test_the_adr_example_decodes() -> None:
    raw = (
        b'{"specversion": "1.0", "id": "e-123", "source": "crm/eu-1", "type": "email.sent",'
        b' "subject": "acct-42", "time": "2026-11-23T10:00:00Z", "dataschema": "metering/v1",'
        b' "data": {"contact": "c-9", "kind": "marketing"}}'
    )
    event = decode_event(raw, now_ms=NOW)
    assert (event.contact, event.kind) == ("c-9", EmailKind.MARKETING)
    assert event_document(event)["data"] == {"contact": "c-9", "kind": "marketing"}


# --- properties -----------------------------------------------------------------------------

_text = st.text(min_size=1, max_size=20).filter(lambda s: s.strip() == s and s.isprintable())
_account = st.from_regex(r"[A-Za-z0-9._:-]{1,30}", fullmatch=True)


@st.composite
def events(draw: st.DrawFn) -> UsageEvent:
    event_type = draw(st.sampled_from(list(EventType)))
    fields = draw_data(draw, event_type, _text)
    raw = {
        "specversion": "1.0",
        "id": draw(st.text(min_size=1, max_size=128)),
        "source": draw(_text),
        "type": event_type.value,
        "subject": draw(_account),
        "time": "1970-01-01T00:00:00Z",
        "data": fields,
    }
    time_ms = draw(st.integers(0, NOW))
    event = decode_event(orjson.dumps(raw), now_ms=NOW)
    return msgspec.structs.replace(event, time_ms=time_ms)


@settings(max_examples=200, deadline=None)
@given(events())
def test_encode_decode_round_trips(event: UsageEvent) -> None:
    assert decode_event(encode_event(event), now_ms=NOW) == event


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=6,
)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_event_rejected(raw: bytes) -> None:
    reason: RejectReason | None
    try:
        decode_event(raw, now_ms=NOW)
    except EventRejected as error:
        reason = error.reason
    else:
        reason = None
    assert reason is None or isinstance(reason, RejectReason)


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(list(EventType)),
    st.dictionaries(
        st.sampled_from(
            ["specversion", "id", "source", "type", "subject", "time", "dataschema", "data"]
        ),
        _json,
    ),
    st.dictionaries(
        st.sampled_from(
            [
                "contact",
                "kind",
                "quantity",
                "origin",
                "channel",
                "surface",
                "reason",
                "with_recommendations",
                "goal",
            ]
        ),
        _json,
    ),
)
def test_arbitrary_json_raises_only_event_rejected(
    event_type: EventType, top: dict[str, Any], data: dict[str, Any]
) -> None:
    doc = document(event_type, data=data)
    doc.update(top)
    reason: RejectReason | None
    try:
        event = decode_event(orjson.dumps(doc), now_ms=NOW)
    except EventRejected as error:
        reason = error.reason
    else:
        reason = None
        assert decode_event(encode_event(event), now_ms=NOW) == event
    assert reason is None or isinstance(reason, RejectReason)
