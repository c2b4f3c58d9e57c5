"""Plan files: the shipped examples load; malformed plans name file, field and problem."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from metering.core.deltas import Aggregation
from metering.core.enforcement import AddRule, EnforcementMode, GatedAction
from metering.core.errors import PlanError, UnknownMeter
from metering.core.events import ContactOrigin, EventType
from metering.core.periods import DAY_MS, PeriodKind
from metering.core.plan_loading import (
    EXAMPLES_DIR,
    example_plans,
    load_plan,
    load_plans,
    parse_plan,
)
from metering.core.plans import DerivedLimit, Effect, FixedLimit
from metering.core.thresholds import DEFAULT_THRESHOLDS, Colour

MINIMAL = """
id = "p"
name = "P"

[meters.emails]
aggregation = "count"
period = "calendar_month"
limit = 100
events = [{ type = "email.sent" }]
"""


def test_one_example_per_seed_vendor() -> None:
    plans = example_plans()
    assert sorted(plans) == [
        "actito-standard",
        "activecampaign-lite",
        "acton-active-contacts",
        "apsis-essential",
        "clerk",
    ]
    assert sorted(p.name for p in EXAMPLES_DIR.glob("*.toml")) == [
        "actito.toml",
        "activecampaign.toml",
        "acton.toml",
        "apsis.toml",
        "clerk.toml",
    ]


def test_minimal_plan_and_defaults() -> None:
    plan = parse_plan(MINIMAL, source="mem.toml")
    meter = plan.meter("emails")
    assert plan.timezone == "UTC"
    assert meter.aggregation is Aggregation.COUNT
    assert meter.period is PeriodKind.CALENDAR_MONTH
    assert meter.limit == FixedLimit(100)
    assert meter.thresholds == DEFAULT_THRESHOLDS
    assert meter.enforcement.mode is EnforcementMode.ADVISORY
    assert [r.meter.name for r in plan.routes(EventType.EMAIL_SENT)] == ["emails"]
    assert plan.routes(EventType.SMS_SENT) == ()
    with pytest.raises(UnknownMeter):
        plan.meter("nope")


def test_full_featured_plan_reads_every_field() -> None:
    plans = example_plans()
    contacts = plans["activecampaign-lite"].meter("contacts")
    assert contacts.events[1].effect is Effect.REMOVE
    assert contacts.thresholds[0].remind_every_ms == 15 * DAY_MS
    assert contacts.thresholds[2].ratio == Fraction(11, 10)
    assert contacts.thresholds[1].colour is Colour.RED
    policy = contacts.enforcement
    assert policy.mode is EnforcementMode.LIMIT
    assert policy.origins[ContactOrigin.API] is AddRule.ALLOW
    assert policy.origins[ContactOrigin.IMPORT] is AddRule.ALL_OR_NOTHING
    assert policy.origins[ContactOrigin.MANUAL] is AddRule.WITHIN_LIMIT
    gate = policy.gate(GatedAction.CAMPAIGN_SEND)
    assert gate is not None
    assert gate.ceiling(via_api=True) == Fraction(11, 10)
    assert gate.ceiling(via_api=False) == 1
    actito = plans["actito-standard"]
    assert actito.meter("interactions").limit == DerivedLimit("profiles", Fraction(12))
    print_ = actito.meter("interactions_print").events[0]
    assert print_.where == (("channel", "print"),)
    clerk = plans["clerk"]
    assert clerk.ladder("search").up_to[2] == 25_000
    assert clerk.ladder("search").window == 3


def test_ratio_spellings() -> None:
    text = (
        MINIMAL + 'thresholds = [{ name = "a", ratio = "0.8" }, { name = "b", ratio = "90%" },'
        ' { name = "c", ratio = 2 }, { name = "d", ratio = "11/10" }]\n'
    )
    ratios = [t.ratio for t in parse_plan(text, source="x").meter("emails").thresholds]
    assert ratios == [Fraction(4, 5), Fraction(9, 10), Fraction(2), Fraction(11, 10)]


def test_load_from_files_and_directory(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text(MINIMAL)
    assert load_plan(tmp_path / "a.toml").id == "p"
    (tmp_path / "b.toml").write_text(MINIMAL)
    with pytest.raises(PlanError) as info:
        load_plans(tmp_path)
    assert str(tmp_path / "b.toml") in str(info.value)
    assert "already defined in" in str(info.value)
    (tmp_path / "c.toml").write_bytes(b"\xff\xfe")
    with pytest.raises(PlanError, match="not UTF-8"):
        load_plan(tmp_path / "c.toml")
    with pytest.raises(PlanError, match="cannot read"):
        load_plan(tmp_path / "missing.toml")


def _replace(old: str, new: str) -> str:
    assert old in MINIMAL
    return MINIMAL.replace(old, new)


BAD = [
    ('id = "p"\nname = ', "", "not valid TOML"),
    (MINIMAL.replace('id = "p"\n', ""), "id", "is required"),
    (_replace('id = "p"', 'id = "P Q"'), "id", "must match"),
    (_replace('name = "P"', "name = 3"), "name", "must be a string"),
    (_replace('name = "P"', 'name = "P"\ntimezone = "Mars/Base"'), "timezone", "unknown IANA"),
    (_replace('name = "P"', 'name = "P"\nlimt = 3'), "limt", "unknown key"),
    ('id = "p"\nname = "P"\n', "meters", "is required"),
    ('id = "p"\nname = "P"\nmeters = {}\n', "meters", "at least one meter"),
    (_replace("[meters.emails]", "[meters.Emails]"), "meters.Emails", "names must match"),
    (
        _replace('aggregation = "count"', 'aggregation = "avg"'),
        "meters.emails.aggregation",
        "must be one of",
    ),
    (_replace('period = "calendar_month"\n', ""), "meters.emails.period", "is required"),
    (
        _replace('period = "calendar_month"', 'period = "fortnight"'),
        "meters.emails.period",
        "must be one of",
    ),
    (_replace("limit = 100", "limit = -1"), "meters.emails.limit", "must be >= 0"),
    (_replace("limit = 100", "limit = 1.5"), "meters.emails.limit", "must be an integer"),
    (
        _replace("limit = 100", 'limit = { of = "ghost", times = 2 }'),
        "meters.emails.limit.of",
        "no meter named 'ghost'",
    ),
    (
        _replace("limit = 100", 'limit = { of = "emails", times = 0.5 }'),
        "meters.emails.limit.times",
        "floats are not exact",
    ),
    (
        _replace("limit = 100", 'limit = { of = "emails", times = 2, plus = 1 }'),
        "meters.emails.limit.plus",
        "unknown key",
    ),
    (_replace("limit = 100", "limit = 100\nlimitt = 5"), "meters.emails.limitt", "unknown key"),
    (
        _replace('events = [{ type = "email.sent" }]', "events = []"),
        "meters.emails.events",
        "is required",
    ),
    (
        _replace('{ type = "email.sent" }', '{ type = "email.bounced" }'),
        "meters.emails.events[0].type",
        "unknown event type",
    ),
    (
        _replace('{ type = "email.sent" }', '{ type = "email.sent", where = { kind = "promo" } }'),
        "meters.emails.events[0].where.kind",
        "must be one of: marketing, transactional",
    ),
    (
        _replace(
            '{ type = "email.sent" }', '{ type = "email.sent", where = { surface = "page" } }'
        ),
        "meters.emails.events[0].where.surface",
        "email.sent events have no field 'surface'",
    ),
    (
        _replace('{ type = "email.sent" }', '{ type = "email.sent", where = { contact = "x" } }'),
        "meters.emails.events[0].where.contact",
        "only enumerated and boolean fields",
    ),
    (
        _replace(
            '{ type = "email.sent" }',
            '{ type = "email.opened", where = { with_recommendations = "yes" } }',
        ),
        "meters.emails.events[0].where.with_recommendations",
        "must be true or false",
    ),
    (
        _replace('{ type = "email.sent" }', '{ type = "email.sent", effect = "remove" }'),
        "meters.emails.events[0].effect",
        "only gauges and balances go down",
    ),
    (
        _replace('{ type = "email.sent" }', '{ type = "email.sent", weight = 2 }'),
        "meters.emails.events[0].weight",
        "unknown key",
    ),
    (
        _replace('aggregation = "count"', 'aggregation = "sum"'),
        "meters.emails.events[0].type",
        "carry no quantity",
    ),
    (
        _replace('aggregation = "count"', 'aggregation = "distinct"').replace(
            "email.sent", "search.viewed"
        ),
        "meters.emails.events[0].type",
        "do not always carry data.contact",
    ),
    (
        _replace('aggregation = "count"', 'aggregation = "distinct"\nmember = "goal"'),
        "meters.emails.events[0].type",
        "do not always carry data.goal",
    ),
    (
        _replace('aggregation = "count"', 'aggregation = "count"\nmember = "contact"'),
        "meters.emails.member",
        "only distinct and gauge meters have members",
    ),
    (
        _replace('aggregation = "count"', 'aggregation = "gauge"'),
        "meters.emails.period",
        "not windowed",
    ),
    (
        _replace("limit = 100", "limit = 100\nexclude_suppressed = true"),
        "meters.emails.exclude_suppressed",
        "only distinct meters",
    ),
    (_replace("limit = 100\n", ""), None, None),  # no limit, default thresholds dropped: fine
    (
        _replace("limit = 100\n", 'thresholds = [{ name = "a", ratio = "1/2" }]\n'),
        "meters.emails.thresholds",
        "set limit first",
    ),
    (
        _replace("limit = 100", 'limit = 100\nthresholds = [{ name = "a", ratio = 0.8 }]'),
        "meters.emails.thresholds[0].ratio",
        "floats are not exact: write 0.8 as a string",
    ),
    (
        _replace("limit = 100", 'limit = 100\nthresholds = [{ name = "a", ratio = "-1/2" }]'),
        "meters.emails.thresholds[0].ratio",
        "must be positive",
    ),
    (
        _replace("limit = 100", 'limit = 100\nthresholds = [{ name = "a", ratio = "lots" }]'),
        "meters.emails.thresholds[0].ratio",
        "exact ratio",
    ),
    (
        _replace("limit = 100", 'limit = 100\nthresholds = [{ name = "a", ratio = "1/0" }]'),
        "meters.emails.thresholds[0].ratio",
        "exact ratio",
    ),
    (
        _replace(
            "limit = 100",
            'limit = 100\nthresholds = [{ name = "a", ratio = "1" }, { name = "a", ratio = "2" }]',
        ),
        "meters.emails.thresholds[1].name",
        "duplicate threshold name",
    ),
    (
        _replace(
            "limit = 100",
            'limit = 100\nthresholds = [{ name = "a", ratio = "1", colour = "green" }]',
        ),
        "meters.emails.thresholds[0].colour",
        "yellow or red",
    ),
    (
        _replace(
            "limit = 100",
            'limit = 100\nthresholds = [{ name = "a", ratio = "1", remind_every_days = 0 }]',
        ),
        "meters.emails.thresholds[0].remind_every_days",
        "must be >= 1",
    ),
    (
        _replace("limit = 100", 'limit = 100\nenforcement = { mode = "prepaid" }'),
        "meters.emails.enforcement.mode",
        "needs a balance meter",
    ),
    (
        _replace("limit = 100", 'limit = 100\nenforcement = { mode = "new_members" }'),
        "meters.emails.enforcement.mode",
        "needs a distinct meter",
    ),
    (
        _replace("limit = 100\n", 'enforcement = { mode = "limit" }\n'),
        "meters.emails.enforcement.mode",
        "needs a limit",
    ),
    (
        _replace("limit = 100", 'limit = 100\nenforcement = { origins = { api = "allow" } }'),
        "meters.emails.enforcement.origins",
        "limit mode only",
    ),
    (
        _replace(
            "limit = 100",
            'limit = 100\nenforcement = { mode = "limit", origins = { fax = "allow" } }',
        ),
        "meters.emails.enforcement.origins.fax",
        "unknown origin",
    ),
    (
        _replace(
            "limit = 100",
            'limit = 100\nenforcement = { mode = "limit", origins = { api = "maybe" } }',
        ),
        "meters.emails.enforcement.origins.api",
        "must be one of: allow, within_limit",
    ),
    (
        _replace(
            "limit = 100",
            'limit = 100\nenforcement = { mode = "limit", gates ='
            ' [{ action = "campaign.launch" }] }',
        ),
        "meters.emails.enforcement.gates[0].action",
        "must be one of",
    ),
    (
        _replace(
            "limit = 100",
            'limit = 100\nenforcement = { mode = "limit", gates ='
            ' [{ action = "campaign.send" }, { action = "campaign.send" }] }',
        ),
        "meters.emails.enforcement.gates[1].action",
        "duplicate gate",
    ),
    (MINIMAL + '[ladders.x]\nmeter = "ghost"\nup_to = [1]\n', "ladders.x.meter", "no meter"),
    (
        MINIMAL + '[ladders.x]\nmeter = "emails"\nup_to = [5, 5]\n',
        "ladders.x.up_to[1]",
        "greater than the tier before",
    ),
    (MINIMAL + '[ladders.x]\nmeter = "emails"\nup_to = []\n', "ladders.x.up_to", "is required"),
    (
        MINIMAL + '[ladders.x]\nmeter = "emails"\nup_to = [5]\nmonths = 0\n',
        "ladders.x.months",
        "must be >= 1",
    ),
    (
        MINIMAL + '[defaults]\nthresholds = [{ name = "a" }]\n',
        "defaults.thresholds[0].ratio",
        "is required",
    ),
    (MINIMAL + '[defaults]\ncolour = "red"\n', "defaults.colour", "unknown key"),
]


@pytest.mark.parametrize(("text", "field", "problem"), BAD)
def test_malformed_plans_name_file_field_and_problem(
    text: str, field: str | None, problem: str | None
) -> None:
    if field is None:
        parse_plan(text, source="plans/bad.toml")
        return
    with pytest.raises(PlanError) as info:
        parse_plan(text, source="plans/bad.toml")
    error = info.value
    assert error.source == "plans/bad.toml"
    assert error.field == field
    assert problem is not None
    assert problem in error.problem
    assert str(error).startswith(f"plans/bad.toml: {field or '<document>'}: ")


def test_balance_and_gauge_shapes() -> None:
    text = """
