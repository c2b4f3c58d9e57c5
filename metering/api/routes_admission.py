"""Admission endpoints: "may this account do X now?", one decision per item.

Account keys may ask for their own account (the producing application is the caller), admin
keys for any. Bodies are validated here; the decisions come from `admission.Admission`.

Every endpoint answers the same document (docs/api.md, "Admission"): `allowed` is a boolean
(every item allowed), `admitted` / `refused` count the items, `reason` / `meter` / `fits` are
those of the deciding item (the first refused one, else the first), the `hold` placed on
counters and balances (its id goes on the usage events as `holdid`), then the `items` and the
`meters` consulted. `DELETE /v1/accounts/{account}/holds/{hold}` releases a hold early.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from metering.api import validation as v
from metering.api.admission import Admission, Item
from metering.api.problems import invalid
from metering.api.responses import context, json_response, metrics
from metering.core.enforcement import GatedAction
from metering.core.events import ContactOrigin, EmailKind

MAX_RECIPIENTS = 100_000_000
MAX_SEGMENTS = 100
_ENDPOINTS = {
    "message.send": "messages",
    "contact.add": "contacts",
    "sms.send": "sms",
    GatedAction.AUTOMATION_TRIGGER.value: "automations",
}
_CAMPAIGN_ACTIONS = [GatedAction.CAMPAIGN_SEND.value, GatedAction.CAMPAIGN_CREATE.value]


async def _admission(request: Request) -> tuple[Admission, dict[str, Any], str]:
    ctx = context(request)
    account_id = v.path(request, "account", v.ACCOUNT_ID)
    # Admission decides from counters only a writable store keeps current (the processor
    # can no longer count, reservations can no longer be made): 503 while writes are refused.
    await ctx.state_reader(request, account_id, writes=True)
    body = await v.json_object(request)
    account, plan = ctx.lookup(account_id)
    admission = Admission(
        ctx.store,
        account,
        plan,
        now_ms=ctx.clock_ms(),
        retention_days=ctx.config.retention_days,
        hold_ttl_s=ctx.config.hold_ttl_s,
    )
    return admission, body, account_id


def answer(account: str, action: str, admission: Admission, items: list[Item]) -> dict[str, Any]:
    """The admission document every endpoint answers (one shape: docs/api.md)."""
    docs = [item.json() for item in items]
    admitted = sum(1 for d in docs if d["allowed"])
    deciding = next((d for d in docs if not d["allowed"]), docs[0] if docs else None)
    meter = None if deciding is None else deciding["meter"]
    return {
        "account": account,
        "action": action,
        "allowed": admitted == len(docs),
        "admitted": admitted,
        "refused": len(docs) - admitted,
        "reason": None if deciding is None else deciding["reason"],
        "meter": meter,
        "fits": admission.fits(meter),
        "hold": admission.hold(),
        "items": docs,
        "meters": admission.meters(),
    }


def _items(
    request: Request, account: str, action: str, admission: Admission, items: list[Item]
) -> Response:
    """The decisions document; each decision is counted under the endpoint's last path
    segment (`messages`, `contacts`, `sms`, `automations`), the metric's `action` label."""
    doc = answer(account, action, admission, items)
    metrics(request).count_decisions(
        _ENDPOINTS[action], ((d["allowed"], d["reason"]) for d in doc["items"])
    )
    return json_response(doc)


async def messages(request: Request) -> Response:
    admission, body, account = await _admission(request)
    v.only(body, ("contacts", "kind"))
    contacts = v.contacts(body)
    kind = EmailKind(v.choice(body, "kind", [k.value for k in EmailKind], "marketing"))
    items = await admission.messages(contacts, kind)
    return _items(request, account, "message.send", admission, items)


async def contacts(request: Request) -> Response:
    admission, body, account = await _admission(request)
    v.only(body, ("contacts", "origin"))
    members = v.contacts(body)
    if "origin" not in body:
        origins = ", ".join(o.value for o in ContactOrigin)
        raise invalid("origin", f"is required (one of: {origins})")
    origin = ContactOrigin(v.choice(body, "origin", [o.value for o in ContactOrigin], "api"))
    items = await admission.contacts(members, origin)
    return _items(request, account, "contact.add", admission, items)


async def campaigns(request: Request) -> Response:
    admission, body, account = await _admission(request)
    v.only(body, ("action", "recipients", "contacts_via_api", "kind"))
    if body.get("action") == GatedAction.AUTOMATION_TRIGGER.value:
        raise invalid(
            "action",
            "automation.trigger is asked per contact at POST "
            f"/v1/accounts/{account}/admission/automations",
        )
    action = GatedAction(
        v.choice(body, "action", _CAMPAIGN_ACTIONS, GatedAction.CAMPAIGN_SEND.value)
    )
    recipients = v.integer(body, "recipients", minimum=0, maximum=MAX_RECIPIENTS, default=0)
    via_api = v.boolean(body, "contacts_via_api", default=False)
    kind = EmailKind(v.choice(body, "kind", [k.value for k in EmailKind], "marketing"))
    item = await admission.campaign(action, recipients, via_api, kind)
    doc = answer(account, action.value, admission, [item])
    metrics(request).count_decisions("campaigns", [(doc["allowed"], doc["reason"])])
    return json_response(
        {
            **doc,
            "recipients": recipients,
            "checks": [
                {"meter": meter, "allowed": d.allowed, "reason": d.reason.value}
                for meter, d, _ in item.decisions
            ],
        }
    )


async def automations(request: Request) -> Response:
    admission, body, account = await _admission(request)
    v.only(body, ("contacts", "contacts_via_api"))
    contacts = v.contacts(body)
    via_api = v.boolean(body, "contacts_via_api", default=False)
    items = await admission.automations(contacts, via_api)
    return _items(request, account, GatedAction.AUTOMATION_TRIGGER.value, admission, items)


async def sms(request: Request) -> Response:
    admission, body, account = await _admission(request)
    v.only(body, ("messages", "segments"))
    count = v.integer(body, "messages", minimum=1, maximum=v.MAX_ITEMS)
    segments = v.integer(body, "segments", minimum=1, maximum=MAX_SEGMENTS, default=1)
    items = await admission.sms(count, segments)
    return _items(request, account, "sms.send", admission, items)


async def release(request: Request) -> Response:
    """Free what a hold still holds, before it expires (the action was abandoned). Answers
    the units freed per meter; an unknown, captured or expired hold frees nothing (200, empty:
    releasing twice is harmless)."""
    ctx = context(request)
    account = v.path(request, "account", v.ACCOUNT_ID)
    hold = v.path(request, "hold", v.HOLD_ID)
    await ctx.state_reader(request, account, writes=True)
    ctx.lookup(account)
    freed = await ctx.store.release_hold(account, hold, now_ms=ctx.clock_ms())
    units: dict[str, int] = {}
    for slot, amount in freed.items():
        meter = slot.split(":", 1)[0]
        units[meter] = units.get(meter, 0) + amount
    return json_response(
        {"account": account, "hold": hold, "released": bool(freed), "units": units}
    )


ROUTES = [
    Route("/v1/accounts/{account}/admission/messages", messages, methods=["POST"]),
    Route("/v1/accounts/{account}/admission/contacts", contacts, methods=["POST"]),
    Route("/v1/accounts/{account}/admission/campaigns", campaigns, methods=["POST"]),
    Route("/v1/accounts/{account}/admission/automations", automations, methods=["POST"]),
    Route("/v1/accounts/{account}/admission/sms", sms, methods=["POST"]),
    Route("/v1/accounts/{account}/holds/{hold}", release, methods=["DELETE"]),
]
