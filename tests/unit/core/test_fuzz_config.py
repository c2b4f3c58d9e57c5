"""Hostile records through the directory's apply path, the way tests/unit/core/test_fuzz_events.py
fuzzes events: whatever the key and value bytes, `Directory.apply_record` applies the record or
returns a `Refusal` with a known reason, never raises, and a refused record changes nothing
(the last good version of its key stays in force).

Why it matters: every processor and API process applies every record of the accounts topic;
one record that raised killed the follower of every running process and blocked every process
that started after it (issue 14, item 3). `RefusalReason.UNEXPECTED` is the safety net for
errors no check anticipated; fuzzed input must never reach it (each such case is a bug to fix
with a proper check).
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metering.core.account_codec import account_to_json
from metering.core.accounts import Account
from metering.core.directory import MAX_PROBLEM_CHARS, Directory, Refusal, RefusalReason
from metering.core.errors import EventRejected, RejectReason
from metering.core.mapper import MapperLimits, PlanMapper
from metering.core.plan_loading import EXAMPLES_DIR
from metering.core.rfc3339 import parse_ms
from metering.settings import Settings

FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

APSIS_TEXT = (EXAMPLES_DIR / "apsis.toml").read_text(encoding="utf-8")
ACTON_TEXT = (EXAMPLES_DIR / "acton.toml").read_text(encoding="utf-8")
GOOD_ACCOUNT = Account("acme", "apsis-essential", limit_overrides={"email_sendings": 9})
KEYS = [
    "plan:apsis-essential",
    "plan:acton-active-contacts",
    "account:acme",
    "account:zed",
    "apikey:k_0123456789ab",
]
DIGEST = "ab" * 32
GOOD_KEY = {
    "id": "k_0123456789ab",
    "digest": DIGEST,
    "scope": "account",
    "account": "acme",
    "created_ms": 1_700_000_000_000,
}


def plan_value(text: Any, source: Any = "apsis.toml") -> bytes:
    return dump({"source": source, "toml": text})


def dump(value: Any) -> bytes:
    """Encode as a hostile producer might (big integers, lone surrogates pass through)."""
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


def seeded() -> Directory:
    """A directory holding one good plan and one good account on it."""
    directory = Directory()
    assert directory.apply_record(b"plan:apsis-essential", plan_value(APSIS_TEXT)) is None
    assert (
        directory.apply_record(b"account:acme", orjson.dumps(account_to_json(GOOD_ACCOUNT))) is None
    )
    assert directory.apply_record(b"apikey:k_0123456789ab", dump(GOOD_KEY)) is None
    return directory


def snapshot(directory: Directory) -> tuple[object, ...]:
    return (
        tuple(directory.plans()),
        tuple(directory.accounts()),
        tuple(directory.api_keys()),
        directory.version,
    )


def check(directory: Directory, key: bytes | None, value: bytes | None) -> Refusal | None:
    """Apply; a refusal must carry a known, anticipated reason and change nothing."""
    before = snapshot(directory)
    result = directory.apply_record(key, value)
    if result is not None:
        assert isinstance(result, Refusal)
        assert result.reason is not RefusalReason.UNEXPECTED, result
        assert len(result.problem) <= MAX_PROBLEM_CHARS
        assert snapshot(directory) == before, "a refused record changed the directory"
    return result


# -- strategies ------------------------------------------------------------------------------

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
keys = st.one_of(
    st.sampled_from(
        [*KEYS, "plan:", "account:", "apikey:", "apikey:k_x", "", "plans:x", "ACCOUNT:acme"]
    ).map(str.encode),
    st.binary(max_size=40),
    st.none(),
)


@st.composite
def toml_texts(draw: st.DrawFn) -> str:
    """Plan-ish TOML: the good file mutated, random lines, or nesting deeper than tomllib can."""
    kind = draw(st.sampled_from(["mutated", "lines", "deep_array", "deep_table", "random"]))
    if kind == "mutated":
        lines = APSIS_TEXT.splitlines()
        i = draw(st.integers(0, len(lines) - 1))
        lines[i] = draw(
            st.sampled_from(["", "limit = -1", 'ratio = "1e999999999"', "x = [", lines[i][::-1]])
        )
        return "\n".join(lines)
    if kind == "lines":
        values = st.sampled_from(['"a"', "1", "1.5", "true", "[]", "{}", '"4/5"', '"80%"', "-3"])
        names = st.sampled_from(["id", "name", "meters", "limit", "ratio", "aggregation", "events"])
        pairs = draw(st.lists(st.tuples(names, values), max_size=8))
        return 'id = "apsis-essential"\nname = "x"\n' + "\n".join(f"{k} = {v}" for k, v in pairs)
    depth = draw(st.integers(100, 3000))
    if kind == "deep_array":
        return "a = " + "[" * depth + "]" * depth
    if kind == "deep_table":
        return "a = " + "{b = " * depth + "1" + "}" * depth
    return draw(st.text(max_size=200))


@st.composite
def account_docs(draw: st.DrawFn) -> dict[str, Any]:
    """An account document with some fields replaced by hostile values."""
    doc: dict[str, Any] = dict(account_to_json(GOOD_ACCOUNT))
    doc["contract_date"] = "2026-01-31"
    doc["timezone"] = "Europe/Brussels"
    doc["extensions"] = [{"meter": "email_sendings", "period": "2026-11", "extra": 5}]
    hostile = st.one_of(
        json_values,
        st.sampled_from(
            ["2026-W01-1", "20260131", "2026-02-30", "Mars/Olympus", "../../etc", "\x00"]
        ),
    )
    for name in draw(st.lists(st.sampled_from([*doc, "unknown"]), max_size=3)):
        doc[name] = draw(hostile)
    return doc


@st.composite
def key_docs(draw: st.DrawFn) -> dict[str, Any]:
    """An API key record with some fields replaced by hostile values (a token among them)."""
    doc: dict[str, Any] = dict(GOOD_KEY)
    hostile = st.one_of(
        json_values, st.sampled_from(["mk_secret", "AB" * 32, "k_0123456789ab", "admin", -1])
    )
    for name in draw(st.lists(st.sampled_from([*doc, "revoked_ms", "token"]), max_size=3)):
        doc[name] = draw(hostile)
    return doc


values = st.one_of(
    st.none(),
    st.binary(max_size=200),
    json_values.map(dump),
    toml_texts().map(plan_value),
    json_values.map(plan_value),
    st.tuples(st.text(max_size=20), json_values).map(lambda t: plan_value(APSIS_TEXT, t[1])),
    account_docs().map(dump),
    key_docs().map(dump),
)


# -- properties ------------------------------------------------------------------------------


@FUZZ
@given(key=keys, value=values)
def test_any_record_applies_or_is_refused_never_raises(
    key: bytes | None, value: bytes | None
) -> None:
    check(seeded(), key, value)


@FUZZ
@given(key=st.sampled_from(KEYS).map(str.encode), value=values)
def test_a_refused_record_leaves_the_last_good_version_in_force(
    key: bytes, value: bytes | None
) -> None:
    directory = seeded()
    if check(directory, key, value) is not None:
        assert directory.lookup("acme") is not None
        assert directory.account("acme") == GOOD_ACCOUNT


@FUZZ
@given(records=st.lists(st.tuples(keys, values), max_size=8))
def test_sequences_of_records_then_a_good_one_always_apply(
    records: list[tuple[bytes | None, bytes | None]],
) -> None:
    """Start-up is never blocked: whatever came before, a good plan and account apply."""
    directory = Directory()
    for key, value in records:
        check(directory, key, value)
    assert directory.apply_record(b"plan:apsis-essential", plan_value(APSIS_TEXT)) is None
    assert (
        directory.apply_record(b"account:acme", orjson.dumps(account_to_json(GOOD_ACCOUNT))) is None
    )
    assert directory.lookup("acme") is not None


# -- the records of the issue, one by one ----------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "reason", "words"),
    [
        (
            b"plan:apsis-essential",
            plan_value("a = " + "[" * 5000 + "]" * 5000),
            "invalid_plan",
            "nested too deeply",
        ),
        (b"plan:apsis-essential", plan_value(5), "invalid_plan", "toml: must be a string"),
        (b"plan:apsis-essential", plan_value(APSIS_TEXT, source=[1]), "invalid_plan", "source"),
        (b"plan:apsis-essential", b"[1, 2]", "invalid_plan", "JSON object"),
        (b"plan:apsis-essential", b"\xff not json", "not_json", "not JSON"),
        (b"plan:apsis-essential", plan_value(ACTON_TEXT), "key_mismatch", "acton-active-contacts"),
        (b"account:acme", b"{", "not_json", "not JSON"),
        (
            b"account:acme",
            dump({"id": "acme", "plan": "apsis-essential", "contract_date": "2026-W01-1"}),
            "invalid_account",
            "2026-W01-1",
        ),
        (
            b"account:acme",
            dump({"id": "acme", "plan": "apsis-essential", "limits": {"nope": 1}}),
            "invalid_account",
            "no meter 'nope'",
        ),
        (
            b"account:acme",
            dump({"id": "other", "plan": "apsis-essential"}),
            "key_mismatch",
            "other",
        ),
        (b"acme", dump({"id": "acme", "plan": "apsis-essential"}), "bad_key", "plan:<id>"),
        (b"account:", None, "bad_key", "account:<id>"),
        (b"\xff\xfe", None, "bad_key", "not UTF-8"),
        (b"apikey:k_0123456789ab", b"[1]", "invalid_api_key", "JSON object"),
        (b"apikey:k_0123456789ab", b"{", "not_json", "not JSON"),
        (
            b"apikey:k_0123456789ab",
            dump({**GOOD_KEY, "token": "mk_abc"}),
            "invalid_api_key",
            "token: unknown field",
        ),
        (
            b"apikey:k_0123456789ab",
            dump({**GOOD_KEY, "digest": "cd" * 32}),
            "invalid_api_key",
            "digest never changes",
        ),
        (b"apikey:k_0123456789ab", dump({**GOOD_KEY, "digest": "xyz"}), "invalid_api_key", "SHA"),
        (b"apikey:k_0123456789ab", dump({**GOOD_KEY, "scope": "root"}), "invalid_api_key", "scope"),
        (
            b"apikey:k_0123456789ab",
            dump({**GOOD_KEY, "scope": "admin"}),
            "invalid_api_key",
            "admin key names no account",
        ),
        (
            b"apikey:k_0123456789ab",
            dump({**GOOD_KEY, "created_ms": True}),
            "invalid_api_key",
            "created_ms",
        ),
        (b"apikey:k_999999999999", dump(GOOD_KEY), "invalid_api_key", "belongs to key"),
        (b"apikey:nope", dump(GOOD_KEY), "invalid_api_key", "k_ followed by"),
    ],
)
def test_each_hostile_record_is_refused_with_its_reason(
    key: bytes, value: bytes | None, reason: str, words: str
) -> None:
    directory = seeded()
    refusal = check(directory, key, value)
    assert refusal is not None
    assert refusal.reason == reason
    assert words in refusal.problem
    assert directory.account("acme") == GOOD_ACCOUNT
    record = directory.api_key(DIGEST)
    assert record is not None
    assert record.revoked_ms is None


def test_a_revoked_or_tombstoned_key_stays_withdrawn() -> None:
    directory = seeded()
    revoked = dump({**GOOD_KEY, "revoked_ms": 1_700_000_000_001})
    assert directory.apply_record(b"apikey:k_0123456789ab", revoked) is None
    assert directory.api_key_withdrawn(DIGEST)
    assert directory.apply_record(b"apikey:k_0123456789ab", None) is None
    assert directory.api_key(DIGEST) is None
    assert directory.api_key_withdrawn(DIGEST)
    assert directory.apply_record(b"apikey:k_0123456789ab", dump(GOOD_KEY)) is None
    assert not directory.api_key_withdrawn(DIGEST)


def test_a_huge_plan_record_is_refused_in_short() -> None:
    value = plan_value(APSIS_TEXT + "\n# " + "x" * 900_000 + "\nbroken = [")
    refusal = check(seeded(), b"plan:apsis-essential", value)
    assert refusal is not None
    assert refusal.reason is RefusalReason.INVALID_PLAN


def test_a_tombstone_then_a_corrected_record_applies() -> None:
    directory = seeded()
    assert check(directory, b"plan:apsis-essential", plan_value(5)) is not None
    assert directory.apply_record(b"plan:apsis-essential", None) is None
    assert directory.plan("apsis-essential") is None
    assert directory.apply_record(b"plan:apsis-essential", plan_value(APSIS_TEXT)) is None
    assert directory.lookup("acme") is not None


def test_iso_week_and_basic_dates_are_refused_calendar_dates_apply() -> None:
    directory = seeded()
    for text in ("2026-W01-1", "20260131", "2026-1-31", "2026-01-31T00:00"):
        doc = {"id": "acme", "plan": "apsis-essential", "contract_date": text}
        refusal = check(directory, b"account:acme", dump(doc))
        assert refusal is not None
        assert "must be a calendar date YYYY-MM-DD" in refusal.problem
    doc = {"id": "acme", "plan": "apsis-essential", "contract_date": "2026-01-31"}
    assert directory.apply_record(b"account:acme", dump(doc)) is None
    account = directory.account("acme")
    assert account is not None
    assert account.contract_date == date(2026, 1, 31)


def test_an_account_without_the_contract_date_its_plan_needs_is_not_mapped() -> None:
    """A plan version that adds a billing period (or an account stored before its plan) must
    not make mapping raise: the account resolves to nothing and its events are refused."""
    directory = seeded()
    billing = APSIS_TEXT.replace('period = "calendar_month"', 'period = "billing_month"')
    assert directory.apply_record(b"plan:apsis-essential", plan_value(billing)) is None
    plan = directory.plan("apsis-essential")
    assert plan is not None
    assert directory.missing_contract_dates(plan) == ["acme"]
    assert directory.lookup("acme") is None
    mapper = PlanMapper(directory, MapperLimits.from_settings(Settings()))
    event = {
        "specversion": "1.0",
        "id": "e1",
        "source": "test",
        "type": "email.sent",
        "subject": "acme",
        "time": "2026-11-23T10:00:00Z",
        "data": {"contact": "c1", "kind": "marketing"},
    }
    with pytest.raises(EventRejected) as refused:
        mapper.map(orjson.dumps(event), now_ms=parse_ms("2026-11-23T10:01:00Z"), watermark_ms=0)
    assert refused.value.reason is RejectReason.UNKNOWN_ACCOUNT
    dated = {**account_to_json(GOOD_ACCOUNT), "contract_date": "2026-01-31"}
    assert directory.apply_record(b"account:acme", dump(dated)) is None
    assert directory.lookup("acme") is not None
    assert mapper.map(orjson.dumps(event), now_ms=parse_ms("2026-11-23T10:01:00Z"), watermark_ms=0)
