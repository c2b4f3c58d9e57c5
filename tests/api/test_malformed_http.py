"""Requests the HTTP parser rejects before the application sees them are answered with a 400
problem document too (not uvicorn's plain text), by the server the API ships with
(`server_options`: the protocol subclass of metering/api/http_protocol.py); a WebSocket upgrade
is an ordinary request; an unexpected exception is a 500 problem document.

Raw bytes over a socket to a real server: an HTTP client library would refuse to send them.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import orjson
import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from metering.api.app import create_app
from tests.api.conftest import Api
from tests.api.server import ServerThread

MALFORMED = {
    "request line": b"GARBAGE\r\n\r\n",
    "method token": b"G(T /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
    "unknown method": b"FOO /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
    "content-length": b"POST /v1/session HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    "two content-lengths": (
        b"POST /v1/session HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}"
    ),
    "chunk size": (
        b"POST /v1/session HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
    ),
    "header name": b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n",
    "space in target": b"GET /v1/accounts/a b/usage HTTP/1.1\r\nHost: x\r\n\r\n",
    "HTTP version": b"GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n",
    "HTTP/2 preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
}


@pytest.fixture(scope="module")
def server(stack, _redis_db_numbers) -> Iterator[ServerThread]:  # type: ignore[no-untyped-def]
    url = f"{stack.redis_url}/{next(_redis_db_numbers)}"
    running = ServerThread(url).start()
    yield running
    running.stop()


def exchange(port: int, raw: bytes) -> tuple[list[bytes], bytes]:
    """Send `raw`, read until the server closes or the body is complete: (head lines, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(raw)
        data = b""
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
            head, found, body = data.partition(b"\r\n\r\n")
            lengths = [
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ]
            if found and lengths and len(body) >= lengths[0]:
                break
    head, _, body = data.partition(b"\r\n\r\n")
    return head.split(b"\r\n"), body


def header(lines: list[bytes], name: bytes) -> bytes | None:
    for line in lines[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip()
    return None


@pytest.mark.integration
@pytest.mark.parametrize("what", sorted(MALFORMED))
def test_a_request_the_parser_rejects_gets_a_problem_document(
    server: ServerThread, what: str
) -> None:
    lines, body = exchange(server.port, MALFORMED[what])
    assert lines[0] == b"HTTP/1.1 400 Bad Request", lines
    assert header(lines, b"content-type") == b"application/problem+json"
    assert header(lines, b"x-content-type-options") == b"nosniff"
    doc = orjson.loads(body)
    assert doc["status"] == 400
    assert doc["code"] == "malformed_http"
    assert doc["type"] == "https://metering.invalid/problems/malformed_http"


@pytest.mark.integration
def test_a_websocket_upgrade_is_an_ordinary_request(server: ServerThread) -> None:
    raw = (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    lines, body = exchange(server.port, raw)
    assert lines[0] == b"HTTP/1.1 200 OK", lines
    assert orjson.loads(body) == {"status": "ok"}


@pytest.mark.integration
async def test_an_unexpected_exception_is_a_500_problem_document(api: Api) -> None:
    async def boom(request: Request) -> Response:
        raise RuntimeError("boom")

    app = create_app(api.ctx)
    app.router.routes.insert(0, Route("/boom", boom))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t.test") as client:
        response = await client.get("/boom")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "internal_error"
