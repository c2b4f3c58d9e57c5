"""Reading plan files (TOML) into validated `Plan`s; every error names file, field and problem.

Why TOML: `tomllib` is in the standard library, people can comment their plans, and it has
no implicit typing surprises. Unknown keys are errors (a misspelt `limt` must not silently
mean "no limit"). Ratios are written as exact strings (`"4/5"`, `"0.8"`, `"80%"`) or integers;
TOML floats are refused because 0.8 as a float is not 4/5. The format is documented in
docs/plans.md; the shipped examples are in `metering/core/plans_examples/`.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from enum import StrEnum
from fractions import Fraction
from pathlib import Path
from types import MappingProxyType
from typing import NoReturn, TypeVar

from metering.core.deltas import Aggregation
from metering.core.enforcement import (
    ADVISORY,
    AddRule,
    EnforcementMode,
    EnforcementPolicy,
    Gate,
    GatedAction,
)
from metering.core.errors import PeriodError, PlanError
from metering.core.events import DATA_FIELDS, ContactOrigin, DataField, EventType
from metering.core.periods import DAY_MS, PeriodKind, check_timezone
from metering.core.plans import (
    DerivedLimit,
    Effect,
    EventMatch,
    FixedLimit,
    Limit,
    MeterSpec,
    Plan,
)
from metering.core.thresholds import DEFAULT_THRESHOLDS, Colour, Threshold
from metering.core.tiers import DEFAULT_WINDOW, Ladder

EXAMPLES_DIR = Path(__file__).with_name("plans_examples")
"""One example plan per seed vendor model, shipped inside the package."""

_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")
_PLAN_ID = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
_MISSING = object()
_RATIO = re.compile(r"[+-]?(\d{1,18}(\.\d{0,18})?|\.\d{1,18})%?|[+-]?\d{1,18}/\d{1,18}")
"""What `_ratio` accepts as text: a decimal (optionally a percentage) or a fraction."""
_WINDOWED = {Aggregation.COUNT, Aggregation.SUM, Aggregation.DISTINCT}
_MEMBERED = {Aggregation.DISTINCT, Aggregation.GAUGE}


E = TypeVar("E", bound=StrEnum)


def _values(enum: type[StrEnum]) -> set[str]:
    return {member.value for member in enum}


def _choices(enum: type[StrEnum]) -> str:
    return ", ".join(member.value for member in enum)


class _Table:
    """A TOML table being read: typed getters that know their dotted path, and unknown keys."""

    def __init__(self, source: str, path: str, data: Mapping[str, object]) -> None:
        self.source = source
        self.path = path
        self.data = data
        self.used: set[str] = set()

    def where(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def fail(self, key: str, problem: str) -> NoReturn:
        raise PlanError(self.source, self.where(key) if key else self.path, problem)

    def raw(self, key: str) -> object:
        self.used.add(key)
        return self.data.get(key, _MISSING)

    def has(self, key: str) -> bool:
        return key in self.data

    def text(self, key: str, default: str | None = None) -> str:
        value = self.raw(key)
        if value is _MISSING:
            if default is None:
                self.fail(key, "is required")
            return default
        if not isinstance(value, str):
            self.fail(key, f"must be a string, got {_kind(value)}")
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self.raw(key)
        if value is _MISSING:
            return default
        if not isinstance(value, bool):
            self.fail(key, f"must be true or false, got {_kind(value)}")
        return value

    def integer(self, key: str, *, minimum: int, default: int | None = None) -> int:
        value = self.raw(key)
        if value is _MISSING:
            if default is None:
                self.fail(key, "is required")
            return default
        return _integer(self, key, value, minimum)

    def table(self, key: str) -> _Table | None:
        value = self.raw(key)
        return None if value is _MISSING else _as_table(self, key, value)

    def required_table(self, key: str) -> _Table:
        table = self.table(key)
        if table is None:
            self.fail(key, "is required")
        return table

    def array(self, key: str) -> list[object] | None:
        value = self.raw(key)
        if value is _MISSING:
            return None
        if not isinstance(value, list):
            self.fail(key, f"must be an array, got {_kind(value)}")
        return value

    def choice(self, key: str, enum: type[E], default: E | None = None) -> E:
        value = self.raw(key)
        if value is _MISSING:
            if default is None:
                self.fail(key, f"is required (one of: {_choices(enum)})")
            return default
        if not isinstance(value, str) or value not in _values(enum):
            self.fail(key, f"must be one of: {_choices(enum)}; got {value!r}")
        return enum(value)

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            self.fail(unknown[0], f"unknown key (allowed: {', '.join(sorted(self.used))})")


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    names = {
        str: "a string",
        int: "an integer",
        float: "a float",
        list: "an array",
        dict: "a table",
    }
    return names.get(type(value), type(value).__name__)


def _integer(table: _Table, key: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        table.fail(key, f"must be an integer, got {_kind(value)}")
    if value < minimum:
        table.fail(key, f"must be >= {minimum}, got {value}")
    return value


def _as_table(parent: _Table, key: str, value: object) -> _Table:
    if not isinstance(value, dict):
        parent.fail(key, f"must be a table, got {_kind(value)}")
    return _Table(parent.source, parent.where(key), value)


def _ratio(table: _Table, key: str) -> Fraction:
    """An exact positive ratio: an integer, or a string like "4/5", "0.8" or "80%"."""
    value = table.raw(key)
    if value is _MISSING:
        table.fail(key, 'is required (an exact ratio such as "4/5", "0.8" or "80%")')
    if isinstance(value, float):
        table.fail(key, f'floats are not exact: write {value} as a string, e.g. "{value}"')
    if isinstance(value, bool) or not isinstance(value, int | str):
        table.fail(key, f'must be an exact ratio such as "4/5", got {_kind(value)}')
    if isinstance(value, str) and not _RATIO.fullmatch(value.strip()):
        # Also keeps "1e999999999" out of Fraction(), which would compute 10**999999999.
        table.fail(key, f'must be an exact ratio such as "4/5", "0.8" or "80%"; got {value!r}')
    try:
        if isinstance(value, str) and value.strip().endswith("%"):
            ratio = Fraction(value.strip()[:-1]) / 100
        else:
            ratio = Fraction(value)
    except (ValueError, ZeroDivisionError):
        table.fail(key, f'must be an exact ratio such as "4/5", "0.8" or "80%"; got {value!r}')
    if ratio <= 0:
        table.fail(key, f"must be positive, got {value!r}")
    return ratio


# --- plans ---------------------------------------------------------------------------------


def parse_plan(text: str, *, source: str) -> Plan:
    """Parse TOML `text`; `source` names it in errors (usually the file path).

    Every failure is a `PlanError`: `tomllib` raises RecursionError on deeply nested arrays or
    inline tables (a few hundred levels) and ValueError on an integer of thousands of digits,
    and a plan record on the accounts topic may carry anything, so these become one-line
    errors instead of killing the caller."""
    if not isinstance(text, str):
        raise PlanError(source, "", f"a plan is TOML text, got {_kind(text)}")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PlanError(source, "", f"not valid TOML: {exc}") from exc
    except RecursionError:
        raise PlanError(source, "", "not valid TOML: nested too deeply") from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts (4,300)
        raise PlanError(source, "", f"not valid TOML: {exc}") from None
    return plan_from_mapping(data, source=source)


def load_plan(path: str | Path) -> Plan:
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise PlanError(str(path), "", f"cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise PlanError(str(path), "", f"not UTF-8: {exc.reason}") from exc
    return parse_plan(text, source=str(path))


def load_plans(directory: str | Path) -> dict[str, Plan]:
    """Every `*.toml` plan in `directory`, by plan id (ids must be unique)."""
    plans: dict[str, Plan] = {}
    sources: dict[str, str] = {}
    for path in sorted(Path(directory).glob("*.toml")):
        plan = load_plan(path)
        if plan.id in plans:
            raise PlanError(
                str(path), "id", f"{plan.id!r} is already defined in {sources[plan.id]}"
            )
        plans[plan.id] = plan
        sources[plan.id] = str(path)
    return plans


def example_plans() -> dict[str, Plan]:
    """The example plans shipped with the package (one per seed vendor model)."""
    return load_plans(EXAMPLES_DIR)


def plan_from_mapping(data: Mapping[str, object], *, source: str) -> Plan:
    """Validate a parsed plan document (a TOML or JSON object) and build the `Plan`."""
    root = _Table(source, "", data)
    plan_id = root.text("id")
    if not _PLAN_ID.fullmatch(plan_id):
        root.fail("id", f"must match {_PLAN_ID.pattern}, got {plan_id!r}")
    name = root.text("name")
    description = root.text("description", "")
    timezone = root.text("timezone", "UTC")
    try:
        check_timezone(timezone)
    except PeriodError:
        root.fail("timezone", f"unknown IANA timezone {timezone!r}")
    defaults: tuple[Threshold, ...] = DEFAULT_THRESHOLDS
    defaults_table = root.table("defaults")
    if defaults_table is not None:
        if defaults_table.has("thresholds"):
            defaults = _thresholds(defaults_table)
        defaults_table.done()
    meters_table = root.required_table("meters")
    meters = tuple(_meter(meters_table, name, defaults) for name in meters_table.data)
    if not meters:
        root.fail("meters", "a plan needs at least one meter")
    _check_derived_limits(meters_table, meters)
    ladders_table = root.table("ladders")
    ladders: tuple[Ladder, ...] = ()
    if ladders_table is not None:
        known = {meter.name for meter in meters}
        ladders = tuple(_ladder(ladders_table, name, known) for name in ladders_table.data)
    root.done()
    return Plan(
        id=plan_id,
        name=name,
        meters=meters,
        timezone=timezone,
        ladders=ladders,
        description=description,
    )


def _named(parent: _Table, name: str) -> _Table:
    if not _NAME.fullmatch(name):
        parent.fail(name, f"names must match {_NAME.pattern}")
    return _as_table(parent, name, parent.raw(name))


# --- meters --------------------------------------------------------------------------------


def _meter(parent: _Table, name: str, default_thresholds: tuple[Threshold, ...]) -> MeterSpec:
    node = _named(parent, name)
    description = node.text("description", "")
    aggregation = node.choice("aggregation", Aggregation)
    period: PeriodKind | None = None
    if aggregation in _WINDOWED:
        period = node.choice("period", PeriodKind)
    elif node.has("period"):
        node.fail("period", f"{aggregation.value} meters are not windowed: remove period")
    member_field = "contact"
    if aggregation in _MEMBERED:
        member_field = node.text("member", "contact")
    elif node.has("member"):
        node.fail("member", f"only distinct and gauge meters have members, not {aggregation.value}")
    exclude_suppressed = node.flag("exclude_suppressed", default=False)
    if exclude_suppressed and aggregation is not Aggregation.DISTINCT:
        node.fail("exclude_suppressed", "only distinct meters can exclude suppressed members")
    events = node.array("events")
    if not events:
        node.fail("events", "is required: a non-empty array of {type = ...} tables")
    matches = tuple(
        _event_match(node, f"events[{i}]", item, aggregation, member_field)
        for i, item in enumerate(events)
    )
    limit = _limit(node, aggregation)
    if node.has("thresholds"):
        thresholds = _thresholds(node)
        if thresholds and limit is None:
            node.fail("thresholds", "thresholds are ratios of a limit: set limit first")
    else:
        thresholds = default_thresholds if limit is not None else ()
    enforcement_table = node.table("enforcement")
    enforcement = ADVISORY
    if enforcement_table is not None:
        enforcement = _enforcement(enforcement_table, aggregation, limit)
    node.done()
    return MeterSpec(
        name=name,
        aggregation=aggregation,
        events=matches,
        period=period,
        limit=limit,
        thresholds=thresholds,
        enforcement=enforcement,
        member_field=member_field,
        exclude_suppressed=exclude_suppressed,
        description=description,
    )


def _event_match(
    parent: _Table, key: str, value: object, aggregation: Aggregation, member_field: str
) -> EventMatch:
    node = _as_table(parent, key, value)
    type_name = node.text("type")
    try:
        event_type = EventType(type_name)
    except ValueError:
        node.fail("type", f"unknown event type {type_name!r} (one of: {_choices(EventType)})")
    fields = {spec.name: spec for spec in DATA_FIELDS[event_type]}
    where_table = node.table("where")
    where = () if where_table is None else _where(where_table, type_name, fields)
    effect = node.choice("effect", Effect, Effect.ADD)
    if effect is Effect.REMOVE and aggregation not in (Aggregation.GAUGE, Aggregation.BALANCE):
        node.fail("effect", f"only gauges and balances go down, not {aggregation.value} meters")
    if aggregation in (Aggregation.SUM, Aggregation.BALANCE) and "quantity" not in fields:
        node.fail("type", f"{type_name} events carry no quantity to {aggregation.value}")
    if aggregation in _MEMBERED:
        member = fields.get(member_field)
        if member is None or not member.required:
            node.fail("type", f"{type_name} events do not always carry data.{member_field}")
    node.done()
    return EventMatch(event_type, where, effect)


def _where(
    table: _Table, type_name: str, fields: Mapping[str, DataField]
) -> tuple[tuple[str, str | bool], ...]:
    where: list[tuple[str, str | bool]] = []
    for field_name in table.data:
        wanted = table.raw(field_name)
        spec = fields.get(field_name)
        if spec is None:
            table.fail(
                field_name,
                f"{type_name} events have no field {field_name!r} "
                f"(fields: {', '.join(fields) or 'none'})",
            )
        if spec.boolean:
            if not isinstance(wanted, bool):
                table.fail(field_name, f"must be true or false, got {_kind(wanted)}")
            where.append((field_name, wanted))
        elif spec.values and isinstance(wanted, str) and wanted in spec.values:
            where.append((field_name, wanted))
        elif spec.values:
            table.fail(field_name, f"must be one of: {', '.join(spec.values)}")
        else:
            table.fail(field_name, "only enumerated and boolean fields can filter")
    return tuple(where)


def _limit(node: _Table, aggregation: Aggregation) -> Limit | None:
    value = node.raw("limit")
    if value is _MISSING:
        return None
    if aggregation is Aggregation.BALANCE:
        node.fail("limit", "a balance is its own limit (prepaid credits): remove limit")
    if isinstance(value, dict):
        table = _as_table(node, "limit", value)
        meter = table.text("of")
        factor = _ratio(table, "times")
        table.done()
        return DerivedLimit(meter, factor)
    if not isinstance(value, int) or isinstance(value, bool):
        node.fail("limit", f'must be an integer or {{of = "meter", times = N}}, got {_kind(value)}')
    return FixedLimit(_integer(node, "limit", value, 0))


def _check_derived_limits(parent: _Table, meters: tuple[MeterSpec, ...]) -> None:
    by_name = {meter.name: meter for meter in meters}
    for meter in meters:
        if isinstance(meter.limit, DerivedLimit):
            base = by_name.get(meter.limit.meter)
            where = f"{meter.name}.limit.of"
            if base is None:
                parent.fail(where, f"no meter named {meter.limit.meter!r}")
            if not isinstance(base.limit, FixedLimit):
                parent.fail(where, f"meter {base.name!r} must have a fixed (integer) limit")


def _thresholds(node: _Table) -> tuple[Threshold, ...]:
    result: list[Threshold] = []
    for i, item in enumerate(node.array("thresholds") or ()):
        table = _as_table(node, f"thresholds[{i}]", item)
        name = table.text("name")
        if not _NAME.fullmatch(name):
            table.fail("name", f"must match {_NAME.pattern}, got {name!r}")
        if any(t.name == name for t in result):
            table.fail("name", f"duplicate threshold name {name!r}")
        ratio = _ratio(table, "ratio")
        colour = table.choice("colour", Colour, Colour.YELLOW)
        if colour is Colour.GREEN:
            table.fail("colour", "a threshold turns the status yellow or red, not green")
        remind_ms = None
        if table.has("remind_every_days"):
            remind_ms = table.integer("remind_every_days", minimum=1) * DAY_MS
        result.append(
            Threshold(
                name=name,
                ratio=ratio,
                strict=table.flag("strict", default=False),
                colour=colour,
                notify=table.flag("notify", default=True),
                remind_every_ms=remind_ms,
            )
        )
        table.done()
    return tuple(result)


def _enforcement(node: _Table, aggregation: Aggregation, limit: Limit | None) -> EnforcementPolicy:
    mode = node.choice("mode", EnforcementMode, EnforcementMode.ADVISORY)
    if mode is EnforcementMode.PREPAID and aggregation is not Aggregation.BALANCE:
        node.fail("mode", "prepaid enforcement needs a balance meter")
    if aggregation is Aggregation.BALANCE and mode not in (
        EnforcementMode.PREPAID,
        EnforcementMode.ADVISORY,
    ):
        node.fail("mode", "a balance meter is enforced as prepaid or advisory")
    if mode is EnforcementMode.NEW_MEMBERS and aggregation is not Aggregation.DISTINCT:
        node.fail("mode", "new_members enforcement needs a distinct meter")
    if mode in (EnforcementMode.NEW_MEMBERS, EnforcementMode.LIMIT) and limit is None:
        node.fail("mode", f"{mode.value} enforcement needs a limit")
    origins: Mapping[ContactOrigin, AddRule] = MappingProxyType({})
    origins_table = node.table("origins")
    if origins_table is not None:
        if mode is not EnforcementMode.LIMIT:
            node.fail("origins", "origins apply in limit mode only")
        origins = _origins(origins_table)
    gates: tuple[Gate, ...] = ()
    if node.has("gates"):
        if mode is not EnforcementMode.LIMIT:
            node.fail("gates", "gates apply in limit mode only")
        gates = _gates(node)
    node.done()
    return EnforcementPolicy(mode, origins, gates)


def _origins(table: _Table) -> Mapping[ContactOrigin, AddRule]:
    origins: dict[ContactOrigin, AddRule] = {}
    for origin_name in table.data:
        rule_name = table.raw(origin_name)
        try:
            origin = ContactOrigin(origin_name)
        except ValueError:
            table.fail(origin_name, f"unknown origin (one of: {_choices(ContactOrigin)})")
        if not isinstance(rule_name, str) or rule_name not in _values(AddRule):
            table.fail(origin_name, f"must be one of: {_choices(AddRule)}")
        origins[origin] = AddRule(rule_name)
    return MappingProxyType(origins)


def _gates(node: _Table) -> tuple[Gate, ...]:
    gates: list[Gate] = []
    for i, item in enumerate(node.array("gates") or ()):
        table = _as_table(node, f"gates[{i}]", item)
        action_name = table.text("action")
        try:
            action = GatedAction(action_name)
        except ValueError:
            table.fail("action", f"must be one of: {_choices(GatedAction)}")
        if any(gate.action is action for gate in gates):
            table.fail("action", f"duplicate gate for {action.value}")
        stop_at = _ratio(table, "stop_at") if table.has("stop_at") else Fraction(1)
        via_api = _ratio(table, "stop_at_via_api") if table.has("stop_at_via_api") else None
        table.done()
        gates.append(Gate(action, stop_at, via_api))
    return tuple(gates)


# --- ladders -------------------------------------------------------------------------------


def _ladder(parent: _Table, name: str, meters: set[str]) -> Ladder:
    node = _named(parent, name)
    meter = node.text("meter")
    if meter not in meters:
        node.fail("meter", f"no meter named {meter!r}")
    window = node.integer("months", minimum=1, default=DEFAULT_WINDOW)
    bounds = node.array("up_to")
    if not bounds:
        node.fail("up_to", "is required: a non-empty array of increasing integers")
    up_to: list[int] = []
    for i, bound in enumerate(bounds):
        value = _integer(node, f"up_to[{i}]", bound, 1)
        if up_to and value <= up_to[-1]:
            node.fail(f"up_to[{i}]", f"must be greater than the tier before ({up_to[-1]})")
        up_to.append(value)
    node.done()
    return Ladder(name=name, meter=meter, up_to=tuple(up_to), window=window)
