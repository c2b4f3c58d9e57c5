"""Accounts: which plan, which timezone and contract date, and their own limit changes.

A plan says what a license allows; an account says what this customer bought on top of it:

- `limit_overrides`: permanent changes (an upgraded audience size, a bigger contact limit);
- `extensions`: extra allowance for one period only (APSIS: "top up your account with a
  specific number of sendings just for that month"), keyed by (meter, period key) so it
  expires by itself when the period ends;
- `paid_tiers`: the tier the customer pays for on each tier ladder (Clerk.io), which the
  wrong-tier report compares with where the 3-month average places the account.

The effective limit of a meter in a period is the override (or the plan's limit), plus the
period's extension.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from types import MappingProxyType

from metering.core.errors import AccountError, PeriodError
from metering.core.periods import check_timezone
from metering.core.plans import FixedLimit, Plan


def _empty() -> Mapping[str, int]:
    return MappingProxyType({})


def _no_extensions() -> Mapping[tuple[str, str], int]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    plan_id: str
    timezone: str | None = None
    """IANA timezone of the account's periods; None: the plan's default."""
    contract_date: date | None = None
    """Anchor of billing periods (needed when a meter uses billing_month/billing_year)."""
    limit_overrides: Mapping[str, int] = field(default_factory=_empty)
    """Meter -> limit, replacing the plan's (permanent change)."""
    extensions: Mapping[tuple[str, str], int] = field(default_factory=_no_extensions)
    """(meter, period key) -> extra allowance for that period only (temporary extension)."""
    paid_tiers: Mapping[str, int] = field(default_factory=_empty)
    """Ladder -> bound of the tier paid for ("up to 25,000" is 25000); one of its `up_to`."""


def timezone_of(account: Account, plan: Plan) -> str:
    return account.timezone or plan.timezone


def base_limit(account: Account, plan: Plan, meter: str) -> int | None:
    """The meter's limit without temporary extensions (plan limit or permanent override)."""
    override = account.limit_overrides.get(meter)
    if override is not None:
        return override
    limit = plan.meter(meter).limit
    if limit is None:
        return None
    if isinstance(limit, FixedLimit):
        return limit.amount
    base = base_limit(account, plan, limit.meter)
    return None if base is None else int(base * limit.factor)  # int() rounds Fractions down


def effective_limit(account: Account, plan: Plan, meter: str, period_key: str) -> int | None:
    """The limit of `meter` in period `period_key`: base limit plus that period's extension."""
    limit = base_limit(account, plan, meter)
    if limit is None:
        return None
    return limit + account.extensions.get((meter, period_key), 0)


def check_account(account: Account, plan: Plan) -> None:
    """Raise `AccountError` when the account's settings do not fit its plan."""
    if account.plan_id != plan.id:
        raise AccountError(account.id, "plan_id", f"is {account.plan_id!r}, not {plan.id!r}")
    if account.timezone is not None:
        try:
            check_timezone(account.timezone)
        except PeriodError as exc:
            raise AccountError(account.id, "timezone", exc.problem) from exc
    if account.contract_date is None:
        for meter in plan.meters:
            if meter.period is not None and meter.period.anchored:
                raise AccountError(
                    account.id, "contract_date", f"required by meter {meter.name} (billing period)"
                )
    for name, amount in account.limit_overrides.items():
        _check_amount(account, plan, f"limit_overrides.{name}", name, amount)
    for (name, period_key), amount in account.extensions.items():
        _check_amount(account, plan, f"extensions.{name}.{period_key}", name, amount)
    ladders = {ladder.name: ladder for ladder in plan.ladders}
    for name, up_to in account.paid_tiers.items():
        path = f"paid_tiers.{name}"
        ladder = ladders.get(name)
        if ladder is None:
            known = ", ".join(ladders) or "none"
            raise AccountError(
                account.id, path, f"plan {plan.id!r} has no ladder {name!r} ({known})"
            )
        if up_to not in ladder.up_to:
            bounds = ", ".join(str(b) for b in ladder.up_to)
            raise AccountError(account.id, path, f"{up_to} is not a tier of it (up to: {bounds})")


def _check_amount(account: Account, plan: Plan, path: str, meter: str, amount: int) -> None:
    if not plan.has_meter(meter):
        raise AccountError(account.id, path, f"plan {plan.id!r} has no meter {meter!r}")
    if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
        raise AccountError(account.id, path, "must be an integer >= 0")
