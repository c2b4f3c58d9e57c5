"""Reads: who am I, usage of an account, history of a meter, members of a period, tiers.

Usage reads the state store (amounts in one pipeline, last updates in one HGETALL) and shapes
them with `views.meter_usage`. History enumerates previous periods with
`metering.core.periods.previous_period` and reads their counters/sets, which the processor keeps
for `retention_days` after each period ends. Tier placements are computed from those same
closed-period counters (`metering.core.tiers.place`); gauges have no per-month totals until the
period-close rollups exist, which the response says (docs/api.md, "Tiers").

Every read of metered state goes through `ApiContext.state_reader`: a store without its marker
(Redis emptied) answers 503 rather than zeros (store_guard.py). Every answer carries
`freshness` (freshness.py): how far the processor got in the account's partition, and how many
records it has still to apply there.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from metering.api import validation as v
from metering.api.context import ApiContext
from metering.api.problems import Problem, conflict
from metering.api.responses import context, json_response
from metering.api.views import current_slot, meter_usage, past_periods, placement_json
from metering.core.accounts import effective_limit
from metering.core.deltas import Aggregation
from metering.core.plans import MeterSpec, Plan
from metering.core.rfc3339 import format_ms
from metering.core.status import colour_of
from metering.core.tiers import place

MAX_HISTORY = 36
MAX_MEMBERS_PAGE = 10_000


async def freshness_of(ctx: ApiContext, account: str) -> dict[str, Any] | None:
    """The `freshness` member of an answer about `account` (null without Kafka)."""
    return None if ctx.freshness is None else await ctx.freshness.of_account(account)


async def me(request: Request) -> Response:
    record = await context(request).principal(request)
    return json_response(
        {"key_id": record.id, "scope": record.scope.value, "account": record.account}
    )


async def usage(request: Request) -> Response:
    ctx = context(request)
    account_id = v.path(request, "account", v.ACCOUNT_ID)
    await ctx.state_reader(request, account_id)
    account, plan = ctx.lookup(account_id)
    now = ctx.clock_ms()
    slots = [current_slot(account, plan, meter, now) for meter in plan.meters]
    amounts = await ctx.store.read_amounts(
        account_id, [(s.meter.name, s.key, s.meter.aggregation) for s in slots]
    )
    updates = await ctx.store.last_updates(account_id)
    held = await ctx.store.held(account_id, [f"{s.meter.name}:{s.key}" for s in slots], now_ms=now)
    meters = [
        meter_usage(
            account,
            plan,
            slot,
            amounts[(slot.meter.name, slot.key)],
            last_update_ms=updates.get(f"{slot.meter.name}:{slot.key}"),
            now_ms=now,
            held=held[f"{slot.meter.name}:{slot.key}"],
        )
        for slot in slots
    ]
    return json_response(
        {
            "account": account.id,
            "plan": {"id": plan.id, "name": plan.name},
            "timezone": account.timezone or plan.timezone,
            "contract_date": None
            if account.contract_date is None
            else account.contract_date.isoformat(),
            "as_of": format_ms(now),
            "freshness": await freshness_of(ctx, account.id),
            "meters": meters,
        }
    )


def _meter(request: Request, plan: Plan) -> MeterSpec:
    name = v.path(request, "meter", v.METER_NAME)
    if not plan.has_meter(name):
        raise Problem(
            404, "unknown_meter", f"plan {plan.id!r} has no meter {name!r}", field="meter"
        )
    return plan.meter(name)


async def history(request: Request) -> Response:
    ctx = context(request)
    account_id = v.path(request, "account", v.ACCOUNT_ID)
    await ctx.state_reader(request, account_id)
    account, plan = ctx.lookup(account_id)
    meter = _meter(request, plan)
    count = v.query_int(request, "periods", minimum=1, maximum=MAX_HISTORY, default=12)
    if meter.period is None:
        raise conflict("meter", f"{meter.aggregation.value} meters have no periods, so no history")
    now = ctx.clock_ms()
    periods = past_periods(account, plan, meter, now, count)
    amounts = await ctx.store.read_amounts(
        account_id, [(meter.name, p.key, meter.aggregation) for p in periods]
    )
    rows = []
    for period in periods:
        used = amounts[(meter.name, period.key)]
        limit = effective_limit(account, plan, meter.name, period.key)
        rows.append(
            {
                "period": period.key,
                "start": format_ms(period.start_ms),
                "end": format_ms(period.end_ms),
                "used": used,
                "limit": limit,
                "status": colour_of(used, limit, meter.thresholds).value,
                "closed": period.end_ms <= now,
            }
        )
    return json_response(
        {
            "account": account_id,
            "meter": meter.name,
            "kind": meter.period.value,
            "freshness": await freshness_of(ctx, account_id),
            "periods": rows,
        }
    )


async def members(request: Request) -> Response:
    ctx = context(request)
    account_id = v.path(request, "account", v.ACCOUNT_ID)
    await ctx.state_reader(request, account_id)
    account, plan = ctx.lookup(account_id)
    meter = _meter(request, plan)
    period = v.query_text(request, "period", v.PERIOD_KEY)
    offset = v.query_int(request, "offset", minimum=0, maximum=10**9, default=0)
    limit = v.query_int(request, "limit", minimum=1, maximum=MAX_MEMBERS_PAGE, default=1000)
    if meter.aggregation is not Aggregation.DISTINCT:
        raise conflict("meter", "only distinct meters keep the members of each period")
    if period is None:
        period = current_slot(account, plan, meter, ctx.clock_ms()).key
    found = sorted(await ctx.store.members(account_id, meter.name, period))
    return json_response(
        {
            "account": account_id,
            "meter": meter.name,
            "period": period,
            "count": len(found),
            "freshness": await freshness_of(ctx, account_id),
            "offset": offset,
            "members": found[offset : offset + limit],
        }
    )


async def tiers(request: Request) -> Response:
    ctx = context(request)
    account_id = v.path(request, "account", v.ACCOUNT_ID)
    await ctx.state_reader(request, account_id)
    account, plan = ctx.lookup(account_id)
    now = ctx.clock_ms()
    result: list[dict[str, Any]] = []
    for ladder in plan.ladders:
        meter = plan.meter(ladder.meter)
        if meter.period is None:
            result.append(
                {
                    "ladder": ladder.name,
                    "meter": meter.name,
                    "bounds": list(ladder.up_to),
                    "source": "unavailable",
                    "note": "gauges have no monthly totals until period-close rollups exist",
                    "placement": None,
                }
            )
            continue
        closed = past_periods(account, plan, meter, now, ladder.window + 1)[:-1]
        amounts = await ctx.store.read_amounts(
            account_id, [(meter.name, p.key, meter.aggregation) for p in closed]
        )
        months = {p.key: amounts[(meter.name, p.key)] for p in closed}
        placement = place(ladder, list(months.values()))
        result.append(
            {
                "ladder": ladder.name,
                "meter": meter.name,
                "bounds": list(ladder.up_to),
                "source": "counters",
                "note": None,
                "placement": placement_json(placement, meter.name, months),
            }
        )
    return json_response(
        {
            "account": account_id,
            "freshness": await freshness_of(ctx, account_id),
            "ladders": result,
        }
    )


ROUTES = [
    Route("/v1/me", me, methods=["GET"]),
    Route("/v1/accounts/{account}/usage", usage, methods=["GET"]),
    Route("/v1/accounts/{account}/meters/{meter}/history", history, methods=["GET"]),
    Route("/v1/accounts/{account}/meters/{meter}/members", members, methods=["GET"]),
    Route("/v1/accounts/{account}/tiers", tiers, methods=["GET"]),
]
