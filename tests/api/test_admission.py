"""Admission through the API: the seed scenarios, one decision per item with a reason."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from tests.api.conftest import NOW, Api

pytestmark = pytest.mark.integration


def verdicts(doc: dict) -> list[tuple[str | None, bool, str]]:
    return [(i["item"], i["allowed"], i["reason"]) for i in doc["items"]]


async def send(api: Api, account: str, contacts: list[str]) -> dict:
    response = await api.client.post(
        f"/v1/accounts/{account}/admission/messages",
        json={"contacts": contacts},
        headers=api.as_account(account),
    )
    assert response.status_code == 200, response.text
    return response.json()


# -- Act-On: active contacts (limit 5 for account "acton") -------------------------------------


async def test_acton_new_contacts_until_the_limit_active_ones_always(
    api: Api, redis: aioredis.Redis
) -> None:
    first = await send(api, "acton", ["a", "b", "c"])
    assert [v[1] for v in verdicts(first)] == [True, True, True]
    assert {v[2] for v in verdicts(first)} == {"within_limit"}
    # Reserved at once: the month's set holds them before the processor sees any e-mail.
    assert await redis.scard("mtr:{acton}:s:active_contacts:2026-11") == 3

    second = await send(api, "acton", ["a", "d", "e", "f", "d"])
    assert verdicts(second) == [
        ("a", True, "already_counted"),
        ("d", True, "within_limit"),
        ("e", True, "within_limit"),
        ("f", False, "new_member_over_limit"),
        ("d", True, "already_counted"),  # repeated in the request: counts once
    ]
    assert (second["allowed"], second["admitted"], second["refused"]) == (False, 4, 1)
    assert (second["reason"], second["meter"], second["fits"]) == (
        "new_member_over_limit",
        "active_contacts",
        0,
    )
    assert second["items"][3]["meter"] == "active_contacts"
    assert second["meters"] == [
        {
            "meter": "active_contacts",
            "period": "2026-11",
            "used": 5,
            "held": 0,
            "limit": 5,
            "fits": 0,
            "enforcement": "new_members",
        }
    ]
    # At the limit: every active contact can still be messaged, no new one.
    third = await send(api, "acton", ["e", "b", "zz"])
    assert [v[1] for v in verdicts(third)] == [True, True, False]
    assert await redis.scard("mtr:{acton}:s:active_contacts:2026-11") == 5


async def test_acton_contacts_suppressed_before_the_month_never_count(
    api: Api, redis: aioredis.Redis
) -> None:
    # Opted out in October (before the New York month started): not counted, always allowed.
    await redis.hset("mtr:{acton}:sup", "gone", NOW - 40 * 86_400_000)
    doc = await send(api, "acton", ["gone", "x1", "x2", "x3", "x4", "x5", "x6"])
    assert verdicts(doc)[0] == ("gone", True, "suppressed_not_counted")
    assert [v[1] for v in verdicts(doc)[1:]] == [True] * 5 + [False]
    assert not await redis.sismember("mtr:{acton}:s:active_contacts:2026-11", "gone")


async def test_a_limit_change_applies_to_the_next_admission(api: Api) -> None:
    await send(api, "acton", [f"c{i}" for i in range(5)])
    response = await api.client.put(
        "/v1/accounts/acton/limits/active_contacts", json={"limit": 7}, headers=api.as_admin()
    )
    assert response.status_code == 200, response.text
    doc = await send(api, "acton", ["n1", "n2", "n3"])
    assert [v[1] for v in verdicts(doc)] == [True, True, False]


# -- ActiveCampaign: per-origin rules and campaign gates (limit 10 for account "ac") -----------


async def add(api: Api, origin: str, contacts: list[str]) -> dict:
    response = await api.client.post(
        "/v1/accounts/ac/admission/contacts",
        json={"contacts": contacts, "origin": origin},
        headers=api.as_account("ac"),
    )
    assert response.status_code == 200, response.text
    return response.json()


async def test_activecampaign_adding_contacts_per_source(api: Api, redis: aioredis.Redis) -> None:
    await redis.sadd("mtr:{ac}:g:contacts", *[f"k{i}" for i in range(9)])
    # Import: all or nothing. Two new contacts do not both fit (9 + 2 > 10): neither is added.
    imported = await add(api, "import", ["n1", "n2", "k3"])
    assert verdicts(imported) == [
        ("n1", False, "batch_over_limit"),
        ("n2", False, "batch_over_limit"),
        ("k3", False, "batch_over_limit"),
    ]
    assert (imported["allowed"], imported["reason"], imported["fits"]) == (
        False,
        "batch_over_limit",
        1,
    )
    # Manual: one by one while the level stays within the limit (9 + 1 = 10 fits).
    manual = await add(api, "manual", ["m1", "m2"])
    assert verdicts(manual) == [("m1", True, "within_limit"), ("m2", False, "limit_reached")]
    # API and forms: always accepted, even past the limit.
    await redis.sadd("mtr:{ac}:g:contacts", "n1", "m1")  # the processor applied 11 contacts
    for origin in ("api", "form"):
        doc = await add(api, origin, ["p1", "p2"])
        assert verdicts(doc) == [
            ("p1", True, "origin_always_allowed"),
            ("p2", True, "origin_always_allowed"),
        ]
    refused = await add(api, "manual", ["m2"])
    assert verdicts(refused) == [("m2", False, "limit_reached")]


async def campaign(api: Api, **body: object) -> dict:
    response = await api.client.post(
        "/v1/accounts/ac/admission/campaigns", json=body, headers=api.as_account("ac")
    )
    assert response.status_code == 200, response.text
    return response.json()


async def test_activecampaign_campaigns_stop_at_the_limit_or_110_percent_via_api(
    api: Api, redis: aioredis.Redis
) -> None:
    await redis.sadd("mtr:{ac}:g:contacts", *[f"k{i}" for i in range(9)])
    doc = await campaign(api, action="campaign.send", recipients=9)
    assert (doc["allowed"], doc["reason"], doc["meter"]) == (True, "within_limit", "contacts")
    assert (doc["admitted"], doc["refused"], doc["items"][0]["item"]) == (1, 0, "campaign.send")

    await redis.sadd("mtr:{ac}:g:contacts", "k9")  # 10 of 10: reached
    for action in ("campaign.create", "campaign.send"):
        doc = await campaign(api, action=action, recipients=10)
        assert (doc["allowed"], doc["reason"]) == (False, "ceiling_reached"), action
        doc = await campaign(api, action=action, recipients=10, contacts_via_api=True)
        assert (doc["allowed"], doc["reason"]) == (True, "within_limit"), action

    await redis.sadd("mtr:{ac}:g:contacts", "k10")  # 11 of 10: 110% reached
    doc = await campaign(api, action="campaign.send", recipients=11, contacts_via_api=True)
    assert (doc["allowed"], doc["reason"]) == (False, "ceiling_reached")
    assert doc["checks"] == [{"meter": "contacts", "allowed": False, "reason": "ceiling_reached"}]


# -- SMS: prepaid credits ----------------------------------------------------------------------


async def test_sms_may_send_while_the_prepaid_balance_covers_it(
    api: Api, redis: aioredis.Redis
) -> None:
    await redis.set("mtr:{apsis}:b:sms_credits", 5)
    response = await api.client.post(
        "/v1/accounts/apsis/admission/sms",
        json={"messages": 3, "segments": 2},
        headers=api.as_account("apsis"),
    )
    assert response.status_code == 200, response.text
    doc = response.json()
    assert [(i["allowed"], i["reason"]) for i in doc["items"]] == [
        (True, "credits_available"),
        (True, "credits_available"),
        (False, "insufficient_credits"),
    ]
    # The two admitted SMS hold their 4 credits until their events capture the hold.
    assert doc["meters"][0] == {
        "meter": "sms_credits",
        "period": None,
        "used": 5,
        "held": 4,
        "limit": None,
        "fits": None,
        "enforcement": "prepaid",
    }
    assert doc["hold"]["units"] == {"sms_credits": 4}
    again = await api.client.post(
        "/v1/accounts/apsis/admission/sms",
        json={"messages": 1, "segments": 1},
        headers=api.as_account("apsis"),
    )
    assert again.json()["allowed"] is True  # 5 - 4 held leaves one credit
    assert again.json()["hold"]["units"] == {"sms_credits": 1}


# -- advisory plans never block ----------------------------------------------------------------


async def test_advisory_meters_allow_past_the_limit_and_say_so(
    api: Api, redis: aioredis.Redis
) -> None:
    await redis.set("mtr:{apsis}:c:email_sendings:2026-11", 99)
    doc = await send(api, "apsis", ["a", "b"])
    assert verdicts(doc) == [
        ("a", True, "within_limit"),
        ("b", True, "advisory_over_limit"),
    ]
    # Nothing is reserved on counters: the processor counts the real e-mails.
    assert int(await redis.get("mtr:{apsis}:c:email_sendings:2026-11")) == 99


async def test_clerk_has_no_limits(api: Api) -> None:
    doc = await send(api, "clerk", ["a"])
    assert verdicts(doc) == [("a", True, "no_limit")]