id = "b"
name = "B"
[meters.credits]
aggregation = "balance"
events = [{ type = "sms.credits_added" }, { type = "sms.sent", effect = "remove" }]
limit = 5
"""
    with pytest.raises(PlanError, match=r"meters\.credits\.limit: a balance is its own limit"):
        parse_plan(text, source="b.toml")
    ok = parse_plan(text.replace("limit = 5\n", ""), source="b.toml")
    assert ok.meter("credits").thresholds == ()


def test_derived_limit_must_point_at_a_fixed_limit() -> None:
    text = (
        MINIMAL
        + """
[meters.a]
aggregation = "count"
period = "day"
limit = { of = "emails", times = "1/2" }
events = [{ type = "email.sent" }]

[meters.b]
aggregation = "count"
period = "day"
limit = { of = "a", times = 2 }
events = [{ type = "email.sent" }]
"""
    )
    with pytest.raises(PlanError) as info:
        parse_plan(text, source="d.toml")
    assert info.value.field == "meters.b.limit.of"
    assert "fixed (integer) limit" in info.value.problem


def test_the_example_in_docs_plans_md_loads() -> None:
    doc = Path(__file__).resolve().parents[3] / "docs" / "plans.md"
    text = doc.read_text(encoding="utf-8")
    block = text.split("```toml\n", 1)[1].split("```", 1)[0]
    plan = parse_plan(block, source=str(doc))
    assert plan.id == "acme-pro"
    assert [m.name for m in plan.meters] == [
        "marketing_emails",
        "active_contacts",
        "contacts",
        "interactions",
        "sms_credits",
        "searches",
    ]


def test_ratio_text_with_a_huge_exponent_is_refused_not_computed() -> None:
    """Fraction("1e999999999") would compute 10**999999999 (minutes, gigabytes)."""
    text = (
        (EXAMPLES_DIR / "apsis.toml").read_text(encoding="utf-8").replace('"4/5"', '"1e999999999"')
    )
    with pytest.raises(PlanError, match=r"thresholds\[0\]\.ratio: must be an exact ratio"):
        parse_plan(text, source="apsis.toml")


@pytest.mark.parametrize(
    "nest", ["a = " + "[" * 3000 + "]" * 3000, "a = " + "{b = " * 3000 + "1" + "}" * 3000]
)
def test_deeply_nested_toml_is_a_plan_error(nest: str) -> None:
    with pytest.raises(PlanError, match="nested too deeply"):
        parse_plan(nest, source="deep.toml")


def test_an_integer_too_long_to_convert_is_a_plan_error() -> None:
    # tomllib raises ValueError (Python's 4,300-digit limit), not TOMLDecodeError.
    with pytest.raises(PlanError, match="not valid TOML: Exceeds the limit"):
        parse_plan("x = " + "9" * 5000, source="huge.toml")
