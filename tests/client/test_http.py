"""The SDK's HTTP client against a real API process (uvicorn on a port, the test's Redis)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from metering.client import ApiError
from metering.client.http import AsyncMeteringApi, MeteringApi
from tests.api.server import ServerThread, free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def server(redis_url: str) -> Iterator[ServerThread]:
    running = ServerThread(redis_url).start()
    yield running
    running.stop()


def test_usage_and_admission_answers_with_the_accounts_key(server: ServerThread) -> None:
    with MeteringApi(server.url, key=server.tokens["acton"]) as api:
        meters = {m["meter"]: m for m in api.usage("acton")["meters"]}
        assert meters["active_contacts"]["limit"] == 5
        answer = api.admit_messages("acton", [f"c{i}" for i in range(1, 7)])
        assert (answer["allowed"], answer["admitted"], answer["refused"]) == (False, 5, 1)
        assert answer["items"][5]["reason"] == "new_member_over_limit"
        # the reservations show in the usage now: the same counters the processor keeps
        after = {m["meter"]: m for m in api.usage("acton")["meters"]}
        assert after["active_contacts"]["used"] == 5
        with pytest.raises(ApiError) as caught:
            api.usage("apsis")  # another account's usage: not with this key
        assert (caught.value.status, caught.value.code) == (403, "forbidden")
        with pytest.raises(ApiError) as caught:
            api.admit_contacts("acton", ["x"], origin="telepathy")
        assert (caught.value.status, caught.value.code) == (422, "invalid_field")
        assert "origin" in str(caught.value)


async def test_the_async_client_and_an_admin_key(server: ServerThread) -> None:
    async with AsyncMeteringApi(server.url, key=server.admin) as api:
        imported = await api.admit_contacts("ac", [f"p{i}" for i in range(11)], origin="import")
        assert (imported["allowed"], imported["reason"], imported["fits"]) == (
            False,
            "batch_over_limit",
            10,
        )
        history = await api.history("apsis", "email_sendings", periods=4)
        assert [row["closed"] for row in history["periods"]] == [True, True, True, False]
        sms = await api.admit_sms("apsis", messages=1)
        assert sms["admitted"] + sms["refused"] == 1
        with pytest.raises(ApiError) as caught:
            await api.usage("nobody")
        assert (caught.value.status, caught.value.code) == (404, "unknown_account")


def test_a_server_that_does_not_answer_is_an_api_error() -> None:
    api = MeteringApi(f"http://127.0.0.1:{free_port()}", key="mk_x", timeout_s=2)
    with api, pytest.raises(ApiError) as caught:
        api.usage("acme")
    assert (caught.value.status, caught.value.code) == (0, "unreachable")
