"""The OpenAPI 3.1 document of the API, written by hand and served at /openapi.json.

Hand-written because the API validates with plain functions (no model library), and the
document is a contract: tests/api/test_schemathesis.py sends generated requests built from it
and checks every response against it (status codes, content types, bodies), so a route and its
description cannot drift apart unnoticed. Patterns and bounds come from `validation.py`.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any
from zoneinfo import available_timezones

from metering.api import validation as v
from metering.core.enforcement import EnforcementMode, GatedAction, Reason
from metering.core.events import MAX_QUANTITY, ContactOrigin, EmailKind
from metering.core.status import State

JSON = "application/json"
PROBLEM = "application/problem+json"


def _anchored(pattern: str | re.Pattern[str]) -> str:
    """A whole-string pattern (JSON Schema patterns match anywhere unless anchored)."""
    text = pattern if isinstance(pattern, str) else pattern.pattern
    return f"^(?:{text})$"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _obj(required: list[str], props: dict[str, Any], *, closed: bool = True) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "required": required, "properties": props}
    if closed:
        schema["additionalProperties"] = False
    return schema


_INT = {"type": "integer"}
_NAT = {"type": "integer", "minimum": 0}
_STR = {"type": "string"}
_TIME = {"type": "string", "format": "date-time"}
_COLOUR = {"type": "string", "enum": ["green", "yellow", "red"]}
_AMOUNT = {"type": "integer", "minimum": 0, "maximum": v.MAX_AMOUNT}
_REASON = {"type": "string", "enum": [r.value for r in Reason]}
_METER_NAME = {"type": "string", "pattern": _anchored(v.METER_NAME)}
_PLAN_ID = {"type": "string", "pattern": _anchored(v.PLAN_ID)}
_TIMEZONE = {"type": "string", "enum": sorted(available_timezones())}
_ADMISSION_FIELDS = [
    "account",
    "action",
    "allowed",
    "admitted",
    "refused",
    "reason",
    "meter",
    "fits",
    "items",
    "meters",
]
_CONTACTS = {
    "type": "array",
    "minItems": 1,
    "maxItems": v.MAX_ITEMS,
    "items": {"type": "string", "minLength": 1, "maxLength": v.MAX_CONTACT_CHARS},
}

SCHEMAS: dict[str, Any] = {
    "Problem": _obj(
        ["type", "title", "status", "code", "detail"],
        {
            "type": _STR,
            "title": _STR,
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "code": {**_STR, "description": "Stable machine-readable code."},
            "detail": _STR,
            "field": {**_STR, "description": "Dotted path of the input at fault."},
            "cause": {
                "type": "string",
                "enum": ["persistence", "out_of_memory", "read_only", "kafka_timeout"],
                "description": "Why a 503 `store_refusing_writes` or `kafka_unavailable` "
                "happened (docs/api.md).",
            },
        },
    ),
    "Ready": _obj(
        ["status", "redis", "store_marker", "writes"],
        {
            "status": {"type": "string", "enum": ["ready"]},
            "redis": {"type": "string", "enum": ["reachable"]},
            "store_marker": {"type": "string", "enum": ["present"]},
            "writes": {"type": "string", "enum": ["accepted"]},
        },
    ),
    "Me": _obj(
        ["key_id", "scope", "account"],
        {
            "key_id": _STR,
            "scope": {"type": "string", "enum": ["account", "admin"]},
            "account": _nullable(_STR),
        },
    ),
    "Period": _obj(
        ["key", "kind", "start", "end"],
        {"key": _STR, "kind": _nullable(_STR), "start": _TIME, "end": _TIME},
    ),
    "MeterUsage": _obj(
        [
            "meter",
            "description",
            "aggregation",
            "enforcement",
            "used",
            "limit",
            "base_limit",
            "extension",
            "remaining",
            "ratio",
            "status",
            "state",
            "thresholds_reached",
            "period",
            "last_update",
            "projection",
        ],
        {
            "meter": _STR,
            "description": _STR,
            "aggregation": {
                "type": "string",
                "enum": ["count", "sum", "distinct", "gauge", "balance"],
            },
            "enforcement": {"type": "string", "enum": [m.value for m in EnforcementMode]},
            "used": {**_INT, "description": "Amount this period (level for gauges, balance)."},
            "limit": _nullable({**_NAT, "description": "Including this period's extension."}),
            "base_limit": _nullable(_NAT),
            "extension": _NAT,
            "remaining": _nullable(_NAT),
            "ratio": _nullable({"type": "number", "minimum": 0}),
            "status": _COLOUR,
            "state": {
                "type": "string",
                "enum": [w.value for w in State],
                "description": "The status word: over only strictly above the limit.",
            },
            "thresholds_reached": {"type": "array", "items": _STR},
            "period": _nullable(_ref("Period")),
            "last_update": _nullable(_TIME),
            "projection": _nullable(
                _obj(
                    ["used_at_period_end", "limit_reached_at"],
                    {"used_at_period_end": _INT, "limit_reached_at": _nullable(_TIME)},
                )
            ),
        },
    ),
    "Freshness": _obj(
        [
            "partition",
            "position",
            "watermark",
            "applied_at",
            "lag",
            "caught_up",
            "lag_unknown",
        ],
        {
            "partition": _nullable(
                {**_NAT, "description": "The account's partition of the events topic."}
            ),
            "position": _nullable(
                {**_INT, "description": "Offset of the last record applied there."}
            ),
            "watermark": _nullable(
                {**_TIME, "description": "Largest event time applied in the partition."}
            ),
            "applied_at": _nullable(
                {**_TIME, "description": "When the processor last applied records of it."}
            ),
            "lag": _nullable(
                {**_NAT, "description": "Records produced to the partition, not yet applied."}
            ),
            "caught_up": _nullable({"type": "boolean"}),
            "lag_unknown": _nullable(
                {**_STR, "description": "Why the lag is null (Kafka did not answer)."}
            ),
        },
    ),
    "Usage": _obj(
        ["account", "plan", "timezone", "contract_date", "as_of", "freshness", "meters"],
        {
            "account": _STR,
            "plan": _obj(["id", "name"], {"id": _STR, "name": _STR}),
            "timezone": _STR,
            "contract_date": _nullable({"type": "string", "format": "date"}),
            "as_of": {**_TIME, "description": "When this answer was computed."},
            "freshness": _nullable(_ref("Freshness")),
            "meters": {"type": "array", "items": _ref("MeterUsage")},
        },
    ),
    "History": _obj(
        ["account", "meter", "kind", "freshness", "periods"],
        {
            "account": _STR,
            "meter": _STR,
            "kind": _STR,
            "freshness": _nullable(_ref("Freshness")),
            "periods": {
                "type": "array",
                "items": _obj(
                    ["period", "start", "end", "used", "limit", "status", "closed"],
                    {
                        "period": _STR,
                        "start": _TIME,
                        "end": _TIME,
                        "used": _INT,
                        "limit": _nullable(_NAT),
                        "status": _COLOUR,
                        "closed": {"type": "boolean"},
                    },
                ),
            },
        },
    ),
    "Members": _obj(
        ["account", "meter", "period", "count", "freshness", "offset", "members"],
        {
            "account": _STR,
            "meter": _STR,
            "period": _STR,
            "count": _NAT,
            "freshness": _nullable(_ref("Freshness")),
            "offset": _NAT,
            "members": {"type": "array", "items": _STR},
        },
    ),
    "Tiers": _obj(
        ["account", "freshness", "ladders"],
        {
            "account": _STR,
            "freshness": _nullable(_ref("Freshness")),
            "ladders": {
                "type": "array",
                "items": _obj(
                    ["ladder", "meter", "bounds", "source", "note", "placement"],
                    {
                        "ladder": _STR,
                        "meter": _STR,
                        "bounds": {"type": "array", "items": _INT},
                        "source": {"type": "string", "enum": ["counters", "unavailable"]},
                        "note": _nullable(_STR),
                        "placement": _nullable(
                            _obj(
                                [
                                    "ladder",
                                    "meter",
                                    "up_to",
                                    "average",
                                    "average_exact",
                                    "months_used",
                                    "complete",
                                    "months",
                                ],
                                {
                                    "ladder": _STR,
                                    "meter": _STR,
                                    "up_to": _nullable(_INT),
                                    "average": {"type": "number"},
                                    "average_exact": _STR,
                                    "months_used": _NAT,
                                    "complete": {"type": "boolean"},
                                    "months": {
                                        "type": "array",
                                        "items": _obj(
                                            ["period", "used"], {"period": _STR, "used": _INT}
                                        ),
                                    },
                                },
                            )
                        ),
                    },
                ),
            },
        },
    ),
    "AdmissionItem": _obj(
        ["index", "item", "allowed", "reason", "meter"],
        {
            "index": _NAT,
            "item": _nullable(_STR),
            "allowed": {"type": "boolean"},
            "reason": _REASON,
            "meter": _nullable(_STR),
        },
    ),
    "MeterLevel": _obj(
        ["meter", "period", "used", "held", "limit", "fits", "enforcement"],
        {
            "meter": _STR,
            "period": _nullable(_STR),
            "used": _INT,
            "held": {
                **_NAT,
                "description": "Places admitted imports hold on a gauge until counted.",
            },
            "limit": _nullable(_NAT),
            "fits": _nullable(
                {**_NAT, "description": "How many more units fit: limit - used - held."}
            ),
            "enforcement": _STR,
        },
    ),
    "Admission": _obj(
        _ADMISSION_FIELDS,
        {
            "account": _STR,
            "action": _STR,
            "allowed": {"type": "boolean", "description": "Every item is allowed."},
            "admitted": _NAT,
            "refused": _NAT,
            "reason": _nullable(_REASON),
            "meter": _nullable(_STR),
            "fits": _nullable(_NAT),
            "items": {"type": "array", "items": _ref("AdmissionItem")},
            "meters": {"type": "array", "items": _ref("MeterLevel")},
        },
    ),
    "CampaignAdmission": _obj(
        [*_ADMISSION_FIELDS, "recipients", "checks"],
        {
            "account": _STR,
            "action": _STR,
            "allowed": {"type": "boolean"},
            "admitted": _NAT,
            "refused": _NAT,
            "reason": _nullable(_REASON),
            "meter": _nullable(_STR),
            "fits": _nullable(_NAT),
            "items": {"type": "array", "items": _ref("AdmissionItem")},
            "meters": {"type": "array", "items": _ref("MeterLevel")},
            "recipients": _NAT,
            "checks": {
                "type": "array",
                "items": _obj(
                    ["meter", "allowed", "reason"],
                    {"meter": _STR, "allowed": {"type": "boolean"}, "reason": _REASON},
                ),
            },
        },
    ),
    "Extension": _obj(["meter", "period", "extra"], {"meter": _STR, "period": _STR, "extra": _NAT}),
    "Account": _obj(
        ["id", "plan"],
        {
            "id": _STR,
            "plan": _STR,
            "timezone": _STR,
            "contract_date": {"type": "string", "format": "date"},
            "limits": {"type": "object", "additionalProperties": _NAT},
            "extensions": {"type": "array", "items": _ref("Extension")},
            "paid_tiers": {"type": "object", "additionalProperties": _INT},
        },
    ),
    "TierMismatches": _obj(
        ["checked", "mismatches"],
        {
            "checked": _NAT,
            "mismatches": {
                "type": "array",
                "items": _obj(
                    [
                        "account",
                        "ladder",
                        "meter",
                        "paid_up_to",
                        "placed_up_to",
                        "direction",
                        "average",
                        "average_display",
                        "as_of",
                        "months",
                    ],
                    {
                        "account": _STR,
                        "ladder": _STR,
                        "meter": _STR,
                        "paid_up_to": _INT,
                        "placed_up_to": _nullable(_INT),
                        "direction": {"type": "string", "enum": ["up", "down"]},
                        "average": _STR,
                        "average_display": _STR,
                        "as_of": _STR,
                        "months": {
                            "type": "array",
                            "items": _obj(["period", "total"], {"period": _STR, "total": _NAT}),
                        },
                    },
                ),
            },
        },
    ),
    "AccountInput": _obj(
        ["plan"],
        {
            "id": {"type": "string", "pattern": _anchored(v.ACCOUNT_ID)},
            "plan": _PLAN_ID,
            "timezone": _nullable(_TIMEZONE),
            "contract_date": _nullable({"type": "string", "format": "date"}),
            "limits": {
                "type": "object",
                "propertyNames": {"pattern": _anchored(v.METER_NAME)},
                "additionalProperties": _AMOUNT,
            },
            "extensions": {
                "type": "array",
                "items": _obj(
                    ["meter", "period", "extra"],
                    {
                        "meter": _METER_NAME,
                        "period": {"type": "string", "pattern": _anchored(v.PERIOD_KEY)},
                        "extra": _AMOUNT,
                    },
                ),
            },
            "paid_tiers": {
                "type": "object",
                "propertyNames": {"pattern": _anchored(v.METER_NAME)},
                "additionalProperties": {"type": "integer", "minimum": 1},
            },
        },
    ),
    "Plan": _obj(
        ["id", "name", "description", "timezone", "meters", "ladders"],
        {
            "id": _STR,
            "name": _STR,
            "description": _STR,
            "timezone": _STR,
            "meters": {"type": "array", "items": {"type": "object"}},
            "ladders": {"type": "array", "items": {"type": "object"}},
        },
    ),
}


_WAITED = {
    "caught_up": {"type": "boolean"},
    "account": _nullable(_STR),
    "waited_ms": _NAT,
    "lag": {**_NAT, "description": "Records produced before the call, not applied yet."},
    "partitions": {
        "type": "array",
        "items": _obj(
            ["partition", "target", "position", "watermark", "applied_at", "lag"],
            {
                "partition": _NAT,
                "target": {**_NAT, "description": "End offset of the partition at the call."},
                "position": _nullable(_INT),
                "watermark": _nullable(_TIME),
                "applied_at": _nullable(_TIME),
                "lag": _NAT,
            },
        ),
    },
}
SCHEMAS["Waited"] = _obj(["caught_up", "account", "waited_ms", "lag", "partitions"], _WAITED)
SCHEMAS["NotCaughtUp"] = _obj(
    ["type", "title", "status", "code", "detail", *_WAITED],
    {**SCHEMAS["Problem"]["properties"], **_WAITED},
)


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
                body=_obj(
                    ["contacts"],
                    {
                        "contacts": _CONTACTS,
                        "kind": {"type": "string", "enum": [k.value for k in EmailKind]},
                    },
                ),
            )
        },
        "/v1/accounts/{account}/admission/contacts": {
            "post": _op(
                "Admit new contacts",
                "admission",
                {**_ok("Admission"), **admission_errors},
                params=[ACCOUNT],
                body=_obj(
                    ["contacts", "origin"],
                    {
                        "contacts": _CONTACTS,
                        "origin": {"type": "string", "enum": [o.value for o in ContactOrigin]},
                    },
                ),
            )
        },
        "/v1/accounts/{account}/admission/campaigns": {
            "post": _op(
                "Admit a campaign",
                "admission",
                {**_ok("CampaignAdmission"), **admission_errors},
                params=[ACCOUNT],
                body=_obj(
                    [],
                    {
                        "action": {
                            "type": "string",
                            "enum": [
                                GatedAction.CAMPAIGN_SEND.value,
                                GatedAction.CAMPAIGN_CREATE.value,
                            ],
                        },
                        "recipients": {"type": "integer", "minimum": 0, "maximum": 100_000_000},
                        "contacts_via_api": {"type": "boolean"},
                        "kind": {"type": "string", "enum": [k.value for k in EmailKind]},
                    },
                ),
            )
        },
        "/v1/accounts/{account}/admission/automations": {
            "post": _op(
                "Admit automation triggers",
                "admission",
                {**_ok("Admission"), **admission_errors},
                params=[ACCOUNT],
                body=_obj(
                    ["contacts"],
                    {"contacts": _CONTACTS, "contacts_via_api": {"type": "boolean"}},
                ),
            )
        },
        "/v1/accounts/{account}/admission/sms": {
            "post": _op(
                "Admit SMS",
                "admission",
                {**_ok("Admission"), **admission_errors},
                params=[ACCOUNT],
                body=_obj(
                    ["messages"],
                    {
                        "messages": {"type": "integer", "minimum": 1, "maximum": v.MAX_ITEMS},
                        "segments": {"type": "integer", "minimum": 1, "maximum": 100},
                    },
                ),
            )
        },
        "/v1/plans": {
            "get": _op(
                "List plans",
                "admin",
                {
                    "200": {
                        "description": "OK",
                        "content": {
                            JSON: {
                                "schema": _obj(
                                    ["plans"], {"plans": {"type": "array", "items": _ref("Plan")}}
                                )
                            }
                        },
                    },
                    **_problems(401, 403, 429, 500, 503),
                },
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
                {
                    "200": {
                        "description": "OK",
                        "content": {
                            JSON: {
                                "schema": _obj(
                                    ["accounts"],
                                    {"accounts": {"type": "array", "items": _ref("Account")}},
                                )
                            }
                        },
                    },
                    **_problems(401, 403, 429, 500, 503),
                },
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
                body=_ref("AccountInput"),
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
                body=_obj(["plan"], {"plan": _PLAN_ID}),
            )
        },
        "/v1/accounts/{account}/contract": {
            "put": _op(
                "Set contract date and timezone",
                "admin",
                {**_ok("Account"), **_problems(*_WRITE_ERRORS)},
                params=[ACCOUNT],
                body=_obj(
                    [],
                    {
                        "timezone": _nullable(_TIMEZONE),
                        "contract_date": _nullable({"type": "string", "format": "date"}),
                    },
                ),
            )
        },
        "/v1/accounts/{account}/limits/{meter}": {
            "put": _op(
                "Change a limit",
                "admin",
                {**_ok("Account"), **_problems(*_WRITE_ERRORS)},
                params=[ACCOUNT, METER],
                body=_obj(["limit"], {"limit": _AMOUNT}),
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
                body=_obj(["up_to"], {"up_to": {"type": "integer", "minimum": 1}}),
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
                {
                    "200": {
                        "description": "OK",
                        "content": {
                            JSON: {
                                "schema": _obj(
                                    ["period", "extra", "account"],
                                    {"period": _STR, "extra": _NAT, "account": _ref("Account")},
                                )
                            }
                        },
                    },
                    **_problems(*_WRITE_ERRORS),
                },
                params=[ACCOUNT, METER],
                body=_obj(["extra"], {"extra": _AMOUNT}),
            )
        },
        "/v1/accounts/{account}/sms-credits": {
            "post": _op(
                "Top up SMS credits",
                "admin",
                {
                    "202": {
                        "description": "Accepted: the event is on the events topic",
                        "content": {
                            JSON: {
                                "schema": _obj(
                                    ["account", "event_id", "credits", "meters"],
                                    {
                                        "account": _STR,
                                        "event_id": _STR,
                                        "credits": _NAT,
                                        "meters": {"type": "array", "items": _STR},
                                    },
                                )
                            }
                        },
                    },
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
                body=_obj(
                    ["credits"],
                    {"credits": {"type": "integer", "minimum": 1, "maximum": MAX_QUANTITY}},
                ),
            )
        },
        "/v1/session": {
            "post": _op(
                "Open a dashboard session",
                "dashboard",
                {
                    "200": {"description": "Cookie set", "content": {JSON: {"schema": _ref("Me")}}},
                    **_problems(400, 401, 413, 415, 422, 429, 500, 503),
                },
                body=_obj(["key"], {"key": {"type": "string", "minLength": 1, "maxLength": 200}}),
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
        "security": [{"bearer": []}, {"cookie": []}],
        "paths": _paths(),
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
