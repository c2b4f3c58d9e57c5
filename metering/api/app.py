"""The Starlette application: routes, body limit, security headers, error translation.

Errors: a `Problem` is sent as it is; our own errors (`MeteringError`; Redis and Kafka
failures arrive translated, never as `redis.*` or `aiokafka.*`) are mapped by their
`retriable` flag: retriable -> 503 with Retry-After (unavailable, retry later); a refusal by
Redis or Kafka -> 500; any other (a configuration the request conflicts with) -> 409.
Anything else is a 500 problem document and a log line without request headers (which carry
keys).
"""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from metering.api import (
    dashboard,
    docs_page,
    routes_admin,
    routes_admission,
    routes_events,
    routes_reports,
    routes_usage,
    routes_wait,
    store_guard,
)
from metering.api.context import RATELIMIT_STATE, ApiConfig, ApiContext
from metering.api.idempotency import IdempotencyMiddleware
from metering.api.metrics import ApiMetrics, MetricsMiddleware
from metering.api.openapi import openapi_document
from metering.api.problems import Problem
from metering.api.request_id import RequestIdMiddleware
from metering.api.responses import context, json_response
from metering.core.errors import (
    MeteringError,
    StateStoreError,
    StateStoreRefusingWrites,
    StreamError,
)

log = logging.getLogger(__name__)

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
]


class _TooLarge(Exception):
    pass


class GuardMiddleware:
    """Refuses bodies over `max_body_bytes` (413) and adds security headers to responses.

    The declared Content-Length is checked first; a chunked body is counted as it streams in,
    so a client cannot make the server buffer more than the limit either way.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and (not value.isdigit() or int(value) > self.max):
                await self._too_large().response()(scope, receive, send)
                return
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max:
                    raise _TooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                extra = _state_headers(scope)
                message = {
                    **message,
                    "headers": [*message.get("headers", []), *SECURITY_HEADERS, *extra],
                }
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except _TooLarge:
            if not started:
                await self._too_large().response()(scope, receive, guarded_send)

    def _too_large(self) -> Problem:
        """Built only when needed: this middleware runs on every request (admission's p99)."""
        return Problem(413, "body_too_large", f"the body must be at most {self.max} bytes")


def _state_headers(scope: Scope) -> list[tuple[bytes, bytes]]:
    """The RateLimit fields the request's authentication left in the scope's state."""
    found = scope.get("state", {}).get(RATELIMIT_STATE)
    if not found:
        return []
    return [(k.lower().encode(), v.encode()) for k, v in found.items()]


async def _problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return exc.response()


async def _http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    headers = dict(exc.headers or {})
    return Problem(exc.status_code, code, str(exc.detail), headers=headers).response()


async def _refusing_writes(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StateStoreRefusingWrites)
    log.warning("%s %s: %s", request.method, request.url.path, exc)
    return store_guard.refusing_writes(exc.cause).response()


async def _kafka_unavailable(request: Request, exc: Exception) -> Response:
    log.warning("%s %s: Kafka unavailable: %s", request.method, request.url.path, exc)
    return Problem(
        503,
        "kafka_unavailable",
        f"{exc}: the change was not acknowledged. It was either not written or written once "
        "and may still be applied; retrying the same request (with the same Idempotency-Key "
        "for top-ups) is safe and never applies it twice",
        title="Kafka unavailable",
        headers={"Retry-After": "1"},
    ).response()


async def _unavailable(request: Request, exc: Exception) -> Response:
    log.warning("%s %s: dependency unavailable: %s", request.method, request.url.path, exc)
    return Problem(
        503,
        "unavailable",
        "the state store (Redis) is unavailable; retry later",
        headers={"Retry-After": "1"},
    ).response()


async def _failed(request: Request, exc: Exception) -> Response:
    log.error("%s %s: dependency error: %s", request.method, request.url.path, exc)
    return Problem(
        500, "dependency_error", "the state store or Kafka refused the request"
    ).response()


async def _crash(request: Request, exc: Exception) -> Response:
    """A bug: a 500 problem document rather than Starlette's plain-text page (Starlette still
    re-raises afterwards, so the server logs the traceback; no request headers are logged)."""
    log.error("%s %s: unexpected %s", request.method, request.url.path, type(exc).__name__)
    return Problem(500, "internal_error", "the API failed unexpectedly; it was logged").response()


async def _domain(request: Request, exc: Exception) -> Response:
    return Problem(409, "configuration_conflict", str(exc)).response()


async def _metering_error(request: Request, exc: Exception) -> Response:
    """Our errors, by the `retriable` flag first (the tree's contract), then by room."""
    assert isinstance(exc, MeteringError)
    if exc.retriable:
        if isinstance(exc, StateStoreRefusingWrites):
            return await _refusing_writes(request, exc)
        if isinstance(exc, StreamError):
            return await _kafka_unavailable(request, exc)
        return await _unavailable(request, exc)
    if isinstance(exc, StateStoreError | StreamError):
        return await _failed(request, exc)
    return await _domain(request, exc)


async def health(request: Request) -> Response:
    """Liveness (no authentication): 200 while this process can still recover by itself.

    Redis and Kafka are not consulted: when they fail (unreachable, refusing writes) the API
    answers 503 and recovers on its own once they are back, and restarting it would not help
    (that is readiness's business, `/readyz`). It fails (503 `stopped`) only when background
    work it needs has ended (the configuration follower), which nothing but a restart revives.
    """
    ended = [task.get_name() for task in context(request).tasks if task.done()]
    if ended:
        raise Problem(
            503,
            "stopped",
            f"background work ended ({', '.join(ended)}): restart the API process",
            title="API process needs a restart",
        )
    return json_response({"status": "ok"})


async def ready(request: Request) -> Response:
    """Readiness: Redis answers, accepts writes and holds the store marker, so usage and
    admission answers can be trusted (no authentication). 503 `unavailable` when Redis does
    not answer, 503 `store_refusing_writes` when it refuses the probe write (MISCONF, OOM,
    READONLY; `cause` says which), 503 `store_not_initialised` when it answers without the
    marker, 503 `store_rebuilding` while a processor replays partitions after a loss.

    Read afresh (a probe is rare) and the answer refreshes the cache the hot path uses.
    `/healthz` stays a liveness probe: restarting the API would not bring the marker back.
    """
    guard = context(request).store_guard
    if not await guard.refresh() or guard.refusing_writes is not None:
        raise guard.refusal()
    return json_response(
        {"status": "ready", "redis": "reachable", "store_marker": "present", "writes": "accepted"}
    )


async def metrics(request: Request) -> Response:
    """Prometheus exposition of this application's registry, without authentication.

    The series carry no account data (route templates, methods, statuses, reasons), so there
    is nothing to protect but the API's own load figures; scrapers rarely hold API keys, and
    docs/api.md says to keep `/metrics` off the public side of a proxy. The format follows the
    scraper's Accept header, as the processor's endpoint does (`choose_encoder`).
    """
    registry = request.app.state.metrics.registry
    encoder, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encoder(registry), headers={"Content-Type": content_type})


