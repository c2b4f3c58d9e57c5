"""The OpenAPI 3.1 document of the API, served at /openapi.json and rendered at /docs.

The schemas (request bodies, answers, problems) are generated from the typed models of
models.py and routes_events.py (msgspec Structs -> JSON Schema), with their descriptions and
examples; this module adds the operations: paths, parameters, status codes, tags. The
document is a contract: tests/api/test_schemathesis.py sends generated requests built from it
and checks every response against it (status codes, content types, bodies), so a route and its
description cannot drift apart unnoticed. Patterns and bounds come from `validation.py`.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import msgspec

from metering.api import models
from metering.api import validation as v
from metering.api.context import ApiConfig
from metering.api.idempotency import EXEMPT
from metering.api.models import anchored as _anchored
from metering.api.routes_events import IngestAnswer

JSON = "application/json"
PROBLEM = "application/problem+json"
_REF = "#/components/schemas/{name}"
_STR = {"type": "string"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(name=name)}


def _body(model: type[msgspec.Struct]) -> dict[str, str]:
    """The request body schema of a route: its model's component."""
    return _ref(model.__name__)


SCHEMAS: dict[str, Any] = msgspec.json.schema_components(models.MODELS, ref_template=_REF)[1]
"""Every component schema, generated from the models (models.py); `typed` adds more."""


def _not_caught_up() -> dict[str, Any]:
    return {
        "504": {
            "description": "`not_caught_up`: the timeout passed first; the lag left, per "
            "partition.",
            "content": {PROBLEM: {"schema": _ref("NotCaughtUp")}},
        }
    }


_TIMEOUT_MS = {"type": "integer", "minimum": 0, "maximum": 300_000}


def _problems(*codes: int) -> dict[str, Any]:
    texts = {
        400: "Malformed JSON.",
        401: "Missing or invalid API key.",
        403: "The key may not do this.",
        404: "Unknown account, plan or meter.",
        409: "Valid input that the account's plan or state does not allow; `field` names it.",
        413: "Body larger than 64 KiB.",
        415: "Body is not application/json.",
        422: "A field is invalid; `field` names it.",
        429: "Rate limit of the key exceeded; see Retry-After.",
        500: "The state store or Kafka refused the request.",
        503: "The state store or Kafka is unavailable (`unavailable`), Redis refuses writes "
        "(`store_refusing_writes`, `cause` says why), Kafka did not acknowledge a write within "
        "the deadline (`kafka_unavailable`), the store lost its state and holds no store "
        "marker (`store_not_initialised`), or a processor is still rebuilding it from Kafka "
        "(`store_rebuilding`); see Retry-After.",
    }
    return {
        str(code): {
            "description": texts[code],
            "content": {PROBLEM: {"schema": _ref("Problem")}},
        }
        for code in codes
    }


_READ_ERRORS = (401, 403, 404, 409, 422, 429, 500, 503)
_WRITE_ERRORS = (400, 401, 403, 404, 409, 413, 415, 422, 429, 500, 503)


def _ok(schema: str | None, status: int = 200, description: str = "OK") -> dict[str, Any]:
    if schema is None:
        return {str(status): {"description": description}}
    return {str(status): {"description": description, "content": {JSON: {"schema": _ref(schema)}}}}


IDEMPOTENCY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Makes a retry safe: the same key with the same request gets the first "
    "answer again (`Idempotent-Replayed: true`), with another request 422 "
    "`idempotency_key_reused`, while the first still runs 409 `idempotency_in_progress`. "
    "Remembered per API key for METERING_API_IDEMPOTENCY_TTL_S (docs/api.md).",
    "schema": {"type": "string", "pattern": _anchored(v.IDEMPOTENCY_KEY)},
}


def _op(
    summary: str,
    tag: str,
    responses: dict[str, Any],
    *,
    body: dict[str, Any] | None = None,
    params: list[dict[str, Any]] | None = None,
    secured: bool = True,
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "tags": [tag], "responses": responses}
    op["operationId"] = summary.lower().replace(" ", "_").replace("'", "").replace(",", "")
    if body is not None:
        op["requestBody"] = {"required": True, "content": {JSON: {"schema": body}}}
    if params:
        op["parameters"] = params
    if not secured:
        op["security"] = []
    return op


def _path_param(name: str, pattern: re.Pattern[str], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string", "pattern": _anchored(pattern)},
    }


ACCOUNT = _path_param("account", v.ACCOUNT_ID, "Account id.")
METER = _path_param("meter", v.METER_NAME, "Meter name (from the account's plan).")
PLAN = _path_param("plan", v.PLAN_ID, "Plan id.")
LADDER = _path_param("ladder", v.METER_NAME, "Tier ladder name (from the account's plan).")


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


