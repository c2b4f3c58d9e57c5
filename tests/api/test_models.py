"""The typed models (metering/api/models.py) against real answers of the API over real Redis:
each answer decodes into its model (closed objects: a field a route adds without its model
fails here), and the OpenAPI document's schemas are exactly the models' generated ones."""

from __future__ import annotations

import msgspec
import pytest

from metering.api import models
from metering.api.openapi import openapi_document
from tests.api.conftest import Api

pytestmark = pytest.mark.integration


async def test_answers_decode_into_their_models(api: Api) -> None:
    admin = api.as_admin()
    cases: list[tuple[str, str, object, type[msgspec.Struct]]] = [
        ("GET", "/v1/me", None, models.Me),
        ("GET", "/v1/accounts/acton/usage", None, models.Usage),
        ("GET", "/v1/accounts/actito/tiers", None, models.Tiers),
        ("GET", "/v1/accounts/apsis/meters/email_sendings/history?periods=3", None, models.History),
        ("GET", "/v1/accounts", None, models.AccountList),
        ("GET", "/v1/plans", None, models.PlanList),
        ("GET", "/v1/admin/tier-mismatches", None, models.TierMismatches),
        (
            "POST",
            "/v1/accounts/acton/admission/messages",
            {"contacts": ["a", "b"]},
            models.Admission,
        ),
        (
            "POST",
            "/v1/accounts/apsis/admission/campaigns",
            {"recipients": 10},
            models.CampaignAdmission,
        ),
        ("PUT", "/v1/accounts/apsis/limits/email_sendings", {"limit": 7}, models.Account),
        ("GET", "/v1/accounts/nobody/usage", None, models.Problem),
    ]
    for method, path, body, model in cases:
        answer = await api.client.request(method, path, json=body, headers=admin)
        assert answer.status_code < 500, answer.text
        msgspec.json.decode(answer.content, type=model)  # raises naming the field at fault


def test_the_document_schemas_are_the_models() -> None:
    generated = msgspec.json.schema_components(
        models.MODELS, ref_template="#/components/schemas/{name}"
    )[1]
    schemas = openapi_document()["components"]["schemas"]
    for name, schema in generated.items():
        assert schemas[name] == schema, name
    assert {"IngestAnswer", "EventOutcome"} <= set(schemas)
