"""The browsable API reference: `/docs` renders `/openapi.json` with Redoc, served from here.

Redoc's standalone bundle is fetched from npm once at set-up (`ensure_api_docs` in
deploy/lib.sh, pinned version) into `static/vendor/`, and served by the API at
`/docs/redoc.standalone.js`: the page loads nothing from another origin. Its
Content-Security-Policy allows this origin's scripts only; Redoc needs inline styles (it
styles with generated `<style>` elements) and a `blob:` worker (its search index).
`/redoc` redirects to `/docs`. One URL of the bundle points at Redocly's CDN (the logo of its
"API docs by Redocly" footer): it is replaced by an empty `data:` URL as the bundle is served,
so the browser never asks another origin for anything (tests/api/test_docs_browser.py).
Without the bundle (an installation that skipped the set-up) `/docs` answers 503
`docs_not_installed` saying how to fetch it; `/openapi.json` still works.
No authentication: the document describes the API, it holds no data.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from metering.api.problems import Problem

CSP = (
    "default-src 'none'; script-src 'self'; worker-src blob:; style-src 'self' 'unsafe-inline'; "
    "connect-src 'self'; img-src 'self' data:; font-src 'self'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
BUNDLE = "redoc.standalone.js"
_CDN_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"


@cache
def _page() -> bytes:
    return resources.files("metering.api").joinpath("static", "docs.html").read_bytes()


@cache
def _bundle() -> bytes | None:
    found = resources.files("metering.api").joinpath("static", "vendor", BUNDLE)
    if not found.is_file():
        return None
    return found.read_bytes().replace(_CDN_LOGO, b"data:,")


def _missing() -> Problem:
    return Problem(
        503,
        "docs_not_installed",
        f"the Redoc bundle ({BUNDLE}) is not installed: run deploy/demo or deploy/test once, "
        "or `source deploy/lib.sh; repo=$PWD me=setup ensure_api_docs` (needs npm); "
        "/openapi.json works without it",
    )


async def page(request: Request) -> Response:
    if _bundle() is None:
        raise _missing()
    return Response(
        _page(),
        media_type="text/html; charset=utf-8",
        headers={"Content-Security-Policy": CSP},
    )


async def bundle(request: Request) -> Response:
    found = _bundle()
    if found is None:
        raise _missing()
    return Response(found, media_type="text/javascript; charset=utf-8")


async def redoc(request: Request) -> Response:
    return RedirectResponse("/docs", status_code=308)


ROUTES = [
    Route("/docs", page, methods=["GET"]),
    Route("/docs/redoc.standalone.js", bundle, methods=["GET"]),
    Route("/redoc", redoc, methods=["GET"]),
]
