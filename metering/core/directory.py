"""The in-memory table of plans and accounts every processor and API process keeps.

Fed by records of the compacted accounts topic (see streams/config_follower.py), in order:

    key "plan:<id>"     value {"source": "<file name>", "toml": "<plan file text>"}
    key "account:<id>"  value the account's JSON document (metering.core.account_codec)
    key "apikey:<id>"   value an API key's record: digest, scope, account, created/revoked
                        (metering.core.api_keys; never the token)
    value null          (a tombstone) removes the plan, account or key

Every record either applies or is refused with a `Refusal` (a stable reason code and a
message naming the key and the problem); `apply_record` never raises. A refused record
changes nothing, so the last good version of its key stays in force: a bad edit never takes
an account out of metering, and one poison record cannot stop a follower (which would freeze
the configuration of every process and block every process that starts after it). Lookups
return immutable objects; an update replaces them, which is how caches downstream notice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum

import orjson

from metering.core.account_codec import account_from_json
from metering.core.accounts import Account, check_account
from metering.core.api_keys import API_KEY_PREFIX, KeyRecord, parse_topic_record
from metering.core.errors import AccountError, ApiKeyError, MeteringError, PlanError
from metering.core.plan_loading import parse_plan
from metering.core.plans import Plan

log = logging.getLogger(__name__)

PLAN_PREFIX = "plan:"
ACCOUNT_PREFIX = "account:"
MAX_PROBLEM_CHARS = 300
"""A refusal's message is logged once per record: long enough to name the field, never the
whole (possibly megabyte-sized) record."""


class RefusalReason(StrEnum):
    """Stable codes for why a configuration record was refused (metric label, log line).

    Part of the public contract (docs/reliability.md, the
    `metering_config_records_refused_total` metric): add codes, never change them."""

    BAD_KEY = "bad_key"
    """The key is not `plan:<id>`, `account:<id>` or `apikey:<id>` (or not UTF-8)."""
    NOT_JSON = "not_json"
    """The value is not a JSON document."""
    INVALID_PLAN = "invalid_plan"
    """A plan record whose envelope or TOML does not describe a valid plan."""
    INVALID_ACCOUNT = "invalid_account"
    """An account document that is malformed or does not fit its plan."""
    INVALID_API_KEY = "invalid_api_key"
    """An API key record that is malformed (or would give a key another token's digest)."""
    KEY_MISMATCH = "key_mismatch"
    """The key names another plan or account than the value."""
    UNEXPECTED = "unexpected"
    """An error no check anticipated (a bug): refused all the same, logged with its traceback."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """A configuration record that was not applied, and why."""

    key: str
    problem: str
    reason: RefusalReason = RefusalReason.UNEXPECTED

    def __str__(self) -> str:
        return f"{self.key or '<no key>'}: {self.reason.value}: {self.problem}"


def _refusal(key: str, reason: RefusalReason, problem: str) -> Refusal:
    if len(problem) > MAX_PROBLEM_CHARS:
        problem = problem[: MAX_PROBLEM_CHARS - 3] + "..."
    refusal = Refusal(key[:200], problem, reason)
    log.warning("configuration record refused (the previous version stays): %s", refusal)
    return refusal


def _refused(name: str, exc: Exception) -> Refusal:
    """The refusal of record `name` that raised `exc`: our errors name the field and the
    problem; anything else is a bug, logged with its traceback and refused all the same."""
    if isinstance(exc, orjson.JSONDecodeError):
        return _refusal(name, RefusalReason.NOT_JSON, f"the value is not JSON: {exc}")
    if isinstance(exc, ApiKeyError):
        return _refusal(name, RefusalReason.INVALID_API_KEY, str(exc))
    if isinstance(exc, MeteringError):
        account = name.startswith(ACCOUNT_PREFIX) or isinstance(exc, AccountError)
        reason = RefusalReason.INVALID_ACCOUNT if account else RefusalReason.INVALID_PLAN
        return _refusal(name, reason, str(exc))
    log.error("configuration record %s: unexpected error", name[:200], exc_info=exc)
    return _refusal(name, RefusalReason.UNEXPECTED, f"{type(exc).__name__}: {exc}")


def _anchored(account: Account, plan: Plan) -> bool:
    """Whether the account has the contract date the plan's billing periods need."""
    if account.contract_date is not None:
        return True
    return not any(m.period is not None and m.period.anchored for m in plan.meters)


class Directory:
    """Plans and accounts by id, updated record by record."""

    def __init__(self) -> None:
        self._plans: dict[str, Plan] = {}
        self._accounts: dict[str, Account] = {}
        self._resolved: dict[str, tuple[Account, Plan] | None] = {}
        self._keys: dict[str, tuple[str, KeyRecord]] = {}
        """Key id -> (digest, record), revoked ones included."""
        self._digests: dict[str, KeyRecord] = {}
        """Token digest -> record, revoked ones included."""
        self._forgotten: set[str] = set()
        """Digests of keys removed by a tombstone: refused like revoked ones, so that a copy
        left in Redis cannot bring them back in this process."""
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
        if account is not None and plan is not None and not _anchored(account, plan):
            # An account stored before its plan, or a plan version that added a billing
            # period: mapping its events would raise instead of refusing them.
            log.warning(
                "account %s has no contract_date, which plan %s needs (billing periods): its "
                "events are refused as unknown_account until one of them is fixed",
                account.id,
                plan.id,
            )
            result = None
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

    def api_key(self, digest: str) -> KeyRecord | None:
        """The record of the key whose token hashes to `digest` (revoked ones too: check
        `revoked_ms`); None when the topic holds no such key."""
        return self._digests.get(digest)

    def api_key_withdrawn(self, digest: str) -> bool:
        """Whether the key of `digest` was revoked or removed: no other copy may revive it."""
        record = self._digests.get(digest)
        return digest in self._forgotten or (record is not None and record.revoked_ms is not None)

    def api_keys(self) -> list[tuple[str, KeyRecord]]:
        """(digest, record) of every key on the topic, revoked ones included, by id."""
        return [self._keys[k] for k in sorted(self._keys)]

    def put_plan(self, plan: Plan) -> None:
        """Install or replace a plan (accounts on it are re-checked on lookup).

        A new version without meters the old one had is applied (an operator forced it, see
        `removed_meters_in_use`), and logged: from now on the events of those meters are
        counted nowhere for the accounts on the plan."""
        for meter, accounts in self.removed_meters_in_use(plan).items():
            log.warning(
                "plan %s no longer has meter %s: events of its %d accounts (%s) are no longer "
                "counted in it",
                plan.id,
                meter,
                len(accounts),
                ", ".join(accounts[:5]) + (", ..." if len(accounts) > 5 else ""),
            )
        self._plans[plan.id] = plan
        self._changed()

    def removed_meters_in_use(self, plan: Plan) -> dict[str, list[str]]:
        """Meter -> ids of the accounts using it, for each meter of the installed version of
        `plan` that the new `plan` drops while accounts are on the plan (each of them feeds
        every meter of its plan). Empty when the plan is new or keeps all its meters."""
        current = self._plans.get(plan.id)
        if current is None:
            return {}
        removed = [m.name for m in current.meters if not plan.has_meter(m.name)]
        users = sorted(a.id for a in self._accounts.values() if a.plan_id == plan.id)
        if not removed or not users:
            return {}
        return dict.fromkeys(removed, users)

    def missing_contract_dates(self, plan: Plan) -> list[str]:
        """Ids of the accounts on `plan` that have no contract date while `plan` has billing
        periods (their events could not be metered under it)."""
        return sorted(
            a.id for a in self._accounts.values() if a.plan_id == plan.id and not _anchored(a, plan)
        )

    def put_account(self, account: Account) -> None:
        """Install or replace an account after checking it fits its plan (when known)."""
        plan = self._plans.get(account.plan_id)
        if plan is not None:
            check_account(account, plan)
        self._accounts[account.id] = account
        self._changed()

    def apply_record(self, key: bytes | None, value: bytes | None) -> Refusal | None:
        """Apply one accounts-topic record; returns a `Refusal` instead of raising.

        Whatever the bytes: a refused record changes nothing (the key's last good version
        stays) and is logged once with its reason."""
        try:
            name = (key or b"").decode("utf-8")
        except UnicodeDecodeError:
            return _refusal(repr(key)[:80], RefusalReason.BAD_KEY, "the key is not UTF-8")
        try:
            if name.startswith(PLAN_PREFIX) and len(name) > len(PLAN_PREFIX):
                return self._plan_record(name, name[len(PLAN_PREFIX) :], value)
            if name.startswith(ACCOUNT_PREFIX) and len(name) > len(ACCOUNT_PREFIX):
                return self._account_record(name, name[len(ACCOUNT_PREFIX) :], value)
            if name.startswith(API_KEY_PREFIX) and len(name) > len(API_KEY_PREFIX):
                return self._api_key_record(name, name[len(API_KEY_PREFIX) :], value)
        except Exception as exc:  # noqa: BLE001 - one record must never stop a follower
            return _refused(name, exc)
        return _refusal(
            name, RefusalReason.BAD_KEY, "key must be 'plan:<id>', 'account:<id>' or 'apikey:<id>'"
        )

    def _plan_record(self, name: str, plan_id: str, value: bytes | None) -> Refusal | None:
        if value is None:
            self._plans.pop(plan_id, None)
            self._changed()
            return None
        doc = orjson.loads(value)
        if not isinstance(doc, dict):
            raise PlanError(name, "", 'the value must be a JSON object {"source", "toml"}')
        text, source = doc.get("toml"), doc.get("source", name)
        if not isinstance(text, str):
            raise PlanError(name, "toml", "must be a string holding the plan file's text")
        if not isinstance(source, str):
            raise PlanError(name, "source", "must be a string (the plan file's name)")
        plan = parse_plan(text, source=source[:200])
        if plan.id != plan_id:
            return _refusal(
                name, RefusalReason.KEY_MISMATCH, f"key names plan {plan_id!r}, file {plan.id!r}"
            )
        self.put_plan(plan)
        return None

    def _account_record(self, name: str, account_id: str, value: bytes | None) -> Refusal | None:
        if value is None:
            self._accounts.pop(account_id, None)
            self._changed()
            return None
        account = account_from_json(orjson.loads(value))
        if account.id != account_id:
            return _refusal(
                name, RefusalReason.KEY_MISMATCH, f"key names {account_id!r}, body {account.id!r}"
            )
        self.put_account(account)
        return None

    def _api_key_record(self, name: str, key_id: str, value: bytes | None) -> Refusal | None:
        known = self._keys.get(key_id)
        if value is None:
            if known is not None:
                del self._keys[key_id]
                del self._digests[known[0]]
                self._forgotten.add(known[0])
                self._changed()
            return None
        digest, record = parse_topic_record(key_id, orjson.loads(value))
        if known is not None and known[0] != digest:
            return _refusal(
                name, RefusalReason.INVALID_API_KEY, "a key's digest never changes (new key?)"
            )
        owner = self._digests.get(digest)
        if owner is not None and owner.id != key_id:
            return _refusal(
                name, RefusalReason.INVALID_API_KEY, f"the digest belongs to key {owner.id}"
            )
        self._keys[key_id] = (digest, record)
        self._digests[digest] = record
        self._forgotten.discard(digest)
        self._changed()
        return None

    def _changed(self) -> None:
        self._resolved.clear()
        self.version += 1
