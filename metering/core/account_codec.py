"""Accounts as JSON documents: what the accounts topic, the admin API and the CLI exchange.

    {"id": "acme", "plan": "acton-active-contacts", "timezone": "Europe/Brussels",
     "contract_date": "2026-01-31", "limits": {"active_contacts": 12000},
     "extensions": [{"meter": "emails", "period": "2026-11", "extra": 5000}],
     "paid_tiers": {"search": 25000}}

Validation names the field and the problem (AccountError); that the account fits its plan
(meters exist, a contract date where billing periods need one) is `accounts.check_account`.
"""

from __future__ import annotations

import re
from datetime import date
from types import MappingProxyType
from typing import Any

from metering.core.accounts import Account
from metering.core.errors import AccountError, PeriodError
from metering.core.periods import check_timezone

_CALENDAR_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)
_KEYS = frozenset({"id", "plan", "timezone", "contract_date", "limits", "extensions", "paid_tiers"})


def account_from_json(doc: object) -> Account:
    """Build an `Account` from its JSON document; raise `AccountError` naming the field."""
    if not isinstance(doc, dict):
        raise AccountError("?", "", "an account is a JSON object")
    account_id = doc.get("id")
    if not isinstance(account_id, str) or not account_id:
        raise AccountError("?", "id", "is required (a non-empty string)")
    unknown = sorted(set(doc) - _KEYS)
    if unknown:
        raise AccountError(account_id, unknown[0], "unknown field")
    plan_id = doc.get("plan")
    if not isinstance(plan_id, str) or not plan_id:
        raise AccountError(account_id, "plan", "is required (a plan id)")
    timezone = doc.get("timezone")
    if timezone is not None:
        if not isinstance(timezone, str):
            raise AccountError(account_id, "timezone", "must be an IANA timezone name")
        try:
            check_timezone(timezone)
        except PeriodError as exc:
            raise AccountError(account_id, "timezone", exc.problem) from exc
    contract = doc.get("contract_date")
    contract_date = None
    if contract is not None:
        contract_date = _calendar_date(account_id, contract)
    limits = _limits(account_id, doc.get("limits", {}))
    extensions = _extensions(account_id, doc.get("extensions", []))
    paid_tiers = _paid_tiers(account_id, doc.get("paid_tiers", {}))
    return Account(
        id=account_id,
        plan_id=plan_id,
        timezone=timezone,
        contract_date=contract_date,
        limit_overrides=MappingProxyType(limits),
        extensions=MappingProxyType(extensions),
        paid_tiers=MappingProxyType(paid_tiers),
    )


def account_to_json(account: Account) -> dict[str, Any]:
    """The JSON document of `account` (round-trips through `account_from_json`)."""
    doc: dict[str, Any] = {"id": account.id, "plan": account.plan_id}
    if account.timezone is not None:
        doc["timezone"] = account.timezone
    if account.contract_date is not None:
        doc["contract_date"] = account.contract_date.isoformat()
    if account.limit_overrides:
        doc["limits"] = dict(account.limit_overrides)
    if account.extensions:
        doc["extensions"] = [
            {"meter": meter, "period": period, "extra": extra}
            for (meter, period), extra in sorted(account.extensions.items())
        ]
    if account.paid_tiers:
        doc["paid_tiers"] = dict(account.paid_tiers)
    return doc


def calendar_date(text: str) -> date:
    """The date written `text`, a calendar date YYYY-MM-DD and nothing else (ValueError).

    `date.fromisoformat` also takes ISO week dates (`2026-W01-1`, which is 2025-12-29) and
    basic forms (`20260131`): a contract date someone misread would move every billing period
    of the account, so only the one unambiguous form is accepted (here and in the admin API)."""
    if not _CALENDAR_DATE.fullmatch(text):
        raise ValueError(f"not a calendar date YYYY-MM-DD: {text[:40]!r}")
    return date.fromisoformat(text)


def _calendar_date(account_id: str, value: object) -> date:
    problem = "must be a calendar date YYYY-MM-DD"
    if not isinstance(value, str):
        raise AccountError(account_id, "contract_date", f"{problem}, got {type(value).__name__}")
    try:
        return calendar_date(value)
    except ValueError:
        raise AccountError(account_id, "contract_date", f"{problem}, got {value[:40]!r}") from None


def _amount(account_id: str, path: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise AccountError(account_id, path, "must be an integer >= 0")
    return value


def _limits(account_id: str, raw: object) -> dict[str, int]:
    if not isinstance(raw, dict):
        raise AccountError(account_id, "limits", "must be an object meter -> limit")
    return {str(k): _amount(account_id, f"limits.{k}", v) for k, v in raw.items()}


def _extensions(account_id: str, raw: object) -> dict[tuple[str, str], int]:
    if not isinstance(raw, list):
        raise AccountError(account_id, "extensions", "must be a list")
    found: dict[tuple[str, str], int] = {}
    for i, item in enumerate(raw):
        path = f"extensions[{i}]"
        if not isinstance(item, dict) or set(item) != {"meter", "period", "extra"}:
            raise AccountError(account_id, path, "needs exactly meter, period and extra")
        meter, period = item["meter"], item["period"]
        if not isinstance(meter, str) or not isinstance(period, str):
            raise AccountError(account_id, path, "meter and period are strings")
        key = (meter, period)
        found[key] = found.get(key, 0) + _amount(account_id, f"{path}.extra", item["extra"])
    return found


def _paid_tiers(account_id: str, raw: object) -> dict[str, int]:
    if not isinstance(raw, dict):
        raise AccountError(account_id, "paid_tiers", "must be an object ladder -> tier (up_to)")
    found: dict[str, int] = {}
    for ladder, up_to in raw.items():
        if isinstance(up_to, bool) or not isinstance(up_to, int) or up_to < 1:
            raise AccountError(
                account_id, f"paid_tiers.{ladder}", "must be a tier bound (an integer >= 1)"
            )
        found[str(ladder)] = up_to
    return found
