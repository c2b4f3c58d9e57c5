"""The API's Prometheus metrics: request latency by route, admission decisions, requests in flight.

Names, types, labels and buckets are the ones docs/observability.md ("API metrics") specifies,
because the alert rules and the Grafana dashboard in deploy/ query exactly those. Labels are
bounded: `route` is the Starlette route's path *template* (`/v1/accounts/{account}/usage`),
never the raw path, which carries account ids; `method` is one of the HTTP methods we serve or
`other`, since a client may send any token as a method; `status` is a numeric code.

Metrics live on a `CollectorRegistry` per application, never on the global one, so a test can
build several applications (or an API next to a processor) and read each one's own numbers.

The middleware is pure ASGI rather than Starlette's `BaseHTTPMiddleware`, which runs the
downstream app in a separate task and pipes the response through memory streams: admission's
p99 target is 5 ms and everything here runs on every request. Per request it costs two clock
reads, a gauge increment and decrement, and one histogram observation on a labelled child
looked up in a small dict of its own (prometheus_client's `labels()` validates and locks on
every call).
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
"""Seconds; dense below 10 ms, where admission's 5 ms p99 target sits."""
UNMATCHED = "<unmatched>"
"""The `route` of requests no route matched (404s, slash redirects)."""
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
ADMISSION_ACTIONS = ("messages", "contacts", "campaigns", "sms")


@dataclass(frozen=True, slots=True)
class ApiMetrics:
    """Every metric of one API application, on its own registry."""

    registry: CollectorRegistry
    request_duration: Histogram
    admission_decisions: Counter
    in_flight: Gauge
    _decisions: dict[tuple[str, bool, str], Counter] = field(default_factory=dict)

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> ApiMetrics:
        """The metrics on `registry` (a new, empty one when None)."""
        registry = CollectorRegistry() if registry is None else registry
        return cls(
            registry=registry,
            request_duration=Histogram(
                "metering_api_request_duration_seconds",
                "Time from request to response, by route template, method and status.",
                ["route", "method", "status"],
                buckets=BUCKETS,
                registry=registry,
            ),
            admission_decisions=Counter(
                "metering_api_admission_decisions",
                "Admission decisions, one per decided item (contact, SMS, campaign).",
                ["action", "allowed", "reason"],
                registry=registry,
            ),
            in_flight=Gauge(
                "metering_api_requests_in_flight",
                "Requests being served.",
                registry=registry,
            ),
        )

    def count_decisions(self, action: str, verdicts: Iterable[tuple[bool, str]]) -> None:
        """Count (allowed, reason) verdicts of `action`: one increment per distinct pair, so a
        10,000-contact request costs a handful of counter updates, not 10,000. The labelled
        children are kept (`labels()` validates and locks on every call; the label sets are
        bounded: four actions times the reasons)."""
        for (allowed, reason), n in Tally(verdicts).items():
            key = (action, allowed, reason)
            child = self._decisions.get(key)
            if child is None:
                child = self._decisions[key] = self.admission_decisions.labels(
                    action, "true" if allowed else "false", reason
                )
            child.inc(n)


class MetricsMiddleware:
    """Times every HTTP request and keeps the in-flight gauge (see the module docstring).

    The route is read from the scope after the app ran: Starlette's router writes the matched
    route (and its endpoint) into the very scope dict it was given. A request whose response
    never started (an exception escaped the app) is counted as 500, which is what the server
    then sends.
    """

    def __init__(self, app: ASGIApp, metrics: ApiMetrics, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self._metrics = metrics
        self._paths: dict[object, str] = {
            r.endpoint: r.path for r in routes if isinstance(r, Route)
        }
        """Endpoint -> template, for Starlette versions that do not put `route` in the scope."""
        self._children: dict[tuple[str, str, int], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        gauge = self._metrics.in_flight
        gauge.inc()
        start = time.perf_counter()
        try:
            await self.app(scope, receive, send_status)
        finally:
            elapsed = time.perf_counter() - start
            gauge.dec()
            self._child(scope, status).observe(elapsed)

    def _child(self, scope: Scope, status: int) -> Any:
        route = scope.get("route")
        path = getattr(route, "path", None)
        if not isinstance(path, str):
            path = self._paths.get(scope.get("endpoint"), UNMATCHED)
        method = scope["method"] if scope["method"] in METHODS else "other"
        key = (path, method, status)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self._metrics.request_duration.labels(
                path, method, str(status)
            )
        return child