async def openapi(request: Request) -> Response:
    return json_response(openapi_document())


def create_app(
    ctx: ApiContext | None = None,
    *,
    config: ApiConfig | None = None,
    lifespan: Any = None,
    registry: CollectorRegistry | None = None,
) -> Starlette:
    """The ASGI application over `ctx`, or over the context `lifespan` puts in
    `app.state.ctx` at start-up (server.py wires it with Kafka that way).

    Its metrics go to `registry` (a new one when None; `app.state.metrics`), never to
    prometheus_client's global registry, so that several applications can coexist.
    """
    config = config or (ctx.config if ctx is not None else ApiConfig())
    # Starlette tries routes in order, about 1 µs per route that does not match: the admission
    # routes (the hot path) come first. No two patterns overlap, so order changes nothing else.
    routes = [
        *routes_admission.ROUTES,
        Route("/healthz", health, methods=["GET"]),
        Route("/readyz", ready, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        *routes_usage.ROUTES,
        *routes_wait.ROUTES,
        *routes_admin.ROUTES,
        *routes_reports.ROUTES,
        *routes_events.ROUTES,
        *dashboard.ROUTES,
        *docs_page.ROUTES,
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={
            Problem: _problem,
            HTTPException: _http,
            MeteringError: _metering_error,
            Exception: _crash,
        },
        lifespan=lifespan,
    )
    if ctx is not None:
        app.state.ctx = ctx
    app.state.metrics = ApiMetrics.create(registry)
    # Innermost: replays a write's stored answer before authentication and routing run.
    app.add_middleware(IdempotencyMiddleware)
    app.add_middleware(GuardMiddleware, max_body_bytes=config.max_body_bytes)
    # Every answer, the guard's 413s included, carries X-Request-Id.
    app.add_middleware(RequestIdMiddleware)
    # Added last, so outermost of ours: 413s from the guard are timed and counted too.
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics, routes=app.routes)
    return app
