"""Hostile input to the event decoder: whatever the bytes, `decode_event` accepts a well-formed
event or raises `EventRejected` with a known reason, never anything else.

Why it matters: the processor dead-letters `EventRejected` and keeps going; any other exception
escapes its batch and restarts the process, which reads the same record again — one poison
record would stop a partition for good. tests/unit/core/test_events.py already throws short random
bytes and shallow random JSON at the decoder; this file goes further: bigger and structured
garbage, every input type the decoder takes, byte-level mutations of valid events, field-level
substitutions with hostile values, hostile timestamps, and the promises about what an accepted
event and a refusal carry (bounded detail, round trip).

Every input also goes through the checked decoder alone (`check_event`, the reference): the
fast path (`metering.core.event_fastpath`) must never change a verdict, so `decode_event` and the
reference must give the same event or the same refusal on everything fuzzed here.
"""

from __future__ import annotations

import json
import random
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metering.core import events as events_module
from metering.core.errors import EventRejected, RejectReason
from metering.core.events import (
    DATA_FIELDS,
    MAX_ID_CHARS,
    MAX_QUANTITY,
    MAX_TEXT_CHARS,
    EventType,
    UsageEvent,
    check_event,
    decode_event,
    encode_event,
)
from metering.core.rfc3339 import format_ms, parse_ms
from tests.unit.helpers import draw_data

NOW = parse_ms("2026-11-23T10:00:00Z")
FUTURE_MS = 5 * 60 * 1000
MAX_DETAIL = 300
"""A refusal's detail is logged and put in a dead-letter header: it must stay short."""

FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def dump(value: Any) -> bytes:
    """Encode a hostile document as a producer might: big integers and lone surrogates pass
    through (orjson would refuse to write them, so it cannot be the test's encoder)."""
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


def outcome(raw: Any, key: bytes | None = None) -> UsageEvent | EventRejected:
    """The event, or the refusal; any other exception fails the test where it happens.

    The reference (the checked decoder alone) must agree exactly: same event, or a refusal
    with the same reason, field and detail."""
    result: UsageEvent | EventRejected
    try:
        result = decode_event(raw, now_ms=NOW, key=key)
    except EventRejected as refusal:
        result = refusal
    reference: UsageEvent | EventRejected
    try:
        reference = check_event(raw, now_ms=NOW, key=key) if len(raw) <= 64 * 1024 else result
    except EventRejected as refusal:
        reference = refusal
    if isinstance(result, EventRejected):
        assert isinstance(reference, EventRejected), (raw[:200], reference)
        assert (result.reason, result.field, result.detail) == (
            reference.reason,
            reference.field,
            reference.detail,
        )
    else:
        assert result == reference, (raw[:200], reference)
    return result


def check(raw: Any, key: bytes | None = None) -> UsageEvent | EventRejected:
    """Decode `raw` (a record keyed by `key`) and check the contract of its outcome."""
    result = outcome(raw, key)
    if isinstance(result, EventRejected):
        assert isinstance(result.reason, RejectReason)
        assert result.field is None or isinstance(result.field, str)
        assert isinstance(result.detail, str)
        assert len(result.detail) <= MAX_DETAIL, result.detail
        assert str(result).startswith(result.reason.value)
        return result
    event = result
    assert 0 < len(event.id) <= MAX_ID_CHARS
    assert 0 < len(event.source) <= MAX_TEXT_CHARS
    assert 0 < len(event.account) <= MAX_ID_CHARS
    assert event.account.isprintable()
    assert not set(event.account) & {" ", "{", "}"}
    assert 0 <= event.time_ms <= NOW + FUTURE_MS
    assert 1 <= event.quantity <= MAX_QUANTITY
    assert key is None or key == event.account.encode()
    if any(spec.name == "contact" and spec.required for spec in DATA_FIELDS[event.type]):
        assert event.contact
    # What was accepted encodes and decodes to the same event (producers and tests rely on it).
    assert decode_event(encode_event(event), now_ms=NOW) == event
    return event


# --- strategies ---------------------------------------------------------------------------

_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
    | st.sampled_from(["", " ", "1.0", "email.sent", "acme", "{x}", "\x00", "\u202e", "😀" * 64])
)
json_values = st.recursive(
    _scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=20,
)

times = st.one_of(
    st.integers(min_value=0, max_value=NOW + FUTURE_MS).map(format_ms),
    st.integers(min_value=-(10**13), max_value=10**15).map(
        lambda ms: format_ms(ms) if 0 <= ms < 253402300800000 else str(ms)
    ),
    st.from_regex(
        r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,12})?([Zz]|[+-]\d{2}:\d{2})?",
        fullmatch=True,
    ),
    st.sampled_from(
        [
            "2026-02-29T10:00:00Z",
            "2026-06-30T23:59:60Z",
            "0000-01-01T00:00:00Z",
            "1970-01-01T00:00:00+23:59",
            "9999-12-31T23:59:59-23:59",
            "2026-11-23T10:00:00+24:00",
            "2026-11-23",
            "20261123T100000Z",
            "2026-11-23T10:00:00",
            "2026-11-23T10:00:00.\uff11Z",
            "\u0662\u0660\u0662\u0666-11-23T10:00:00Z",
            "2026-11-23T10:00:00." + "9" * 2000 + "Z",
        ]
    ),
    st.text(max_size=40),
)


