"""Hostile input to the processor's per-record step: `PlanMapper.map` over every shipped plan.

The mapper is where a record meets an account's plan (periods in the account's timezone,
contract anniversaries, limits, thresholds, lateness). Whatever the record — garbage, valid
events of every type at any instant since 1970, events for unknown accounts, any watermark —
it returns a `MappedEvent` the rest of the batch step can use, or raises `EventRejected`.
An accepted event is then pushed through the rest of the pure batch step (`AccountWork`,
`encode_step`, JSON): a value that passed the mapper but broke the encoding would crash the
processor on every replay of that record.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metering.core.account_codec import account_from_json
from metering.core.directory import Directory
from metering.core.errors import AccountError, EventRejected, RejectReason
from metering.core.events import DATA_FIELDS, EventType, decode_event
from metering.core.fold import AccountWork, MappedEvent
from metering.core.mapper import MapperLimits, PlanMapper
from metering.core.meters import contributions
from metering.core.plan_loading import load_plan
from metering.core.rfc3339 import format_ms, parse_ms
from metering.state.codec import encode_step
from tests.unit.helpers import draw_data

NOW = parse_ms("2026-11-23T10:00:00Z")
HOUR = 3_600_000
ROOT = Path(__file__).resolve().parents[3]
PLAN_FILES = [
    *sorted((ROOT / "metering" / "core" / "plans_examples").glob("*.toml")),
    ROOT / "tests" / "integration" / "plans" / "it-plan.toml",
    ROOT / "tests" / "reliability" / "plans" / "faults-plan.toml",
]
PLANS = [load_plan(path) for path in PLAN_FILES]
TIMEZONES = [None, "UTC", "Europe/Brussels", "America/New_York", "Asia/Kathmandu", "Pacific/Apia"]
CONTRACT_DATES = [None, "2024-01-31", "2024-02-29", "2025-12-31", "2026-03-29"]


def build_directory() -> tuple[Directory, list[str]]:
    """Every plan, and for each plan accounts in several timezones and contract dates."""
    directory = Directory()
    accounts: list[str] = []
    for plan in PLANS:
        directory.put_plan(plan)
        for i, (tz, contract) in enumerate(zip(TIMEZONES, CONTRACT_DATES * 2, strict=False)):
            doc: dict[str, Any] = {"id": f"{plan.id}-{i}", "plan": plan.id}
            if tz:
                doc["timezone"] = tz
            if contract:
                doc["contract_date"] = contract
            try:
                directory.put_account(account_from_json(doc))
            except AccountError:  # a billing-period plan needs a contract date
                doc["contract_date"] = "2025-01-31"
                directory.put_account(account_from_json(doc))
            accounts.append(doc["id"])
    return directory, accounts


DIRECTORY, ACCOUNTS = build_directory()
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def new_mapper() -> PlanMapper:
    return PlanMapper(DIRECTORY, MapperLimits(grace_ms=HOUR))


MAPPER = new_mapper()  # shared on purpose: its rule cache must stay right across examples


def outcome(value: bytes | None, watermark_ms: int) -> MappedEvent | EventRejected:
    """The mapped event or the refusal; any other exception fails the test right there."""
    try:
        return MAPPER.map(value, now_ms=NOW, watermark_ms=watermark_ms)
    except EventRejected as refusal:
        return refusal


def map_checked(value: bytes | None, watermark_ms: int, *, offset: int = 7) -> MappedEvent | None:
    """Map `value`; check a refusal's contract, or push the accepted event through the rest
    of the pure batch step. Returns the mapped event, None when refused."""
    mapped = outcome(value, watermark_ms)
    if isinstance(mapped, EventRejected):
        assert isinstance(mapped.reason, RejectReason)
        assert len(mapped.detail) <= 300
        return None
    found = DIRECTORY.lookup(mapped.account)
    assert found is not None
    account, plan = found
    # The mapper's cached lanes give what the domain's definition gives, minus late meters.
    assert value is not None
    reference = contributions(decode_event(value, now_ms=NOW), account, plan)
    assert list(mapped.contributions) == [c for c in reference if c.meter not in mapped.late]
    meters = {m.name for m in plan.meters}
    for contribution in mapped.contributions:
        assert contribution.meter in meters
        assert (contribution.meter, contribution.period) in mapped.rules
    assert set(mapped.late) <= meters
    assert not set(mapped.late) & {c.meter for c in mapped.contributions}
    work = AccountWork(mapped.account, "usage", 0)
    work.add(offset, mapped)
    fence, payload = encode_step(work.step(), dedup_window_s=86_400, now_ms=NOW)
    assert fence.startswith(f"mtr:{{{mapped.account}}}:f:usage:0")
    orjson.dumps(payload)  # what travels to Redis must encode
    return mapped


def dump(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


@st.composite
def documents(draw: st.DrawFn, *, known: bool = True) -> dict[str, Any]:
    """A valid event document for a known account (or any subject), any time since 1970."""
    event_type = draw(st.sampled_from(list(EventType)))
    data = draw_data(draw, event_type, st.text(min_size=1, max_size=20))
    subject = (
        draw(st.sampled_from(ACCOUNTS))
        if known
        else draw(st.text(min_size=1, max_size=40).filter(lambda s: s not in ACCOUNTS))
    )
    instant = draw(
        st.one_of(
            st.integers(0, NOW),
            st.integers(NOW - 40 * 86_400_000, NOW + 4 * 60_000),
            # Daylight-saving changes and month ends in the accounts' timezones.
            st.sampled_from(
                [
                    parse_ms(t)
                    for t in (
                        "2026-03-29T00:59:59Z",
                        "2026-03-29T01:00:00Z",
                        "2026-10-25T00:59:59.999Z",
                        "2026-10-25T01:00:00Z",
                        "2026-02-28T23:59:59.999Z",
                        "2024-02-29T12:00:00Z",
                        "2026-10-31T22:00:00Z",
                        "2025-12-31T23:59:59.999Z",
                        "1970-01-01T00:00:00Z",
                    )
                ]
            ),
        )
    )
    return {
        "specversion": "1.0",
        "id": draw(st.text(min_size=1, max_size=40)),
        "source": "fuzz",
        "type": event_type.value,
        "subject": subject,
        "time": format_ms(instant),
        "data": data,
    }


watermarks = st.one_of(st.just(0), st.integers(0, NOW + 4 * 60_000))


@FUZZ
@given(documents(), watermarks)
def test_valid_events_of_known_accounts_map(doc: dict[str, Any], watermark: int) -> None:
    assert map_checked(orjson.dumps(doc), watermark) is not None


@FUZZ
@given(documents(known=False), watermarks)
def test_unknown_accounts_are_refused_with_their_reason(
    doc: dict[str, Any], watermark: int
) -> None:
    result = outcome(dump(doc), watermark)
    assert isinstance(result, EventRejected), "an unknown account was mapped"
    # Subjects that are not valid ids are refused before the look-up; text the JSON encoder
    # cannot carry (lone surrogates) is refused as not JSON.
    assert result.reason in {
        RejectReason.UNKNOWN_ACCOUNT,
        RejectReason.INVALID_VALUE,
        RejectReason.NOT_JSON,
    }


@FUZZ
@given(st.one_of(st.none(), st.binary(max_size=2048)), watermarks)
def test_arbitrary_bytes_and_empty_records(value: bytes | None, watermark: int) -> None:
    map_checked(value, watermark)


@FUZZ
@given(
    documents(),
    st.sampled_from(["specversion", "id", "source", "type", "subject", "time", "data"]),
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=20)
        | st.sampled_from(ACCOUNTS),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
        max_leaves=8,
    ),
    watermarks,
)
def test_one_attribute_replaced_by_anything(
    doc: dict[str, Any], name: str, value: Any, watermark: int
) -> None:
    doc[name] = value
    map_checked(dump(doc), watermark)


@FUZZ
@given(documents(), st.randoms(use_true_random=False), st.integers(1, 8), watermarks)
def test_byte_mutations_of_valid_events(
    doc: dict[str, Any], rng: random.Random, mutations: int, watermark: int
) -> None:
    raw = bytearray(orjson.dumps(doc))
    for _ in range(mutations):
        at = rng.randrange(len(raw))
        op = rng.randrange(3)
        if op == 0:
            raw[at] ^= 1 << rng.randrange(8)
        elif op == 1:
            raw.insert(at, rng.randrange(256))
        else:
            del raw[at]
        if not raw:
            break
    map_checked(bytes(raw), watermark)


def test_a_stream_of_fuzzed_records_maps_like_one_record_at_a_time() -> None:
    """A long mixed stream through one mapper with a moving watermark, as `_read` does: the
    rule cache must give the same answer as a fresh mapper for every record."""
    rng = random.Random(20261123)
    fresh_every = new_mapper()
    watermark = 0
    for i in range(1500):
        value = orjson.dumps(_sample(rng)) if rng.random() < 0.8 else rng.randbytes(40)
        got = map_checked(value, watermark, offset=i)
        try:
            want = fresh_every.map(value, now_ms=NOW, watermark_ms=watermark)
        except EventRejected:
            assert got is None
            continue
        assert got is not None
        assert (got.contributions, got.rules, got.late) == (
            want.contributions,
            want.rules,
            want.late,
        )
        watermark = max(watermark, got.time_ms)
        fresh_every = new_mapper() if i % 100 == 0 else fresh_every


def _sample(rng: random.Random) -> dict[str, Any]:
    """A valid document drawn with `rng` (hypothesis' `example()` is not for tests)."""
    event_type = rng.choice(list(EventType))
    data: dict[str, Any] = {}
    for spec in DATA_FIELDS[event_type]:
        if not spec.required and rng.random() < 0.5:
            continue
        if spec.boolean:
            data[spec.name] = rng.random() < 0.5
        elif spec.values:
            data[spec.name] = rng.choice(spec.values)
        elif spec.name == "quantity":
            data[spec.name] = rng.randint(1, 50)
        else:
            data[spec.name] = f"m{rng.randrange(30)}"
    return {
        "specversion": "1.0",
        "id": f"e{rng.getrandbits(40)}",
        "source": "fuzz",
        "type": event_type.value,
        "subject": rng.choice(ACCOUNTS),
        "time": format_ms(rng.randint(NOW - 70 * 86_400_000, NOW)),
        "data": data,
    }
