"""Admission: may this account do X now? Reads the state store, applies `metering.core.enforcement`.

One decision per item (a contact, an SMS, a campaign) with a stable reason code and the meter
that decided it. The rules are the domain's; what this module adds is which meters an action
touches (the plan's routes for the event type the action will produce, through the same field
filters the processor applies) and the order of checks:

1. counters and balances (held atomically, see below) and gates (read) decide first;
2. the survivors go to distinct meters, where `admit_members.lua` checks membership and the
   limit and reserves admitted new members in one atomic step (Act-On active contacts), so
   concurrent senders can never together overshoot. Members refused by step 1 are never
   reserved;
3. last, all-or-nothing batches (ActiveCampaign CSV imports) on gauges, where
   `admit_gauge.lua` admits every new member of the request or none, and holds the admitted
   members' places (not in the gauge itself: the processor counts the real contacts) until they
   are counted or `IMPORT_HOLD_MS` has passed, so two imports can never together overshoot.

Counters with a limit that refuses (any mode but advisory) and prepaid balances are decided
first, by a *hold* (`lua/holds.lua`, `metering.core.holds`): one atomic step admits the longest
prefix of the request's items that fits every such meter (`used + held + N <= limit`,
`balance - held >= N`) and holds those units under one hold id, so concurrent requests can
never together take the same last units. The producer puts the hold id on the resulting events
(`holdid`); the processor then replaces held units by counted ones in the step that counts them
(capture, `lua/apply.lua`). What a later meter refuses is given back at once (the hold shrinks
to the items finally admitted); what nobody uses expires after `hold_ttl_s` or is released
(`DELETE .../holds/{id}`). Advisory counters are read, not held (they never refuse). Adds to a
gauge one by one (manual, API, form) are decided against its level plus the places imports
hold, without holding any themselves.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from metering.api.views import MeterSlot, current_slot
from metering.core.accounts import Account, effective_limit
from metering.core.deltas import Aggregation
from metering.core.enforcement import (
    AddRule,
    Decision,
    EnforcementMode,
    GatedAction,
    Reason,
    decide_action,
    decide_add,
    decide_batch,
    decide_members,
    decide_prepaid,
    decide_use,
    fits,
)
from metering.core.events import ContactOrigin, EmailKind, EventType, UsageEvent
from metering.core.holds import HoldKind, HoldRequest
from metering.core.periods import DAY_MS, expire_at_s
from metering.core.plans import Effect, MeterSpec, Plan
from metering.core.ports import MemberVerdict
from metering.core.rfc3339 import format_ms
from metering.state.redis_store import RedisStateStore

IMPORT_HOLD_MS = 15 * 60 * 1000
"""How long an admitted import holds its places on a gauge while its contact.added events are
on their way to the processor (a place is freed as soon as the contact is counted)."""
_HARD = (EnforcementMode.NEW_MEMBERS, EnforcementMode.LIMIT, EnforcementMode.PREPAID)
_VERDICTS = {
    MemberVerdict.COUNTED: (True, Reason.ALREADY_COUNTED),
    MemberVerdict.SUPPRESSED: (True, Reason.SUPPRESSED_NOT_COUNTED),
    MemberVerdict.OVER_LIMIT: (True, Reason.ADVISORY_OVER_LIMIT),
    MemberVerdict.REFUSED: (False, Reason.NEW_MEMBER_OVER_LIMIT),
}


@dataclass
class Item:
    """The decisions of every meter for one item; the verdict is derived from them."""

    index: int
    item: str | None
    decisions: list[tuple[str, Decision, bool]] = field(default_factory=list)
    """(meter, decision, meter is enforcing)."""

    @property
    def allowed(self) -> bool:
        return all(d.allowed for _, d, _ in self.decisions)

    def verdict(self) -> tuple[bool, str, str | None]:
        """(allowed, reason, meter): the first refusal, else what an enforcing meter said,
        else an advisory over-limit note, else the first decision (no meter: no limit)."""
        for meter, d, _ in self.decisions:
            if not d.allowed:
                return False, d.reason.value, meter
        for meter, d, hard in self.decisions:
            if hard:
                return True, d.reason.value, meter
        for meter, d, _ in self.decisions:
            if d.reason is Reason.ADVISORY_OVER_LIMIT:
                return True, d.reason.value, meter
        if self.decisions:
            meter, d, _ = self.decisions[0]
            return True, d.reason.value, meter
        return True, Reason.NO_LIMIT.value, None

    def json(self) -> dict[str, Any]:
        allowed, reason, meter = self.verdict()
        return {
            "index": self.index,
            "item": self.item,
            "allowed": allowed,
            "reason": reason,
            "meter": meter,
        }


def _fed_by(plan: Plan, probe: UsageEvent, effect: Effect = Effect.ADD) -> list[MeterSpec]:
    """Meters an event like `probe` would feed with `effect` (plan order, each once)."""
    found: dict[str, MeterSpec] = {}
    for route in plan.routes(probe.type):
        if route.match.effect is effect and route.match.accepts(probe):
            found.setdefault(route.meter.name, route.meter)
    return list(found.values())


def _all_or_nothing(meter: MeterSpec, origin: ContactOrigin) -> bool:
    """Is adding through `origin` one all-or-nothing batch on this meter (a gauge in `limit`
    mode whose rule for the origin is `all_or_nothing`)?"""
    policy = meter.enforcement
    return (
        meter.aggregation is Aggregation.GAUGE
        and policy.mode is EnforcementMode.LIMIT
        and policy.origins.get(origin, AddRule.WITHIN_LIMIT) is AddRule.ALL_OR_NOTHING
    )


def _probe(account: str, event_type: EventType, now_ms: int, **data: Any) -> UsageEvent:
    return UsageEvent(
        id="admission-probe",
        source="api",
        type=event_type,
        account=account,
        time_ms=now_ms,
        contact="probe",
        **data,
    )


class Admission:
    """Admission checks of one account at one instant."""

    def __init__(
        self,
        store: RedisStateStore,
        account: Account,
        plan: Plan,
        *,
        now_ms: int,
        retention_days: int,
        hold_ttl_s: int = 900,
    ) -> None:
        self._store = store
        self._account = account
        self._plan = plan
        self._now = now_ms
        self._retention_ms = retention_days * DAY_MS
        self._summary: dict[str, dict[str, Any]] = {}
        self._hold_id = secrets.token_hex(12)
        self._hold_ends = now_ms + hold_ttl_s * 1000
        self._held: dict[str, tuple[str, int]] = {}
        """slot -> (meter, units per item) of the meters this request holds units on."""
        self._held_items = 0

    def _slot(self, meter: MeterSpec) -> tuple[MeterSlot, int | None]:
        slot = current_slot(self._account, self._plan, meter, self._now)
        limit = effective_limit(self._account, self._plan, meter.name, slot.key)
        return slot, limit

    async def _levels(
        self, meters: Sequence[MeterSpec]
    ) -> dict[str, tuple[MeterSlot, int, int | None]]:
        """Current slot, amount and effective limit of each meter (one round trip)."""
        slots = {m.name: self._slot(m) for m in meters}
        if not slots:
            return {}
        amounts = await self._store.read_amounts(
            self._account.id, [(m.name, slots[m.name][0].key, m.aggregation) for m in meters]
        )
        levels = {}
        for m in meters:
            slot, limit = slots[m.name]
            levels[m.name] = (slot, amounts[(m.name, slot.key)], limit)
            self._note(m, slot, amounts[(m.name, slot.key)], limit)
        return levels

    def _note(
        self, meter: MeterSpec, slot: MeterSlot, used: int, limit: int | None, *, held: int = 0
    ) -> None:
        """The meter as this request saw it: `held` places admitted imports hold (gauges),
        `fits` how many more units fit under the limit after those (null: no limit)."""
        self._summary[meter.name] = {
            "meter": meter.name,
            "period": slot.period.key if slot.period else None,
            "used": used,
            "held": held,
            "limit": limit,
            "fits": fits(used + held, limit),
            "enforcement": meter.enforcement.mode.value,
        }

    def fits(self, meter: str | None) -> int | None:
        """How many more units fit on `meter` (the one that decided), as this request saw it."""
        summary = self._summary.get(meter or "")
        return None if summary is None else summary["fits"]

    def meters(self) -> list[dict[str, Any]]:
        return list(self._summary.values())

    # -- sending messages to contacts ------------------------------------------------------

    async def messages(self, contacts: Sequence[str], kind: EmailKind) -> list[Item]:
        """Sending one e-mail of `kind` to each of `contacts`."""
        probe = _probe(self._account.id, EventType.EMAIL_SENT, self._now, kind=kind)
        meters = _fed_by(self._plan, probe)
        items = [Item(i, c) for i, c in enumerate(contacts)]
        counters = [m for m in meters if m.aggregation in (Aggregation.COUNT, Aggregation.SUM)]
        await self._consume(items, [(m, 1) for m in counters], [])
        for meter in meters:
            if meter.aggregation is Aggregation.DISTINCT:
                await self._distinct(meter, items)
        await self._settle(items)
        return items

    # -- counters and balances: holds ------------------------------------------------------

    async def _consume(
        self,
        items: list[Item],
        counters: Sequence[tuple[MeterSpec, int]],
        balances: Sequence[tuple[MeterSpec, int]],
    ) -> None:
        """Items of `per` units each on counter and balance meters. Refusing meters (a limit
        outside advisory mode, a prepaid balance) decide through one atomic hold; advisory
        ones from a read."""
        held: list[tuple[MeterSpec, MeterSlot, HoldRequest]] = []
        soft_counters: list[tuple[MeterSpec, int]] = []
        soft_balances: list[tuple[MeterSpec, int]] = []
        for meter, per in counters:
            slot, limit = self._slot(meter)
            if meter.enforcement.mode is EnforcementMode.ADVISORY or limit is None:
                soft_counters.append((meter, per))
            else:
                request = HoldRequest(meter.name, slot.key, HoldKind.LIMIT, limit, per)
                held.append((meter, slot, request))
        for meter, per in balances:
            slot, _ = self._slot(meter)
            if meter.enforcement.mode is EnforcementMode.PREPAID:
                request = HoldRequest(meter.name, slot.key, HoldKind.BALANCE, None, per)
                held.append((meter, slot, request))
            else:
                soft_balances.append((meter, per))
        levels = await self._levels([m for m, _ in soft_counters + soft_balances])
        for meter, per in soft_counters:
            _, used, limit = levels[meter.name]
            self._use(meter, items, used, limit, [per] * len(items))
        for meter, per in soft_balances:
            _, balance, _ = levels[meter.name]
            live = [item for item in items if item.allowed]
            decisions = decide_prepaid(balance=balance, amounts=[per] * len(live))
            for item, decided in zip(live, decisions, strict=True):
                advisory = Decision(True, Reason.ADVISORY_OVER_LIMIT)
                item.decisions.append((meter.name, decided if decided.allowed else advisory, False))
        if held:
            await self._hold(items, held)

    async def _hold(
        self, items: list[Item], held: list[tuple[MeterSpec, MeterSlot, HoldRequest]]
    ) -> None:
        live = [item for item in items if item.allowed]
        outcome = await self._store.hold(
            self._account.id,
            self._hold_id,
            [r for _, _, r in held],
            len(live),
            now_ms=self._now,
            expires_ms=self._hold_ends,
        )
        self._held_items = outcome.admitted
        for (meter, slot, request), level in zip(held, outcome.levels, strict=True):
            amounts = [request.per] * len(live)
            if request.kind is HoldKind.BALANCE:
                decisions = decide_prepaid(balance=level.used - level.held, amounts=amounts)
            else:
                decisions = decide_use(
                    meter.enforcement,
                    used=level.used + level.held,
                    limit=request.limit,
                    amounts=amounts,
                )
            for item, decision in zip(live, decisions, strict=True):
                item.decisions.append((meter.name, decision, True))
            own = outcome.admitted * request.per
            if own:
                self._held[request.slot] = (meter.name, request.per)
            self._note(meter, slot, level.used, request.limit, held=level.held + own)

    async def _settle(self, items: list[Item]) -> None:
        """Give back at once the units held for items a later meter refused."""
        admitted = sum(1 for item in items if item.allowed)
        if self._held and admitted < self._held_items:
            keep = {slot: admitted * per for slot, (_, per) in self._held.items()}
            await self._store.shrink_hold(
                self._account.id, self._hold_id, keep, now_ms=self._now
            )
            for meter, per in self._held.values():
                summary = self._summary[meter]
                summary["held"] -= (self._held_items - admitted) * per
                summary["fits"] = fits(summary["used"] + summary["held"], summary["limit"])
            self._held_items = admitted
            if admitted == 0:
                self._held = {}

    def hold(self) -> dict[str, Any] | None:
        """The hold this request placed (null: nothing held): its id goes on the usage
        events (`holdid`) so that the processor captures it."""
        if not self._held or self._held_items == 0:
            return None
        return {
            "id": self._hold_id,
            "expires_at": format_ms(self._hold_ends),
            "units": {m: self._held_items * per for m, per in self._held.values()},
        }

    def _use(
        self, meter: MeterSpec, items: list[Item], used: int, limit: int | None, amounts: list[int]
    ) -> None:
        """Counter items in order; only items still allowed consume."""
        live = [(item, amount) for item, amount in zip(items, amounts, strict=True) if item.allowed]
        decisions = decide_use(
            meter.enforcement, used=used, limit=limit, amounts=[a for _, a in live]
        )
        hard = meter.enforcement.mode in _HARD
        for (item, _), decision in zip(live, decisions, strict=True):
            item.decisions.append((meter.name, decision, hard))

    async def _distinct(self, meter: MeterSpec, items: list[Item], *, reserve: bool = True) -> None:
        slot, limit = self._slot(meter)
        assert slot.period is not None
        live = [item for item in items if item.allowed]
        hard = meter.enforcement.mode in _HARD
        if not live:
            used = (
                await self._store.read_amounts(
                    self._account.id, [(meter.name, slot.key, meter.aggregation)]
                )
            )[(meter.name, slot.key)]
            self._note(meter, slot, used, limit)
            return
        size, verdicts = await self._store.admit(
            self._account.id,
            meter.name,
            slot.key,
            [item.item or "" for item in live],
            limit=limit,
            hard=hard and reserve,
            period_start_ms=slot.period.start_ms if meter.exclude_suppressed else 0,
            period_end_ms=slot.period.end_ms,
            expire_at_s=expire_at_s(slot.period.end_ms, self._retention_ms),
        )
        for item, verdict in zip(live, verdicts, strict=True):
            if verdict is MemberVerdict.ADMITTED:
                reason = Reason.NO_LIMIT if limit is None else Reason.WITHIN_LIMIT
                decision = Decision(True, reason, item.item)
            elif verdict is MemberVerdict.OVER_LIMIT and hard:
                # evaluated without reserving, on an enforcing meter
                decision = Decision(False, Reason.NEW_MEMBER_OVER_LIMIT, item.item)
            else:
                allowed, reason = _VERDICTS[verdict]
                decision = Decision(allowed, reason, item.item)
            item.decisions.append((meter.name, decision, hard))
        self._note(meter, slot, size, limit)

    # -- adding contacts ---------------------------------------------------------------------

    async def contacts(self, members: Sequence[str], origin: ContactOrigin) -> list[Item]:
        """Adding `members` through `origin` (ActiveCampaign: per-origin rules).

        Gauges whose rule for `origin` is all or nothing (CSV imports) are decided last, after
        every other meter, so that their atomic hold is only taken for a batch nothing else
        refused: an import is never half admitted.
        """
        probe = _probe(self._account.id, EventType.CONTACT_ADDED, self._now, origin=origin)
        meters = _fed_by(self._plan, probe)
        items = [Item(i, c) for i, c in enumerate(members)]
        counters = [m for m in meters if m.aggregation in (Aggregation.COUNT, Aggregation.SUM)]
        await self._consume(items, [(m, 1) for m in counters], [])
        batches = [m for m in meters if _all_or_nothing(m, origin)]
        for meter in meters:
            if meter in batches:
                continue
            if meter.aggregation is Aggregation.GAUGE:
                await self._gauge(meter, items, origin)
            elif meter.aggregation is Aggregation.DISTINCT:
                await self._distinct(meter, items, reserve=False)
        for meter in batches:
            await self._gauge_batch(meter, items)
        await self._settle(items)
        return items

    async def _gauge(self, meter: MeterSpec, items: list[Item], origin: ContactOrigin) -> None:
        """Members one by one: present ones are already counted; new ones by the origin's rule
        against the level plus the places admitted imports still hold."""
        slot, limit = self._slot(meter)
        live = [item for item in items if item.allowed]
        seen = await self._store.admit_gauge(
            self._account.id,
            meter.name,
            [item.item or "" for item in live],
            limit=limit,
            whole=False,
            now_ms=self._now,
            hold_until_ms=self._now,
        )
        hard = meter.enforcement.mode in _HARD
        new: list[Item] = []
        for item, here, again in zip(live, seen.present, seen.repeated, strict=True):
            if here or again:
                item.decisions.append(
                    (meter.name, Decision(True, Reason.ALREADY_COUNTED, item.item), hard)
                )
            else:
                new.append(item)
        decisions = decide_add(
            meter.enforcement,
            origin=origin,
            used=seen.size + seen.held,
            limit=limit,
            members=[item.item or "" for item in new],
        )
        for item, decision in zip(new, decisions, strict=True):
            item.decisions.append((meter.name, decision, hard))
        self._note(meter, slot, seen.size, limit, held=seen.held)

    async def _gauge_batch(self, meter: MeterSpec, items: list[Item]) -> None:
        """All or nothing (a CSV import): the request's new members are admitted together and
        their places held for `IMPORT_HOLD_MS` in one atomic step, or none is."""
        slot, limit = self._slot(meter)
        refusal = next((d for item in items for _, d, _ in item.decisions if not d.allowed), None)
        whole = refusal is None
        seen = await self._store.admit_gauge(
            self._account.id,
            meter.name,
            [item.item or "" for item in items],
            limit=limit,
            whole=whole,
            now_ms=self._now,
            hold_until_ms=self._now + IMPORT_HOLD_MS,
        )
        held = seen.held + (seen.new if seen.admitted else 0)
        self._note(meter, slot, seen.size, limit, held=held)
        if refusal is not None:
            # Another meter refused part of the batch: the batch as a whole is refused.
            for item in items:
                if item.allowed:
                    item.decisions.append(
                        (meter.name, Decision(False, refusal.reason, item.item), True)
                    )
            return
        decided = decide_batch(
            meter.enforcement, used=seen.size + seen.held, limit=limit, new=seen.new
        )
        for item, here, again in zip(items, seen.present, seen.repeated, strict=True):
            if not seen.admitted:
                decision = Decision(False, Reason.BATCH_OVER_LIMIT, item.item)
            elif here or again:
                decision = Decision(True, Reason.ALREADY_COUNTED, item.item)
            else:
                decision = Decision(True, decided.reason, item.item)
            item.decisions.append((meter.name, decision, True))

    # -- campaigns and automations -------------------------------------------------------------

    async def campaign(
        self, action: GatedAction, recipients: int, via_api: bool, kind: EmailKind
    ) -> Item:
        """One campaign action (gates), plus its `recipients` e-mails on counter meters."""
        item = Item(0, action.value)
        gated = self._gated(action)
        probe = _probe(self._account.id, EventType.EMAIL_SENT, self._now, kind=kind)
        counters = []
        if action is GatedAction.CAMPAIGN_SEND and recipients > 0:
            counters = [
                m
                for m in _fed_by(self._plan, probe)
                if m.aggregation in (Aggregation.COUNT, Aggregation.SUM)
            ]
        levels = await self._levels(gated)
        for meter in gated:
            _, used, limit = levels[meter.name]
            decision = decide_action(
                meter.enforcement, action=action, used=used, limit=limit, via_api=via_api
            )
            item.decisions.append((meter.name, decision, True))
        await self._consume([item], [(m, recipients) for m in counters], [])
        return item

    async def automations(self, contacts: Sequence[str], via_api: bool) -> list[Item]:
        """Triggering an automation for each of `contacts` (ActiveCampaign: automations stop
        triggering at the limit, at 110 % when the contacts came in through the API). The gate
        depends on the level only, so the contacts of one request share its verdict."""
        items = [Item(i, c) for i, c in enumerate(contacts)]
        gated = self._gated(GatedAction.AUTOMATION_TRIGGER)
        levels = await self._levels(gated)
        for meter in gated:
            _, used, limit = levels[meter.name]
            decision = decide_action(
                meter.enforcement,
                action=GatedAction.AUTOMATION_TRIGGER,
                used=used,
                limit=limit,
                via_api=via_api,
            )
            for item in items:
                item.decisions.append(
                    (meter.name, Decision(decision.allowed, decision.reason, item.item), True)
                )
        return items

    def _gated(self, action: GatedAction) -> list[MeterSpec]:
        return [m for m in self._plan.meters if m.enforcement.gate(action) is not None]

    # -- SMS -----------------------------------------------------------------------------------

    async def sms(self, messages: int, segments: int) -> list[Item]:
        """Sending `messages` SMS of `segments` segments each (prepaid credits)."""
        items = [Item(i, None) for i in range(messages)]
        probe = _probe(self._account.id, EventType.SMS_SENT, self._now)
        spends = _fed_by(self._plan, probe, Effect.REMOVE)
        counters = [
            m
            for m in _fed_by(self._plan, probe)
            if m.aggregation in (Aggregation.COUNT, Aggregation.SUM)
        ]
        balances = [m for m in spends if m.aggregation is Aggregation.BALANCE]
        await self._consume(
            items,
            [(m, segments if m.aggregation is Aggregation.SUM else 1) for m in counters],
            [(m, segments) for m in balances],
        )
        return items


def members_rule(
    meter: MeterSpec, *, used: int, limit: int | None, counted: set[str], members: Sequence[str]
) -> list[Decision]:
    """The pure rule the Lua script implements (kept for tests that compare the two)."""
    return decide_members(
        meter.enforcement, used=used, limit=limit, counted=counted, suppressed=(), members=members
    )
