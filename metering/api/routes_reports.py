"""Reports across accounts for the people who manage them: the wrong-tier report.

Clerk.io: "if you are on the wrong tier, your Customer Success Manager will reach out". The
report lists the accounts whose last complete placement (the average of the last three closed
months, decided by the period closer from frozen totals, ADR 0004) is another tier than the one
they pay for (`paid_tiers` in the account), with the months behind it. It reads the placements
the closer stored, so it agrees with the tier events billing receives; the running month never
counts (it is not over).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from metering.api.responses import context, json_response
from metering.core.rollups import decimal_text, fraction_text
from metering.core.tiers import TierMismatch, tier_mismatches

_BATCH = 500
"""Accounts whose placements are read in one Redis round trip."""


async def list_tier_mismatches(request: Request) -> Response:
    ctx = context(request)
    await ctx.store_guard.require()
    await ctx.admin(request)
    paying = []
    for account in ctx.directory.accounts():
        plan = ctx.directory.plan(account.plan_id)
        if account.paid_tiers and plan is not None and plan.ladders:
            paying.append((account, plan))
    found: list[TierMismatch] = []
    for start in range(0, len(paying), _BATCH):
        batch = paying[start : start + _BATCH]
        placements = await ctx.store.placements_of([account.id for account, _ in batch])
        for account, plan in batch:
            found.extend(
                tier_mismatches(
                    account.id, account.paid_tiers, plan.ladders, placements[account.id]
                )
            )
    return json_response({"checked": len(paying), "mismatches": [mismatch_json(m) for m in found]})


def mismatch_json(mismatch: TierMismatch) -> dict[str, Any]:
    return {
        "account": mismatch.account,
        "ladder": mismatch.ladder,
        "meter": mismatch.meter,
        "paid_up_to": mismatch.paid_up_to,
        "placed_up_to": mismatch.placed_up_to,
        "direction": mismatch.direction,
        "average": fraction_text(mismatch.average),
        "average_display": decimal_text(mismatch.average),
        "as_of": mismatch.as_of,
        "months": [{"period": m.period, "total": m.total} for m in mismatch.months],
    }


ROUTES = [
    Route("/v1/admin/tier-mismatches", list_tier_mismatches, methods=["GET"]),
]
