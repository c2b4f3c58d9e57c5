"""The OpenAPI document and the routes agree; views shape usage as documented (no I/O)."""

from __future__ import annotations

import re

from starlette.routing import Route

from metering.api.app import create_app
from metering.api.context import ApiConfig
from metering.api.openapi import SCHEMAS, openapi_document
from metering.api.views import current_slot, meter_usage, plan_json
from metering.core.account_codec import account_from_json
from metering.core.enforcement import Reason
from metering.core.plan_loading import example_plans
from metering.core.rfc3339 import parse_ms

UNDOCUMENTED = {
    "/openapi.json",
    "/dashboard",
    "/dashboard/app.js",
    "/dashboard/app.css",
    "/docs",
    "/docs/redoc.standalone.js",
    "/redoc",
}


def test_every_route_is_documented_with_its_methods_and_nothing_else() -> None:
    app = create_app(config=ApiConfig())
    routes: dict[str, set[str]] = {}
    for route in app.routes:
        assert isinstance(route, Route)
        if route.path not in UNDOCUMENTED:
            routes.setdefault(route.path, set()).update(
                m.lower() for m in route.methods or () if m != "HEAD"
            )
    documented = {path: set(ops) for path, ops in openapi_document()["paths"].items()}
    assert routes == documented


def test_every_reference_resolves_and_reasons_match_the_domain() -> None:
    text = repr(openapi_document())
    for name in re.findall(r"#/components/schemas/(\w+)", text):
        assert name in SCHEMAS
    item = SCHEMAS["AdmissionItem"]["properties"]["reason"]
    assert item["enum"] == [r.value for r in Reason]


def test_operation_ids_are_unique() -> None:
    ids = [op["operationId"] for ops in openapi_document()["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))


def test_every_example_plan_is_listed_and_usage_shapes_each_meter() -> None:
    now = parse_ms("2026-11-15T12:00:00Z")
    for plan in example_plans().values():
        doc = plan_json(plan)
        assert [m["name"] for m in doc["meters"]] == [m.name for m in plan.meters]
        account = account_from_json({"id": "x", "plan": plan.id, "contract_date": "2026-01-31"})
        for meter in plan.meters:
            slot = current_slot(account, plan, meter, now)
            shown = meter_usage(account, plan, slot, 0, last_update_ms=None, now_ms=now)
            assert set(shown) == set(SCHEMAS["MeterUsage"]["required"])
            assert (shown["period"] is None) == (meter.period is None)
            if meter.aggregation.value == "balance":
                assert (shown["limit"], shown["status"]) == (None, "red")