def _paths() -> dict[str, Any]:
    admission_errors = _problems(*_WRITE_ERRORS)
    return {
        "/healthz": {"get": _op("Health", "meta", {**_ok(None), **_problems(503)}, secured=False)},
        "/readyz": {
            "get": _op(
                "Readiness",
                "meta",
                {**_ok("Ready"), **_problems(503)},
                secured=False,
            )
        },
        "/metrics": {
            "get": _op(
                "Prometheus metrics",
                "meta",
                {
                    "200": {
                        "description": "Prometheus text (or OpenMetrics, as Accept asks) "
                        "exposition of the API's metrics; no account data (docs/observability.md)",
                        "content": {
                            "text/plain": {"schema": _STR},
                            "application/openmetrics-text": {"schema": _STR},
                        },
                    }
                },
                secured=False,
            )
        },
        "/v1/me": {"get": _op("Who am I", "meta", {**_ok("Me"), **_problems(401, 429, 500, 503)})},
        "/v1/accounts/{account}/usage": {
            "get": _op(
                "Usage of an account",
                "usage",
                {**_ok("Usage"), **_problems(*_READ_ERRORS)},
                params=[ACCOUNT],
            )
        },
        "/v1/accounts/{account}/meters/{meter}/history": {
            "get": _op(
                "History of a meter",
                "usage",
                {**_ok("History"), **_problems(*_READ_ERRORS)},
                params=[
                    ACCOUNT,
                    METER,
                    _query(
                        "periods",
                        {"type": "integer", "minimum": 1, "maximum": 36},
                        "How many periods, the current one included (default 12).",
                    ),
                ],
            )
        },
        "/v1/accounts/{account}/meters/{meter}/members": {
            "get": _op(
                "Members of a period",
                "usage",
                {**_ok("Members"), **_problems(*_READ_ERRORS)},
                params=[
                    ACCOUNT,
                    METER,
                    _query(
                        "period",
                        {"type": "string", "pattern": _anchored(v.PERIOD_KEY)},
                        "Period key (default: the current period).",
                    ),
                    _query(
                        "offset",
                        {"type": "integer", "minimum": 0, "maximum": 10**9},
                        "Skip this many (sorted) members.",
                    ),
                    _query(
                        "limit",
                        {"type": "integer", "minimum": 1, "maximum": 10_000},
                        "At most this many members (default 1000).",
                    ),
                ],
            )
        },
        "/v1/accounts/{account}/tiers": {
            "get": _op(
                "Tier placements",
                "usage",
                {**_ok("Tiers"), **_problems(*_READ_ERRORS)},
                params=[ACCOUNT],
            )
        },
        "/v1/wait": {
            "get": _op(
                "Wait until everything is counted",
                "usage",
                {**_ok("Waited"), **_not_caught_up(), **_problems(401, 403, 422, 429, 500, 503)},
                params=[
                    _query(
                        "timeout_ms",
                        _TIMEOUT_MS,
                        "Give up after this long (default 30000; 0: answer at once).",
                    )
                ],
            )
        },
        "/v1/accounts/{account}/wait": {
            "get": _op(
                "Wait until an account's events are counted",
                "usage",
                {**_ok("Waited"), **_not_caught_up(), **_problems(*_READ_ERRORS)},
                params=[
                    ACCOUNT,
                    _query(
                        "timeout_ms",
                        _TIMEOUT_MS,
                        "Give up after this long (default 30000; 0: answer at once).",
                    ),
                ],
            )
        },
        "/v1/accounts/{account}/admission/messages": {
            "post": _op(
                "Admit messages",
                "admission",
                {**_ok("Admission"), **admission_errors},
                params=[ACCOUNT],
                body=_body(models.MessagesInput),
            )
        },
        "/v1/accounts/{account}/admission/contacts": {
            "post": _op(
                "Admit new contacts",
                "admission",
                {**_ok("Admission"), **admission_errors},
                params=[ACCOUNT],
                body=_body(models.ContactsInput),
            )
        },
        "/v1/accounts/{account}/admission/campaigns": {
            "post": _op(
                "Admit a campaign",
                "admission",
                {**_ok("CampaignAdmission"), **admission_errors},
                params=[ACCOUNT],
                body=_body(models.CampaignInput),
            )
        },
        "/v1/accounts/{account}/admission/automations": {
            "post": _op(
                "Admit automation triggers",
                "admission",
                {**_ok("Admission"), **admission_errors},
                params=[ACCOUNT],
                body=_body(models.AutomationsInput),
            )
        },
        "/v1/accounts/{account}/holds/{hold}": {
            "delete": _op(
                "Release a hold",
                "admission",
                {**_ok("HoldRelease"), **admission_errors},
                params=[ACCOUNT, _path_param("hold", v.HOLD_ID, "Hold id (admission's hold.id).")],
            )
        },
        "/v1/accounts/{account}/admission/sms": {
            "post": _op(
                "Admit SMS",
                "admission",
                {**_ok("Admission"), **admission_errors},
                params=[ACCOUNT],
                body=_body(models.SmsInput),
            )
        },
        "/v1/plans": {
            "get": _op(
                "List plans",
                "admin",
                {**_ok("PlanList"), **_problems(401, 403, 429, 500, 503)},
            )
        },
        "/v1/plans/{plan}": {
            "get": _op(
                "Get a plan",
                "admin",
                {**_ok("Plan"), **_problems(401, 403, 404, 422, 429, 500, 503)},
                params=[PLAN],
            )
        },
        "/v1/accounts": {
            "get": _op(
                "List accounts",
                "admin",
                {**_ok("AccountList"), **_problems(401, 403, 429, 500, 503)},
            )
        },
        "/v1/accounts/{account}": {
            "get": _op(
                "Get an account",
                "admin",
                {**_ok("Account"), **_problems(*_READ_ERRORS)},
                params=[ACCOUNT],
            ),
            "put": _op(
                "Create or replace an account",
                "admin",
                {**_ok("Account"), **_ok("Account", 201, "Created"), **_problems(*_WRITE_ERRORS)},
                params=[ACCOUNT],
                body=_body(models.AccountInput),
            ),
            "delete": _op(
                "Delete an account",
                "admin",
                {
                    **_ok(None, 204, "Deleted (tombstoned); its API keys are revoked"),
                    **_problems(*_READ_ERRORS),
                },
                params=[ACCOUNT],
            ),
        },
        "/v1/accounts/{account}/plan": {
            "put": _op(
                "Assign a plan",
                "admin",
                {**_ok("Account"), **_problems(*_WRITE_ERRORS)},
                params=[ACCOUNT],
                body=_body(models.PlanChange),
            )
        },
        "/v1/accounts/{account}/contract": {
            "put": _op(
                "Set contract date and timezone",
                "admin",
                {**_ok("Account"), **_problems(*_WRITE_ERRORS)},
                params=[ACCOUNT],
                body=_body(models.ContractChange),
            )
        },
        "/v1/accounts/{account}/limits/{meter}": {
            "put": _op(
                "Change a limit",
                "admin",
                {**_ok("Account"), **_problems(*_WRITE_ERRORS)},
                params=[ACCOUNT, METER],
                body=_body(models.LimitChange),
            ),
            "delete": _op(
                "Restore the plan's limit",
                "admin",
                {**_ok("Account"), **_problems(*_READ_ERRORS)},
                params=[ACCOUNT, METER],
            ),
        },
        "/v1/accounts/{account}/paid-tiers/{ladder}": {
            "put": _op(
                "Set the paid tier",
                "admin",
                {**_ok("Account"), **_problems(*_WRITE_ERRORS)},
                params=[ACCOUNT, LADDER],
                body=_body(models.PaidTierChange),
            ),
            "delete": _op(
                "Clear the paid tier",
                "admin",
                {**_ok("Account"), **_problems(*_READ_ERRORS)},
                params=[ACCOUNT, LADDER],
            ),
        },
        "/v1/admin/tier-mismatches": {
            "get": _op(
                "Accounts on the wrong tier",
                "admin",
                {**_ok("TierMismatches"), **_problems(401, 403, 429, 500, 503)},
            )
        },
        "/v1/accounts/{account}/extensions/{meter}": {
            "put": _op(
                "Grant a temporary extension",
                "admin",
                {**_ok("ExtensionAnswer"), **_problems(*_WRITE_ERRORS)},
                params=[ACCOUNT, METER],
                body=_body(models.ExtensionChange),
            )
        },
        "/v1/accounts/{account}/sms-credits": {
            "post": _op(
                "Top up SMS credits",
                "admin",
                {
                    **_ok("TopUpAnswer", 202, "Accepted: the event is on the events topic"),
                    **_problems(*_WRITE_ERRORS),
                },
                params=[
                    ACCOUNT,
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": True,
                        "description": "Retries with the same key add the credits once.",
                        "schema": {"type": "string", "pattern": _anchored(v.IDEMPOTENCY_KEY)},
                    },
                ],
                body=_body(models.TopUp),
            )
        },
        "/v1/events": {"post": _ingest_op()},
        "/v1/session": {
            "post": _op(
                "Open a dashboard session",
                "dashboard",
                {
                    "200": {"description": "Cookie set", "content": {JSON: {"schema": _ref("Me")}}},
                    **_problems(400, 401, 413, 415, 422, 429, 500, 503),
                },
                body=_body(models.SessionInput),
                secured=False,
            ),
            "delete": _op(
                "Close the dashboard session",
                "dashboard",
                _ok(None, 204, "Cookie cleared"),
                secured=False,
            ),
        },
    }


