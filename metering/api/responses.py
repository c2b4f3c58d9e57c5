"""JSON responses (orjson, integers stay integers), the context and the metrics of a request."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from metering.api.context import ApiContext
from metering.api.metrics import ApiMetrics


def json_response(doc: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(doc), status_code=status, media_type="application/json", headers=headers
    )


def context(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.ctx
    return ctx


def metrics(request: Request) -> ApiMetrics:
    found: ApiMetrics = request.app.state.metrics
    return found
