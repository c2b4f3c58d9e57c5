"""The processor's pure steps: mapping records (validation, lateness, rules) and cutting work."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from metering.core.account_codec import account_from_json
from metering.core.directory import Directory
from metering.core.errors import EventRejected, RejectReason
from metering.core.fold import AccountWork
from metering.core.mapper import MapperLimits, PlanMapper
from metering.core.periods import PeriodKind, period_of
from metering.core.plan_loading import load_plan
from metering.core.rfc3339 import parse_ms
from metering.core.thresholds import crossing_id
from metering.state.codec import encode_step

PLAN = Path(__file__).resolve().parents[2] / "integration" / "plans" / "it-plan.toml"
NOW = parse_ms("2026-11-23T10:00:00Z")
HOUR = 3_600_000


def directory(**account: object) -> Directory:
    d = Directory()
    d.put_plan(load_plan(PLAN))
    d.put_account(account_from_json({"id": "acme", "plan": "it-plan", **account}))
    return d


def record(
    event_type: str = "email.sent", *, time: str = "2026-11-23T09:00:00Z", **data: object
) -> bytes:
    return orjson.dumps(
        {
            "specversion": "1.0",
            "id": "e1",
            "source": "t",
            "type": event_type,
            "subject": "acme",
            "time": time,
            "data": data or {"contact": "c1", "kind": "marketing"},
        }
    )


def mapper(d: Directory) -> PlanMapper:
    return PlanMapper(d, MapperLimits(grace_ms=HOUR))


def test_an_event_maps_to_every_meter_it_feeds_with_its_rules() -> None:
    mapped = mapper(directory()).map(record(), now_ms=NOW, watermark_ms=0)
    assert [(c.meter, c.period) for c in mapped.contributions] == [
        ("emails", "2026-11"),
        ("active_contacts", "2026-11"),
    ]
    rule = mapped.rules[("emails", "2026-11")]
    assert rule.limit == 100
    assert rule.period_end_ms == parse_ms("2026-12-01T00:00:00Z")
    assert [t.crossing_id for t in rule.thresholds] == [
        crossing_id("acme", "emails", "2026-11", "at_risk"),
        crossing_id("acme", "emails", "2026-11", "exceeded"),
    ]


def test_an_unknown_account_is_rejected_with_its_reason() -> None:
    d = Directory()
    d.put_plan(load_plan(PLAN))
    with pytest.raises(EventRejected) as caught:
        mapper(d).map(record(), now_ms=NOW, watermark_ms=0)
    assert (caught.value.reason, caught.value.field) == (RejectReason.UNKNOWN_ACCOUNT, "subject")


def test_a_record_without_value_is_rejected() -> None:
    with pytest.raises(EventRejected):
        mapper(directory()).map(None, now_ms=NOW, watermark_ms=0)


def test_a_period_is_late_once_the_watermark_passes_its_end_plus_the_grace() -> None:
    m = mapper(directory())
    october = record(time="2026-10-31T23:30:00Z")
    november_end = parse_ms("2026-11-01T00:00:00Z")
    inside = m.map(october, now_ms=NOW, watermark_ms=november_end + HOUR - 1)
    assert not inside.late
    assert len(inside.contributions) == 2
    outside = m.map(october, now_ms=NOW, watermark_ms=november_end + HOUR)
    assert list(outside.late) == ["emails", "active_contacts"]
    assert not outside.contributions


def test_a_limit_change_reaches_the_next_event() -> None:
    d = directory()
    m = mapper(d)
    assert m.map(record(), now_ms=NOW, watermark_ms=0).rules[("emails", "2026-11")].limit == 100
    d.put_account(account_from_json({"id": "acme", "plan": "it-plan", "limits": {"emails": 5}}))
    assert m.map(record(), now_ms=NOW, watermark_ms=0).rules[("emails", "2026-11")].limit == 5
    extension = {"meter": "emails", "period": "2026-11", "extra": 20}
    d.put_account(
        account_from_json(
            {"id": "acme", "plan": "it-plan", "limits": {"emails": 5}, "extensions": [extension]}
        )
    )
    assert m.map(record(), now_ms=NOW, watermark_ms=0).rules[("emails", "2026-11")].limit == 25


def test_gauge_crossings_are_scoped_by_the_limit() -> None:
    added = record("contact.added", contact="p1", origin="api")
    rule = mapper(directory()).map(added, now_ms=NOW, watermark_ms=0).rules[("profiles", "")]
    assert rule.scope == "L50"
    assert rule.thresholds[0].crossing_id == crossing_id("acme", "profiles", "L50", "at_risk")


def test_work_cut_at_a_fence_keeps_only_later_events_and_moves_its_range() -> None:
    m = mapper(directory())
    work = AccountWork("acme", "t", 0)
    for offset in range(10, 15):
        doc = orjson.loads(record())
        doc["id"] = f"e{offset}"
        work.add(offset, m.map(orjson.dumps(doc), now_ms=NOW, watermark_ms=0))
    assert work.cut_to_fence(12) == 3
    step = work.step()
    assert (step.delta.first_offset, step.delta.last_offset) == (13, 14)
    assert step.delta.event_ids == ["e13", "e14"]
    assert step.delta.meters[("emails", "2026-11")].amount == 2


def test_work_drops_duplicate_ids_but_its_fence_still_covers_them() -> None:
    m = mapper(directory())
    work = AccountWork("acme", "t", 0)
    event = m.map(record(), now_ms=NOW, watermark_ms=0)
    assert work.add(1, event) is True
    assert work.add(2, event) is False  # the producer's retry, in the same batch
    assert work.drop_ids(("e1",)) == 1  # and the store remembered it from an earlier batch
    step = work.step()
    assert (step.delta.first_offset, step.delta.last_offset, step.delta.event_ids) == (1, 2, [])


def test_work_refused_for_closed_periods_keeps_the_rest_and_names_the_late_meters() -> None:
    m = mapper(directory())
    work = AccountWork("acme", "t", 0)
    docs = [
        (10, "email.sent", "2026-10-20T09:00:00Z", {"contact": "c1", "kind": "marketing"}),
        (11, "email.sent", "2026-11-20T09:00:00Z", {"contact": "c2", "kind": "marketing"}),
        (12, "recommendation.viewed", "2026-10-21T09:00:00Z", {"quantity": 3}),
        (13, "contact.added", "2026-10-21T09:00:00Z", {"contact": "c3", "origin": "import"}),
    ]
    for offset, event_type, time, data in docs:
        doc = orjson.loads(record(event_type, time=time, **data))
        doc["id"] = f"e{offset}"
        work.add(offset, m.map(orjson.dumps(doc), now_ms=NOW, watermark_ms=0))

    late = work.refuse_closed([("emails", "2026-10"), ("recommendation_views", "2026-10")])

    assert late == [(10, ["emails"]), (12, ["recommendation_views"])]
    step = work.step()
    assert (step.delta.first_offset, step.delta.last_offset) == (10, 13)  # the fence covers all
    assert step.delta.event_ids == ["e10", "e11", "e13"]  # e12 had nothing left to apply
    assert sorted(step.delta.meters) == [
        ("active_contacts", "2026-10"),
        ("active_contacts", "2026-11"),
        ("emails", "2026-11"),
        ("profiles", ""),
    ]
    assert sorted(step.rules) == sorted(step.delta.meters)
    assert work.items[0].event.late == ["emails"]


def test_the_apply_step_is_encoded_as_the_script_reads_it() -> None:
    m = mapper(directory())
    work = AccountWork("acme", "usage", 3)
    work.add(7, m.map(record(), now_ms=NOW, watermark_ms=0))
    fence, decoded = encode_step(work.step(), dedup_window_s=60, now_ms=NOW)
    assert fence == "mtr:{acme}:f:usage:3"
    assert decoded[:7] == ["mtr:{acme}:", "acme", 7, 7, 30, NOW, ["e1"]]
    emails = decoded[8][0]
    assert emails[:4] == ["emails", "2026-11", "c", 1]
    assert emails[7] == 100


def test_period_of_a_month_in_the_account_timezone() -> None:
    # 2026-11-30T23:30 UTC is already December in Europe/Brussels.
    t = parse_ms("2026-11-30T23:30:00Z")
    assert period_of(PeriodKind.CALENDAR_MONTH, t, "Europe/Brussels").key == "2026-12"
    m = mapper(directory(timezone="Europe/Brussels"))
    mapped = m.map(record(time="2026-11-30T23:30:00Z"), now_ms=t, watermark_ms=0)
    assert mapped.contributions[0].period == "2026-12"