def typed(*types: Any) -> list[dict[str, Any]]:
    """The schemas of msgspec Structs (JSON Schema from the types the route answers with)
    added to `SCHEMAS`; returns a `$ref` per type."""
    refs, components = msgspec.json.schema_components(types, ref_template=_REF)
    SCHEMAS.update(components)
    return list(refs)


_EVENT_EXAMPLE = {
    "specversion": "1.0",
    "id": "e-123",
    "source": "crm/eu-1",
    "type": "email.sent",
    "subject": "acct-42",
    "time": "2026-11-23T10:00:00Z",
    "data": {"contact": "c-9", "kind": "marketing"},
}


def _ingest_op() -> dict[str, Any]:
    """`POST /v1/events` (routes_events.py): the answer's schema comes from its Structs."""
    (answer,) = typed(IngestAnswer)
    event_doc = (
        "A CloudEvents 1.0 usage event (docs/schemas/usage-event.json; docs/asyncapi.yaml). "
        "It is checked per event by the processor's own decoder: an invalid one is refused in "
        "the 202 answer with its reason, not with a 4xx for the request."
    )
    op = _op(
        "Send usage events",
        "ingestion",
        {
            "202": {
                "description": "Every event, accepted (on the events topic) or refused.",
                "content": {
                    JSON: {
                        "schema": answer,
                        "example": {
                            "accepted": 1,
                            "refused": 1,
                            "events": [
                                {"index": 0, "id": "e-123", "status": "accepted"},
                                {
                                    "index": 1,
                                    "id": "e-124",
                                    "status": "refused",
                                    "reason": "missing_field",
                                    "field": "subject",
                                    "detail": "is required",
                                },
                            ],
                        },
                    }
                },
            },
            **_problems(*_WRITE_ERRORS),
        },
    )
    op["description"] = (
        "One event as `application/cloudevents+json`, or a JSON array of events as "
        "`application/cloudevents-batch+json` (at most METERING_API_EVENTS_BURST events and "
        "64 KiB). Account keys may send their own account's events only. Each event costs a "
        "token of the key's event bucket (METERING_API_EVENTS_PER_S): a batch that does not "
        "fit is refused whole with 429."
    )
    op["requestBody"] = {
        "required": True,
        "content": {
            "application/cloudevents+json": {
                "schema": {"description": event_doc},
                "example": _EVENT_EXAMPLE,
            },
            "application/cloudevents-batch+json": {
                "schema": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": ApiConfig().events_burst,
                    "items": {"description": event_doc},
                },
                "example": [_EVENT_EXAMPLE],
            },
        },
    }
    return op