@st.composite
def valid_documents(draw: st.DrawFn) -> dict[str, Any]:
    """A valid event document of any type, with every optional field drawn or left out."""
    event_type = draw(st.sampled_from(list(EventType)))
    data = draw_data(draw, event_type, st.text(min_size=1, max_size=30))
    doc: dict[str, Any] = {
        "specversion": "1.0",
        "id": draw(st.text(min_size=1, max_size=MAX_ID_CHARS)),
        "source": draw(st.text(min_size=1, max_size=30)),
        "type": event_type.value,
        "subject": draw(st.from_regex(r"[A-Za-z0-9._:-]{1,40}", fullmatch=True)),
        "time": format_ms(draw(st.integers(0, NOW))),
        "data": data,
    }
    if draw(st.booleans()):
        doc["dataschema"] = "metering/v1"
    if draw(st.booleans()):
        doc["holdid"] = draw(st.text(min_size=1, max_size=MAX_ID_CHARS))
    return doc


TOP = ["specversion", "id", "source", "type", "subject", "time", "dataschema", "data", "holdid"]
DATA = ["contact", "kind", "quantity", "origin", "channel", "surface", "reason"]
DATA += ["with_recommendations", "campaign", "goal"]


# --- properties ---------------------------------------------------------------------------


def test_valid_documents_are_accepted() -> None:
    """The generator of valid documents really makes valid ones (else the mutations below
    would only ever test refusals)."""

    @FUZZ
    @given(valid_documents())
    def accepted(doc: dict[str, Any]) -> None:
        assert isinstance(check(orjson.dumps(doc)), UsageEvent)

    accepted()


@FUZZ
@given(st.binary(max_size=4096))
def test_arbitrary_bytes(raw: bytes) -> None:
    check(raw)


@FUZZ
@given(st.text(max_size=2000))
def test_arbitrary_text_including_surrogates_and_controls(raw: str) -> None:
    check(raw)


@FUZZ
@given(json_values)
def test_arbitrary_json_documents(value: Any) -> None:
    check(dump(value))


@FUZZ
@given(valid_documents(), st.sampled_from(TOP), json_values)
def test_a_top_level_attribute_replaced_by_anything(
    doc: dict[str, Any], name: str, value: Any
) -> None:
    doc[name] = value
    check(dump(doc))


@FUZZ
@given(valid_documents(), st.sampled_from(DATA), json_values)
def test_a_data_field_replaced_by_anything(doc: dict[str, Any], name: str, value: Any) -> None:
    doc["data"][name] = value
    check(dump(doc))


@FUZZ
@given(
    valid_documents(),
    st.one_of(
        st.none(),
        st.just(b"<subject>"),
        st.binary(max_size=200),
        st.text(max_size=40).map(str.encode),
        st.sampled_from([b"", b"acme", b"acme ", b"\xff\xfe", b"{acme}", "é".encode()]),
    ),
    st.booleans(),
)
def test_record_keys_against_the_subject(
    doc: dict[str, Any], key: bytes | None, hostile: bool
) -> None:
    """A key that is not the subject is refused as `key_mismatch` by both decoders, with the
    same detail; no key or the subject's own bytes decode as without a key."""
    if key == b"<subject>":
        key = str(doc["subject"]).encode()
    if hostile:
        doc = {**doc, "subject": "é-" + str(doc["subject"])[:100]}  # the checked path decides
    result = check(dump(doc), key)
    plain = check(dump(doc))
    if key is None or (isinstance(plain, UsageEvent) and key == plain.account.encode()):
        assert result == plain or (
            isinstance(result, EventRejected) and isinstance(plain, EventRejected)
        )
    elif isinstance(plain, UsageEvent):
        assert isinstance(result, EventRejected)
        assert (result.reason, result.field) == (RejectReason.KEY_MISMATCH, "subject")
    else:  # an invalid event is refused for what is wrong with it, not for its key
        assert isinstance(result, EventRejected)
        assert result.reason == plain.reason


@given(valid_documents(), st.lists(st.sampled_from(TOP), max_size=4))
def test_attributes_removed(doc: dict[str, Any], names: list[str]) -> None:
    for name in names:
        doc.pop(name, None)
    check(dump(doc))


@FUZZ
@given(valid_documents(), times)
def test_hostile_timestamps(doc: dict[str, Any], time: str) -> None:
    doc["time"] = time
    result = check(dump(doc))
    if isinstance(result, UsageEvent):
        assert result.time_ms == parse_ms(time)


@FUZZ
@given(
    valid_documents(),
    st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.booleans()
    | st.text(max_size=5),
)
def test_hostile_quantities(doc: dict[str, Any], quantity: Any) -> None:
    doc["data"]["quantity"] = quantity
    result = check(dump(doc))
    if isinstance(result, UsageEvent) and "quantity" in {s.name for s in DATA_FIELDS[result.type]}:
        assert result.quantity == quantity


