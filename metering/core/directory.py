"""The in-memory table of plans and accounts every processor and API process keeps.

Fed by records of the compacted accounts topic (see streams/config_follower.py), in order:

    key "plan:<id>"     value {"source": "<file name>", "toml": "<plan file text>"}
    key "account:<id>"  value the account's JSON document (metering.core.account_codec)
    value null          (a tombstone) removes the plan or account

A record that does not parse or does not fit its plan is refused with the reason and the
previous version stays in force: a bad edit never takes an account out of metering. Lookups
return immutable objects; an update replaces them, which is how caches downstream notice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import orjson

from metering.core.account_codec import account_from_json
from metering.core.accounts import Account, check_account
from metering.core.errors import MeteringError
from metering.core.plan_loading import parse_plan
from metering.core.plans import Plan

log = logging.getLogger(__name__)

PLAN_PREFIX = "plan:"
ACCOUNT_PREFIX = "account:"


@dataclass(frozen=True, slots=True)
class Refusal:
    """A configuration record that was not applied, and why."""

    key: str
    problem: str


class Directory:
    """Plans and accounts by id, updated record by record."""

    def __init__(self) -> None:
        self._plans: dict[str, Plan] = {}
        self._accounts: dict[str, Account] = {}
        self._resolved: dict[str, tuple[Account, Plan] | None] = {}
        self.version = 0
        """Grows with every applied change (for tests and metrics)."""

    def lookup(self, account_id: str) -> tuple[Account, Plan] | None:
        """The account and its plan; None when either is unknown or they do not fit."""
        try:
            return self._resolved[account_id]
        except KeyError:
            pass
        account = self._accounts.get(account_id)
        plan = self._plans.get(account.plan_id) if account is not None else None
        result = (account, plan) if account is not None and plan is not None else None
        self._resolved[account_id] = result
        return result

    def account(self, account_id: str) -> Account | None:
        return self._accounts.get(account_id)

    def plan(self, plan_id: str) -> Plan | None:
        return self._plans.get(plan_id)

    def accounts(self) -> list[Account]:
        return sorted(self._accounts.values(), key=lambda a: a.id)

    def plans(self) -> list[Plan]:
        return sorted(self._plans.values(), key=lambda p: p.id)

    def put_plan(self, plan: Plan) -> None:
        """Install or replace a plan (accounts on it are re-checked on lookup)."""
        self._plans[plan.id] = plan
        self._changed()

    def put_account(self, account: Account) -> None:
        """Install or replace an account after checking it fits its plan (when known)."""
        plan = self._plans.get(account.plan_id)
        if plan is not None:
            check_account(account, plan)
        self._accounts[account.id] = account
        self._changed()

    def apply_record(self, key: bytes | None, value: bytes | None) -> Refusal | None:
        """Apply one accounts-topic record; returns a `Refusal` instead of raising."""
        name = (key or b"").decode("utf-8", "replace")
        try:
            if name.startswith(PLAN_PREFIX):
                return self._plan_record(name, name[len(PLAN_PREFIX) :], value)
            if name.startswith(ACCOUNT_PREFIX):
                return self._account_record(name, name[len(ACCOUNT_PREFIX) :], value)
        except (MeteringError, orjson.JSONDecodeError, KeyError, TypeError) as exc:
            log.warning("configuration record %s refused: %s", name, exc)
            return Refusal(name, str(exc))
        return Refusal(name, "key must start with 'plan:' or 'account:'")

    def _plan_record(self, name: str, plan_id: str, value: bytes | None) -> Refusal | None:
        if value is None:
            self._plans.pop(plan_id, None)
            self._changed()
            return None
        doc = orjson.loads(value)
        plan = parse_plan(doc["toml"], source=str(doc.get("source", name)))
        if plan.id != plan_id:
            return Refusal(name, f"record key names plan {plan_id!r}, file {plan.id!r}")
        self.put_plan(plan)
        return None

    def _account_record(self, name: str, account_id: str, value: bytes | None) -> Refusal | None:
        if value is None:
            self._accounts.pop(account_id, None)
            self._changed()
            return None
        account = account_from_json(orjson.loads(value))
        if account.id != account_id:
            return Refusal(name, f"record key names {account_id!r}, body {account.id!r}")
        self.put_account(account)
        return None

    def _changed(self) -> None:
        self._resolved.clear()
        self.version += 1
