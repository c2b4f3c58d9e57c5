"""Waiting for the counts: `GET /v1/wait` (every partition, admin key) and
`GET /v1/accounts/{account}/wait` (the account's partition, its key or an admin key).

Both read the events topic's end offsets at the call and return once the processor applied
everything below them: 200 `caught_up: true`; or, when `timeout_ms` passes first, 504
`not_caught_up` with the lag left (a problem document carrying the same members), so that
`curl -f` and scripts fail on it. `timeout_ms=0` answers at once (a freshness check).
Kafka not answering within the read bound is 503 `kafka_unavailable`.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from metering.api import validation as v
from metering.api.freshness import Freshness, WaitResult
from metering.api.problems import Problem
from metering.api.responses import context, json_response
from metering.core.errors import StreamError

DEFAULT_TIMEOUT_MS = 30_000
MAX_TIMEOUT_MS = 300_000


async def wait_all(request: Request) -> Response:
    ctx = context(request)
    await ctx.admin(request)
    return await _wait(request, _freshness(request), None)


async def wait_account(request: Request) -> Response:
    ctx = context(request)
    account = v.path(request, "account", v.ACCOUNT_ID)
    await ctx.state_reader(request, account)
    ctx.lookup(account)
    return await _wait(request, _freshness(request), account)


def _freshness(request: Request) -> Freshness:
    found = context(request).freshness
    if found is None:
        raise Problem(503, "unavailable", "this API runs without Kafka: it cannot wait for it")
    return found


async def _wait(request: Request, freshness: Freshness, account: str | None) -> Response:
    timeout_ms = v.query_int(
        request, "timeout_ms", minimum=0, maximum=MAX_TIMEOUT_MS, default=DEFAULT_TIMEOUT_MS
    )
    try:
        result = await freshness.wait(account, timeout_ms)
    except (StreamError, TimeoutError) as exc:
        detail = str(exc) or f"no answer within {freshness.read_timeout_s:g} s"
        raise Problem(
            503,
            "kafka_unavailable",
            f"cannot read the end offsets of the events topic: {detail}",
            title="Kafka unavailable",
            headers={"Retry-After": "1"},
        ) from None
    if not result.caught_up:
        raise _not_caught_up(result, account, timeout_ms)
    return json_response(result.json(account))


def _not_caught_up(result: WaitResult, account: str | None, timeout_ms: int) -> Problem:
    scope = "the events topic" if account is None else f"the partition of {account}"
    return Problem(
        504,
        "not_caught_up",
        f"{result.lag} records produced to {scope} before the call are not applied yet "
        f"after {timeout_ms} ms: is a processor running? (`metering processor`)",
        title="Not caught up",
        extra=result.json(account),
    )


ROUTES = [
    Route("/v1/wait", wait_all, methods=["GET"]),
    Route("/v1/accounts/{account}/wait", wait_account, methods=["GET"]),
]