@FUZZ
@given(valid_documents(), st.randoms(use_true_random=False), st.integers(1, 12))
def test_byte_level_mutations_of_valid_events(
    doc: dict[str, Any], rng: random.Random, mutations: int
) -> None:
    """Flip, insert, delete and duplicate bytes of a valid event: what a broken producer or a
    corrupted network buffer could send."""
    raw = bytearray(dump(doc))
    for _ in range(mutations):
        if not raw:
            break
        at = rng.randrange(len(raw))
        op = rng.randrange(5)
        if op == 0:
            raw[at] ^= 1 << rng.randrange(8)
        elif op == 1:
            raw.insert(at, rng.randrange(256))
        elif op == 2:
            del raw[at]
        elif op == 3:
            raw[at:at] = raw[at : at + rng.randrange(1, 16)]
        else:
            raw[at] = rng.choice(b'{}[]",:\\0123456789 eE.-+tfnu')
    check(bytes(raw))


def test_inputs_of_every_accepted_type_decode_alike() -> None:
    """bytes, bytearray, memoryview and str of one document give one result (Kafka hands
    bytes, tests and the CLI may hand text)."""
    raw = orjson.dumps(
        {
            "specversion": "1.0",
            "id": "e",
            "source": "s",
            "type": "sms.sent",
            "subject": "acme",
            "time": "2026-11-23T09:00:00Z",
            "data": {"contact": "c", "quantity": 2},
        }
    )
    results = {repr(check(x)) for x in (raw, bytearray(raw), memoryview(raw), raw.decode())}
    assert len(results) == 1


def test_structural_extremes_are_refused_not_crashed() -> None:
    """Depth bombs, huge numbers, byte-order marks and non-JSON literals are refusals."""
    base = orjson.dumps(
        {
            "specversion": "1.0",
            "id": "e",
            "source": "s",
            "type": "sms.sent",
            "subject": "acme",
            "time": "2026-11-23T09:00:00Z",
            "data": {"contact": "c"},
        }
    ).decode()
    cases = {
        b"[" * 30_000 + b"]" * 30_000: RejectReason.NOT_JSON,
        ('{"a":' * 5000 + "1" + "}" * 5000).encode(): RejectReason.NOT_JSON,
        b"\xef\xbb\xbf" + base.encode(): RejectReason.NOT_JSON,
        base.replace('"c"}', '"c","quantity":NaN}').encode(): RejectReason.NOT_JSON,
        base.replace('"id":"e"', '"id":"\\ud800"').encode(): RejectReason.NOT_JSON,
        base.encode() + b"\x00": RejectReason.NOT_JSON,
        b"": RejectReason.NOT_JSON,
        b"null": RejectReason.NOT_OBJECT,
        b" " * 70_000: RejectReason.OVERSIZED,
        base.replace('"c"}', '"c","quantity":1e400}').encode(): RejectReason.NOT_JSON,
        base.replace('"c"}', '"c","quantity":18446744073709551616}').encode(): (
            RejectReason.WRONG_TYPE
        ),
        base.replace('"c"}', '"c","quantity":18446744073709551615}').encode(): (
            RejectReason.ABSURD_QUANTITY
        ),
    }
    for raw, reason in cases.items():
        result = check(raw)
        assert isinstance(result, EventRejected), raw[:80]
        assert result.reason is reason, (raw[:80], result)


def test_a_refusal_never_carries_the_whole_payload() -> None:
    """Details are logged and sent as headers: a long hostile value is cut, never echoed."""
    long = "x" * 10_000
    for doc in (
        {"specversion": long},
        {"specversion": "1.0", "id": "e", "source": "s", "type": long},
        {"specversion": "1.0", "id": "e", "source": "s", "type": "sms.sent", "subject": long},
    ):
        result = check(orjson.dumps(doc))
        assert isinstance(result, EventRejected)
        assert long not in result.detail


def test_the_hold_id_extension_is_read_alike_and_bad_ones_are_named() -> None:
    """`holdid` (an admission hold the event captures) reaches the event through both
    decoders; a wrong one is refused naming `holdid`."""
    doc = {
        "specversion": "1.0",
        "id": "e-1",
        "source": "tests",
        "type": "email.sent",
        "subject": "acct-1",
        "time": format_ms(NOW),
        "data": {"contact": "c-1", "kind": "marketing"},
    }
    for hold in ("h-1", "x" * MAX_ID_CHARS):
        raw = orjson.dumps({**doc, "holdid": hold})
        event = check(raw)
        assert isinstance(event, UsageEvent)
        assert event.hold == hold
        # the fast path takes it (a hold id must not cost the checked decoder's time)
        assert events_module._FAST.decode(raw, NOW, 300_000, 1_000_000) == event
    plain = check(orjson.dumps(doc))
    assert isinstance(plain, UsageEvent)
    assert plain.hold is None
    assert orjson.loads(encode_event(event))["holdid"] == event.hold
    for bad in ("", "x" * (MAX_ID_CHARS + 1), 7, ["h"]):
        refused = check(orjson.dumps({**doc, "holdid": bad}))
        assert isinstance(refused, EventRejected)
        assert refused.field == "holdid"
