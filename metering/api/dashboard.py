"""The "My consumption" page (modelled on Actito's app): one bar per meter, colour-coded.

The page is static (HTML, CSS, JS in `static/`) and reads the JSON API like any client, so
it shows exactly what `/v1/accounts/{account}/usage` says. Authentication: the page asks for
the API key (or takes it from the URL fragment `#key=...`, which browsers never send to the
server, so it cannot end up in access logs), exchanges it once at `POST /v1/session` for an
HttpOnly cookie and forgets it. A strict Content-Security-Policy allows only this origin's
scripts and styles: no inline code, no third-party requests.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_TYPES = {
    "dashboard.html": "text/html; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}


@cache
def _asset(name: str) -> bytes:
    return resources.files("metering.api").joinpath("static", name).read_bytes()


def _serve(name: str) -> Response:
    return Response(
        _asset(name),
        media_type=_TYPES[name],
        headers={"Content-Security-Policy": CSP},
    )


async def page(request: Request) -> Response:
    return _serve("dashboard.html")


async def script(request: Request) -> Response:
    return _serve("dashboard.js")


async def style(request: Request) -> Response:
    return _serve("dashboard.css")


ROUTES = [
    Route("/dashboard", page, methods=["GET"]),
    Route("/dashboard/app.js", script, methods=["GET"]),
    Route("/dashboard/app.css", style, methods=["GET"]),
]
