"""Plans and accounts: list plans, create/replace/delete accounts, assign a plan, set the
contract date and timezone, change a limit, grant a temporary extension, top up SMS credits;
and the dashboard's session cookie.

Every change is validated against the account's plan (`accounts.check_account`) and published
to the compacted accounts topic (`ConfigPublisher`, i.e. `sinks.config_writer.ConfigWriter`),
which running processors follow: no restart. The API applies the same record to its own
`Directory` right after the broker acknowledged it, so the caller reads its own write; the
follower later applies that record again (idempotent). Changes of one account are serialised
per process (read, modify, publish); two API processes changing the same account at the same
instant can still lose one change (last write wins), see docs/api.md.

An SMS top-up is not configuration but usage: it is a `sms.credits_added` event produced to the
events topic, so the processor applies it exactly once. Its id is derived from the caller's
`Idempotency-Key` and the account, so a retried request produces the same id and the
processor's dedup window drops the copy.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Mapping
from dataclasses import replace
from datetime import date
from types import MappingProxyType
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from metering.api import validation as v
from metering.api.auth import COOKIE
from metering.api.context import ApiContext
from metering.api.problems import Problem, conflict, invalid
from metering.api.responses import context, json_response
from metering.api.views import current_slot, plan_json
from metering.core.account_codec import account_from_json, account_to_json, calendar_date
from metering.core.accounts import Account, check_account
from metering.core.deltas import Aggregation
from metering.core.directory import ACCOUNT_PREFIX
from metering.core.errors import AccountError, PeriodError
from metering.core.events import DATA_SCHEMA, MAX_QUANTITY, SPEC_VERSION, EventType
from metering.core.periods import check_timezone
from metering.core.plans import Effect
from metering.core.rfc3339 import format_ms

_locks: dict[str, asyncio.Lock] = {}


def _lock(account_id: str) -> asyncio.Lock:
    lock = _locks.get(account_id)
    if lock is None:
        if len(_locks) > 10_000:
            for key in [k for k, lk in _locks.items() if not lk.locked()]:
                del _locks[key]
        lock = _locks[account_id] = asyncio.Lock()
    return lock


async def _publish(ctx: ApiContext, account: Account) -> dict[str, Any]:
    """Check `account` against its plan, publish it, apply it locally; returns its document."""
    plan = ctx.directory.plan(account.plan_id)
    if plan is None:
        raise conflict("plan", f"no plan {account.plan_id!r} is loaded")
    try:
        check_account(account, plan)
    except AccountError as exc:
        # The model's attribute names -> the names of the JSON document the caller sent.
        field = exc.field.replace("limit_overrides", "limits", 1)
        raise conflict(field, exc.problem) from None
    await ctx.config_publisher.put_account(account)
    doc = account_to_json(account)
    ctx.directory.apply_record(f"{ACCOUNT_PREFIX}{account.id}".encode(), orjson.dumps(doc))
    return doc


def _existing(ctx: ApiContext, account_id: str) -> Account:
    account = ctx.directory.account(account_id)
    if account is None:
        raise Problem(404, "unknown_account", f"no account {account_id!r}", field="account")
    return account


# -- plans ------------------------------------------------------------------------------------


async def list_plans(request: Request) -> Response:
    ctx = context(request)
    await ctx.admin(request)
    return json_response({"plans": [plan_json(p) for p in ctx.directory.plans()]})


async def get_plan(request: Request) -> Response:
    ctx = context(request)
    plan_id = v.path(request, "plan", v.PLAN_ID)
    await ctx.admin(request)
    plan = ctx.directory.plan(plan_id)
    if plan is None:
        raise Problem(404, "unknown_plan", f"no plan {plan_id!r}", field="plan")
    return json_response(plan_json(plan))


# -- accounts ---------------------------------------------------------------------------------


async def list_accounts(request: Request) -> Response:
    ctx = context(request)
    await ctx.admin(request)
    return json_response({"accounts": [account_to_json(a) for a in ctx.directory.accounts()]})


async def get_account(request: Request) -> Response:
    ctx = context(request)
    account_id = v.path(request, "account", v.ACCOUNT_ID)
    await ctx.reader(request, account_id)
    return json_response(account_to_json(_existing(ctx, account_id)))


_ACCOUNT_FIELDS = (
    "id",
    "plan",
    "timezone",
    "contract_date",
    "limits",
    "extensions",
    "paid_tiers",
)


async def put_account(request: Request) -> Response:
    """Create or replace an account from its whole document."""
    ctx = context(request)
    account_id = v.path(request, "account", v.ACCOUNT_ID)
    await ctx.admin(request)
    body = await v.json_object(request)
    v.only(body, _ACCOUNT_FIELDS)
    v.text(body, "id", pattern=v.ACCOUNT_ID, max_chars=128, required=False)
    if body.get("id", account_id) != account_id:
        raise conflict("id", "must equal the account id in the path (or be left out)")
    v.required_text(body, "plan", pattern=v.PLAN_ID, max_chars=63)
    _check_amounts(body)
    try:
        account = account_from_json({**body, "id": account_id})
    except AccountError as exc:
        raise invalid(exc.field, exc.problem) from None
    async with _lock(account_id):
        created = ctx.directory.account(account_id) is None
        doc = await _publish(ctx, account)
    return json_response(doc, 201 if created else 200)


def _check_amounts(body: dict[str, Any]) -> None:
    """Bounds the codec does not check (it accepts any integer >= 0)."""
    limits = body.get("limits")
    if isinstance(limits, dict):
        for name in limits:
            if not v.METER_NAME.fullmatch(str(name)):
                raise invalid(f"limits.{name}", f"meter names match {v.METER_NAME.pattern}")
            try:
                limits[name] = v.integer(limits, name, minimum=0)
            except Problem as exc:
                raise invalid(f"limits.{name}", exc.detail) from None
    extensions = body.get("extensions")
    if isinstance(extensions, list):
        for i, item in enumerate(extensions):
            if not isinstance(item, dict) or set(item) != {"meter", "period", "extra"}:
                raise invalid(f"extensions[{i}]", "needs exactly meter, period and extra")
            try:
                v.text(item, "meter", pattern=v.METER_NAME, max_chars=63)
                v.text(item, "period", pattern=v.PERIOD_KEY, max_chars=20)
                item["extra"] = v.integer(item, "extra", minimum=0)
            except Problem as exc:
                raise invalid(f"extensions[{i}].{exc.field}", exc.detail) from None
    paid = body.get("paid_tiers")
    if isinstance(paid, dict):
        for name in paid:
            if not v.METER_NAME.fullmatch(str(name)):
                raise invalid(f"paid_tiers.{name}", f"ladder names match {v.METER_NAME.pattern}")
            try:
                paid[name] = v.integer(paid, name, minimum=1)
            except Problem as exc:
                raise invalid(f"paid_tiers.{name}", exc.detail) from None


async def delete_account(request: Request) -> Response:
    """Revoke the account's API keys, then tombstone it (processors stop metering it).

    Keys first, so that every failure leaves a state the same request completes: when the
    tombstone is refused (503) the account still exists and a retry revokes (nothing left) and
    tombstones again; the other order could leave a deleted account whose keys a retry no
    longer reaches (404). See docs/api.md, "Writes to Kafka".
    """
    ctx = context(request)
    account_id = v.path(request, "account", v.ACCOUNT_ID)
    await ctx.admin(request)
    async with _lock(account_id):
        _existing(ctx, account_id)
        await ctx.keys.revoke(account=account_id)
        await ctx.config_publisher.delete_account(account_id)
        ctx.directory.apply_record(f"{ACCOUNT_PREFIX}{account_id}".encode(), None)
    return Response(status_code=204)


async def put_plan(request: Request) -> Response:
    """Move an account to another plan; overrides of meters the new plan lacks are dropped."""
    ctx = context(request)
    account_id = v.path(request, "account", v.ACCOUNT_ID)
    await ctx.admin(request)
    body = await v.json_object(request)
    v.only(body, ("plan",))
    plan_id = v.required_text(body, "plan", pattern=v.PLAN_ID, max_chars=63)
    plan = ctx.directory.plan(plan_id)
    if plan is None:
        raise conflict("plan", f"no plan {plan_id!r} is loaded")
    async with _lock(account_id):
        account = _existing(ctx, account_id)
        changed = replace(
            account,
            plan_id=plan_id,
            limit_overrides=MappingProxyType(
                {k: a for k, a in account.limit_overrides.items() if plan.has_meter(k)}
            ),
            extensions=MappingProxyType(
                {k: a for k, a in account.extensions.items() if plan.has_meter(k[0])}
            ),
            paid_tiers=MappingProxyType(
                {k: t for k, t in account.paid_tiers.items() if _has_tier(plan, k, t)}
            ),
        )
        doc = await _publish(ctx, changed)
    return json_response(doc)


async def put_contract(request: Request) -> Response:
    """Set the timezone and/or the contract date (null clears one)."""
    ctx = context(request)
    account_id = v.path(request, "account", v.ACCOUNT_ID)
    await ctx.admin(request)
    body = await v.json_object(request)
    v.only(body, ("timezone", "contract_date"))
    async with _lock(account_id):
        account = _existing(ctx, account_id)
        if "timezone" in body:
            account = replace(account, timezone=_timezone(body["timezone"]))
        if "contract_date" in body:
            account = replace(account, contract_date=_date(body["contract_date"]))
        doc = await _publish(ctx, account)
    return json_response(doc)


def _timezone(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= 64:
        raise invalid("timezone", "must be an IANA timezone name (or null)")
    try:
        return check_timezone(value)
    except PeriodError as exc:
        raise invalid("timezone", exc.problem) from None


def _date(value: object) -> date | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) != 10:
        raise invalid("contract_date", "must be a date YYYY-MM-DD (or null)")
    try:
        return calendar_date(value)  # not ISO week dates (2026-W01-1): issue 14
    except ValueError:
        raise invalid("contract_date", "must be a date YYYY-MM-DD (or null)") from None


async def put_limit(request: Request) -> Response:
    """Permanent limit change of one meter (replaces the plan's limit for this account)."""
    ctx = context(request)
    account_id = v.path(request, "account", v.ACCOUNT_ID)
    meter = v.path(request, "meter", v.METER_NAME)
    await ctx.admin(request)
    body = await v.json_object(request)
    v.only(body, ("limit",))
    amount = v.integer(body, "limit", minimum=0)
    async with _lock(account_id):
        account, plan = ctx.lookup(account_id)
        spec = _plan_meter(plan, meter)
        if spec.aggregation is Aggregation.BALANCE:
            raise conflict("meter", "a balance has no limit (top up its credits instead)")
        limits = _with(account.limit_overrides, meter, amount)
        doc = await _publish(ctx, replace(account, limit_overrides=limits))
    return json_response(doc)


async def delete_limit(request: Request) -> Response:
    """Back to the plan's limit."""
    ctx = context(request)
    account_id = v.path(request, "account", v.ACCOUNT_ID)
    meter = v.path(request, "meter", v.METER_NAME)
    await ctx.admin(request)
    async with _lock(account_id):
        account, plan = ctx.lookup(account_id)
        _plan_meter(plan, meter)
        limits = _with(account.limit_overrides, meter, None)
        doc = await _publish(ctx, replace(account, limit_overrides=limits))
    return json_response(doc)


def _with(entries: Mapping[str, int], key: str, value: int | None) -> MappingProxyType[str, int]:
    """`entries` (an account's limit overrides or paid tiers) with `key` set to `value`, or
    without `key` when `value` is None: what every PUT/DELETE of one entry publishes."""
    changed = dict(entries)
    if value is None:
        changed.pop(key, None)
    else:
        changed[key] = value
    return MappingProxyType(changed)


def _plan_meter(plan: Any, meter: str) -> Any:
    if not plan.has_meter(meter):
        raise Problem(
            404, "unknown_meter", f"plan {plan.id!r} has no meter {meter!r}", field="meter"
        )
    return plan.meter(meter)


def _has_tier(plan: Any, ladder: str, up_to: int) -> bool:
    return any(lad.name == ladder and up_to in lad.up_to for lad in plan.ladders)


async def put_paid_tier(request: Request) -> Response:
    """The tier the account pays for on one ladder (Clerk.io), what the wrong-tier report
    compares with its 3-month placement."""
    ctx = context(request)
    account_id = v.path(request, "account", v.ACCOUNT_ID)
    ladder = v.path(request, "ladder", v.METER_NAME)
    await ctx.admin(request)
    body = await v.json_object(request)
    v.only(body, ("up_to",))
    up_to = v.integer(body, "up_to", minimum=1)
    async with _lock(account_id):
        account, plan = ctx.lookup(account_id)
        _plan_ladder(plan, ladder)
        doc = await _publish(
            ctx, replace(account, paid_tiers=_with(account.paid_tiers, ladder, up_to))
        )
    return json_response(doc)


async def delete_paid_tier(request: Request) -> Response:
    """The account pays for no particular tier on this ladder (not in the report)."""
    ctx = context(request)
    account_id = v.path(request, "account", v.ACCOUNT_ID)
    ladder = v.path(request, "ladder", v.METER_NAME)
    await ctx.admin(request)
    async with _lock(account_id):
        account, plan = ctx.lookup(account_id)
        _plan_ladder(plan, ladder)
        doc = await _publish(
            ctx, replace(account, paid_tiers=_with(account.paid_tiers, ladder, None))
        )
    return json_response(doc)


def _plan_ladder(plan: Any, ladder: str) -> None:
    if not any(lad.name == ladder for lad in plan.ladders):
        raise Problem(
            404, "unknown_ladder", f"plan {plan.id!r} has no ladder {ladder!r}", field="ladder"
        )


async def put_extension(request: Request) -> Response:
    """Set the temporary extension of a meter for the current period (APSIS); 0 removes it."""
    ctx = context(request)
    account_id = v.path(request, "account", v.ACCOUNT_ID)
    meter = v.path(request, "meter", v.METER_NAME)
    await ctx.admin(request)
    body = await v.json_object(request)
    v.only(body, ("extra",))
    extra = v.integer(body, "extra", minimum=0)
    async with _lock(account_id):
        account, plan = ctx.lookup(account_id)
        spec = _plan_meter(plan, meter)
        if spec.period is None or (spec.limit is None and meter not in account.limit_overrides):
            raise conflict("meter", "only windowed meters with a limit take a temporary extension")
        period = current_slot(account, plan, spec, ctx.clock_ms()).key
        extensions = {k: a for k, a in account.extensions.items() if k != (meter, period)}
        if extra:
            extensions[(meter, period)] = extra
        doc = await _publish(ctx, replace(account, extensions=MappingProxyType(extensions)))
    return json_response({"period": period, "extra": extra, "account": doc})


async def top_up_sms(request: Request) -> Response:
    """Add prepaid SMS credits: a `sms.credits_added` event with a deterministic id."""
    ctx = context(request)
    account_id = v.path(request, "account", v.ACCOUNT_ID)
    await ctx.admin(request)
    key = request.headers.get("idempotency-key")
    if key is None or not v.IDEMPOTENCY_KEY.fullmatch(key):
        raise invalid(
            "Idempotency-Key", f"header is required and must match {v.IDEMPOTENCY_KEY.pattern}"
        )
    body = await v.json_object(request)
    v.only(body, ("credits",))
    amount = v.integer(body, "credits", minimum=1, maximum=MAX_QUANTITY)
    _, plan = ctx.lookup(account_id)
    meters = sorted(
        {
            route.meter.name
            for route in plan.routes(EventType.SMS_CREDITS_ADDED)
            if route.meter.aggregation is Aggregation.BALANCE and route.match.effect is Effect.ADD
        }
    )
    if not meters:
        raise Problem(
            409, "no_sms_balance", f"plan {plan.id!r} has no SMS credit balance", field="account"
        )
    event_id = "api-topup-" + hashlib.sha256(f"{account_id}\x1f{key}".encode()).hexdigest()[:48]
    event = {
        "specversion": SPEC_VERSION,
        "id": event_id,
        "source": "metering-api",
        "type": EventType.SMS_CREDITS_ADDED.value,
        "subject": account_id,
        "time": format_ms(ctx.clock_ms()),
        "dataschema": DATA_SCHEMA,
        "data": {"quantity": amount},
    }
    await ctx.events.publish(account_id, orjson.dumps(event))
    return json_response(
        {"account": account_id, "event_id": event_id, "credits": amount, "meters": meters}, 202
    )


# -- dashboard session ------------------------------------------------------------------------


async def create_session(request: Request) -> Response:
    """Exchange an API key (in the JSON body, never in a URL) for an HttpOnly cookie."""
    ctx = context(request)
    body = await v.json_object(request)
    v.only(body, ("key",))
    token = v.required_text(body, "key", max_chars=200)
    record = await ctx.keys.find(token)
    if record is None:
        client = request.client.host if request.client else "?"
        if ctx.failures.take(f"ip:{client}") is not None:
            raise Problem(429, "rate_limited", "too many failed attempts; wait a little")
        raise Problem(401, "unauthenticated", "that is not a valid API key", field="key")
    response = json_response(
        {"key_id": record.id, "scope": record.scope.value, "account": record.account}
    )
    response.set_cookie(
        COOKIE,
        token,
        max_age=8 * 3600,
        path="/",
        httponly=True,
        samesite="strict",
        secure=ctx.config.secure_cookie,
    )
    return response


async def delete_session(request: Request) -> Response:
    response = Response(status_code=204)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response


ROUTES = [
    Route("/v1/plans", list_plans, methods=["GET"]),
    Route("/v1/plans/{plan}", get_plan, methods=["GET"]),
    Route("/v1/accounts", list_accounts, methods=["GET"]),
    Route("/v1/accounts/{account}", get_account, methods=["GET"]),
    Route("/v1/accounts/{account}", put_account, methods=["PUT"]),
    Route("/v1/accounts/{account}", delete_account, methods=["DELETE"]),
    Route("/v1/accounts/{account}/plan", put_plan, methods=["PUT"]),
    Route("/v1/accounts/{account}/contract", put_contract, methods=["PUT"]),
    Route("/v1/accounts/{account}/limits/{meter}", put_limit, methods=["PUT"]),
    Route("/v1/accounts/{account}/limits/{meter}", delete_limit, methods=["DELETE"]),
    Route("/v1/accounts/{account}/extensions/{meter}", put_extension, methods=["PUT"]),
    Route("/v1/accounts/{account}/paid-tiers/{ladder}", put_paid_tier, methods=["PUT"]),
    Route("/v1/accounts/{account}/paid-tiers/{ladder}", delete_paid_tier, methods=["DELETE"]),
    Route("/v1/accounts/{account}/sms-credits", top_up_sms, methods=["POST"]),
    Route("/v1/session", create_session, methods=["POST"]),
    Route("/v1/session", delete_session, methods=["DELETE"]),
]
