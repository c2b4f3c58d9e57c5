"""Plans and accounts: changes are validated, published and visible at once; errors are
problem documents naming the field."""

from __future__ import annotations

import orjson
import pytest

from metering.api.auth import Scope
from tests.api.conftest import Api

pytestmark = pytest.mark.integration


async def test_list_and_get_plans(api: Api) -> None:
    response = await api.client.get("/v1/plans", headers=api.as_admin())
    plans = {p["id"]: p for p in response.json()["plans"]}
    assert set(plans) == {
        "actito-standard",
        "activecampaign-lite",
        "acton-active-contacts",
        "apsis-essential",
        "clerk",
    }
    acton = plans["acton-active-contacts"]["meters"][0]
    assert (acton["name"], acton["limit"], acton["enforcement"]) == (
        "active_contacts",
        10000,
        "new_members",
    )
    actito = await api.client.get("/v1/plans/actito-standard", headers=api.as_admin())
    interactions = next(m for m in actito.json()["meters"] if m["name"] == "interactions")
    assert interactions["limit"] == {"of": "profiles", "times": "12"}
    missing = await api.client.get("/v1/plans/nope", headers=api.as_admin())
    assert missing.status_code == 404


async def test_create_assign_contract_limit_and_publish(api: Api) -> None:
    admin = api.as_admin()
    created = await api.client.put(
        "/v1/accounts/newco",
        json={"plan": "apsis-essential", "timezone": "Europe/Oslo"},
        headers=admin,
    )
    assert created.status_code == 201, created.text
    again = await api.client.put(
        "/v1/accounts/newco", json={"plan": "apsis-essential"}, headers=admin
    )
    assert again.status_code == 200
    # Actito needs a contract date (billing year): refused until it has one.
    refused = await api.client.put(
        "/v1/accounts/newco/plan", json={"plan": "actito-standard"}, headers=admin
    )
    assert refused.status_code == 409
    assert refused.json()["field"] == "contract_date"
    contract = await api.client.put(
        "/v1/accounts/newco/contract",
        json={"contract_date": "2026-01-31", "timezone": "Europe/Brussels"},
        headers=admin,
    )
    assert contract.status_code == 200, contract.text
    moved = await api.client.put(
        "/v1/accounts/newco/plan", json={"plan": "actito-standard"}, headers=admin
    )
    assert moved.status_code == 200, moved.text
    limit = await api.client.put(
        "/v1/accounts/newco/limits/profiles", json={"limit": 2000}, headers=admin
    )
    assert limit.json() == {
        "id": "newco",
        "plan": "actito-standard",
        "timezone": "Europe/Brussels",
        "contract_date": "2026-01-31",
        "limits": {"profiles": 2000},
    }
    # Every change went to the accounts topic, in order, and the API reads its own writes.
    assert [a.plan_id for a in api.recorder.accounts] == [
        "apsis-essential",
        "apsis-essential",
        "apsis-essential",
        "actito-standard",
        "actito-standard",
    ]
    usage = await api.client.get("/v1/accounts/newco/usage", headers=admin)
    interactions = next(m for m in usage.json()["meters"] if m["meter"] == "interactions")
    assert interactions["limit"] == 24_000  # 12 x the new profile limit
    assert interactions["period"]["key"] == "y2026-01-31"


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "field"),
    [
        ("PUT", "/v1/accounts/acton", {"plan": "nope"}, 409, "plan"),
        ("PUT", "/v1/accounts/acton", {"plan": "acton-active-contacts", "x": 1}, 422, "x"),
        ("PUT", "/v1/accounts/acton", {"plan": "acton-active-contacts", "id": "other"}, 409, "id"),
        (
            "PUT",
            "/v1/accounts/acton",
            {"plan": "acton-active-contacts", "timezone": "Mars/Base"},
            422,
            "timezone",
        ),
        (
            "PUT",
            "/v1/accounts/acton",
            {"plan": "acton-active-contacts", "limits": {"nope": 3}},
            409,
            "limits.nope",
        ),
        (
            "PUT",
            "/v1/accounts/acton",
            {"plan": "acton-active-contacts", "limits": {"active_contacts": -1}},
            422,
            "limits.active_contacts",
        ),
        (
            "PUT",
            "/v1/accounts/acton/contract",
            {"contract_date": "2026-02-30"},
            422,
            "contract_date",
        ),
        ("PUT", "/v1/accounts/acton/limits/active_contacts", {"limit": "10"}, 422, "limit"),
        ("PUT", "/v1/accounts/acton/limits/active_contacts", {}, 422, "limit"),
        ("PUT", "/v1/accounts/acton/limits/nope", {"limit": 1}, 404, "meter"),
        ("PUT", "/v1/accounts/apsis/limits/sms_credits", {"limit": 1}, 409, "meter"),
        ("PUT", "/v1/accounts/apsis/extensions/known_profiles", {"extra": 1}, 409, "meter"),
        ("PUT", "/v1/accounts/Bad%20Id", {"plan": "apsis-essential"}, 422, "account"),
        ("POST", "/v1/accounts/acton/admission/messages", {"contacts": []}, 422, "contacts"),
        (
            "POST",
            "/v1/accounts/acton/admission/messages",
            {"contacts": ["a", 3]},
            422,
            "contacts[1]",
        ),
        (
            "POST",
            "/v1/accounts/acton/admission/messages",
            {"contacts": ["a"], "kind": "x"},
            422,
            "kind",
        ),
        ("POST", "/v1/accounts/ac/admission/contacts", {"contacts": ["a"]}, 422, "origin"),
        ("POST", "/v1/accounts/ac/admission/campaigns", {"action": "explode"}, 422, "action"),
        (
            "POST",
            "/v1/accounts/ac/admission/campaigns",
            {"action": "automation.trigger"},
            422,
            "action",
        ),
        ("POST", "/v1/accounts/ac/admission/automations", {"contacts": []}, 422, "contacts"),
        (
            "POST",
            "/v1/accounts/ac/admission/automations",
            {"contacts": ["a"], "contacts_via_api": "yes"},
            422,
            "contacts_via_api",
        ),
        ("POST", "/v1/accounts/ac/admission/sms", {"messages": 0}, 422, "messages"),
        ("POST", "/v1/accounts/apsis/sms-credits", {"credits": 5}, 422, "Idempotency-Key"),
    ],
)
async def test_invalid_input_is_a_problem_naming_the_field(
    api: Api, method: str, path: str, body: object, status: int, field: str
) -> None:
    response = await api.client.request(method, path, json=body, headers=api.as_admin())
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["field"] == field
    assert problem["status"] == status
    assert problem["detail"]