TAGS = [
    {"name": "meta", "description": "Health, readiness, metrics and the key in use."},
    {
        "name": "usage",
        "description": "What an account used this period and before, and how fresh that is.",
    },
    {
        "name": "admission",
        "description": "May this account do X now? One answer shape for every action.",
    },
    {
        "name": "ingestion",
        "description": "Usage events over HTTP (CloudEvents), onto the events topic.",
    },
    {"name": "admin", "description": "Plans, accounts, limits, tiers, top-ups (admin keys)."},
    {"name": "dashboard", "description": "The dashboard's cookie session."},
]


_IDEMPOTENT_ALREADY = {"/v1/accounts/{account}/sms-credits"}
"""Writes that declare the header themselves (the top-up requires it)."""


def _with_idempotency(paths: dict[str, Any]) -> dict[str, Any]:
    """Every write idempotency.py covers takes the optional Idempotency-Key header, and may
    answer 409 (in progress) and 422 (reused, invalid key)."""
    for path, item in paths.items():
        for method, op in item.items():
            if method not in ("post", "put", "patch", "delete") or path in EXEMPT:
                continue
            if path not in _IDEMPOTENT_ALREADY:
                op["parameters"] = [*op.get("parameters", []), IDEMPOTENCY]
            op["responses"] = {**op["responses"], **_problems(409, 422)}
    return paths


@cache
def openapi_document() -> dict[str, Any]:
    """The document (built once; it does not depend on configuration)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Metering API",
            "version": "1.0.0",
            "description": "Usage, admission, plans and accounts. See docs/api.md.",
        },
        "servers": [{"url": "/"}],
        "tags": TAGS,
        "security": [{"bearer": []}, {"cookie": []}],
        "paths": _with_idempotency(_paths()),
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key (mk_...).",
                },
                "cookie": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "mtr_key",
                    "description": "Dashboard session (GET and HEAD only).",
                },
            },
        },
    }