async def test_malformed_json_and_wrong_media_type(api: Api) -> None:
    headers = {**api.as_admin(), "content-type": "application/json"}
    bad = await api.client.put("/v1/accounts/acton", content=b"{nope", headers=headers)
    assert (bad.status_code, bad.json()["code"]) == (400, "malformed_json")
    text = await api.client.put(
        "/v1/accounts/acton",
        content=b"plan=x",
        headers={**api.as_admin(), "content-type": "text/plain"},
    )
    assert text.status_code == 415
    array = await api.client.put("/v1/accounts/acton", json=[1], headers=api.as_admin())
    assert array.status_code == 422


async def test_unknown_route_and_method_are_problems(api: Api) -> None:
    missing = await api.client.get("/v1/nothing", headers=api.as_admin())
    assert (missing.status_code, missing.json()["code"]) == (404, "not_found")
    wrong = await api.client.patch("/v1/plans", headers=api.as_admin())
    assert wrong.status_code == 405


async def test_sms_top_up_is_an_event_with_an_id_from_the_idempotency_key(api: Api) -> None:
    headers = {**api.as_admin(), "Idempotency-Key": "order-123"}
    first = await api.client.post(
        "/v1/accounts/apsis/sms-credits", json={"credits": 500}, headers=headers
    )
    assert first.status_code == 202, first.text
    retry = await api.client.post(
        "/v1/accounts/apsis/sms-credits", json={"credits": 500}, headers=headers
    )
    assert retry.json()["event_id"] == first.json()["event_id"]
    assert retry.headers["idempotent-replayed"] == "true"
    assert len(api.recorder.events) == 1  # the retry was answered from the stored answer
    reused = await api.client.post(
        "/v1/accounts/actito/sms-credits", json={"credits": 500}, headers=headers
    )
    assert (reused.status_code, reused.json()["code"]) == (422, "idempotency_key_reused")
    # Another caller's order-123 is its own key; the account is part of the event id.
    second_admin, _ = await api.ctx.keys.create(Scope.ADMIN)
    other = await api.client.post(
        "/v1/accounts/actito/sms-credits",
        json={"credits": 500},
        headers={"Authorization": f"Bearer {second_admin}", "Idempotency-Key": "order-123"},
    )
    assert other.status_code == 202, other.text
    assert other.json()["event_id"] != first.json()["event_id"]
    account, value = api.recorder.events[0]
    event = orjson.loads(value)
    assert account == "apsis"
    assert event["type"] == "sms.credits_added"
    assert event["subject"] == "apsis"
    assert event["data"] == {"quantity": 500}
    assert event["id"] == first.json()["event_id"]
    assert first.json()["meters"] == ["sms_credits"]
    none = await api.client.post(
        "/v1/accounts/acton/sms-credits",
        json={"credits": 5},
        headers={**headers, "Idempotency-Key": "order-124"},
    )
    assert none.status_code == 409


async def test_the_tier_an_account_pays_for_is_one_of_its_ladders_tiers(api: Api) -> None:
    admin = api.as_admin()
    paid = await api.client.put(
        "/v1/accounts/clerk/paid-tiers/search", json={"up_to": 25_000}, headers=admin
    )
    assert paid.status_code == 200, paid.text
    assert paid.json()["paid_tiers"] == {"search": 25_000}
    assert dict(api.recorder.accounts[-1].paid_tiers) == {"search": 25_000}
    not_a_tier = await api.client.put(
        "/v1/accounts/clerk/paid-tiers/search", json={"up_to": 20_000}, headers=admin
    )
    assert not_a_tier.status_code == 409
    assert not_a_tier.json()["field"] == "paid_tiers.search"
    assert "20000 is not a tier of it (up to: 5000, 10000, 25000" in not_a_tier.json()["detail"]
    no_ladder = await api.client.put(
        "/v1/accounts/clerk/paid-tiers/searches", json={"up_to": 25_000}, headers=admin
    )
    assert (no_ladder.status_code, no_ladder.json()["field"]) == (404, "ladder")
    whole = await api.client.put(
        "/v1/accounts/clerk",
        json={"plan": "clerk", "paid_tiers": {"search": 25_000, "email": "lots"}},
        headers=admin,
    )
    assert (whole.status_code, whole.json()["field"]) == (422, "paid_tiers.email")
    cleared = await api.client.delete("/v1/accounts/clerk/paid-tiers/search", headers=admin)
    assert cleared.status_code == 200
    assert "paid_tiers" not in cleared.json()
    own_key = await api.client.put(
        "/v1/accounts/clerk/paid-tiers/search",
        json={"up_to": 25_000},
        headers=api.as_account("clerk"),
    )
    assert own_key.status_code == 403
