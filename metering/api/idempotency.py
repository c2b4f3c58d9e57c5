"""`Idempotency-Key` on every write: a retried request gets the first answer, never a second
effect (the IETF draft "The Idempotency-Key HTTP Header Field").

Any POST, PUT, PATCH or DELETE under `/v1/` (the dashboard session aside: it changes nothing
stored) may carry `Idempotency-Key` (1..100 of `A-Za-z0-9._:-`; the SMS top-up requires it).
The key is remembered per caller (the SHA-256 of the `Authorization` header, so two callers
never share keys) for `ApiConfig.idempotency_ttl_s` in Redis (metering/state/idempotency.py)
together with a fingerprint of the request (method, path, query, body):

- first time: the request runs; its answer (status, headers, body) is stored unless it is a
  5xx, a 429 or a 401/403 (those are worth retrying for real), in which case the key is freed;
- same key, same request: the stored answer, with `Idempotent-Replayed: true`;
- same key, another request: 422 `idempotency_key_reused`;
- same key while the first is still running: 409 `idempotency_in_progress` (Retry-After: 1).

An invalid key is refused with 422 `invalid_field` naming `Idempotency-Key`.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from metering.api.context import ApiContext
from metering.api.problems import Problem, invalid
from metering.api.validation import IDEMPOTENCY_KEY

HEADER = "Idempotency-Key"
_HEADER_KEY = b"idempotency-key"
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
EXEMPT = frozenset({"/v1/session"})
_NOT_STORED = frozenset({401, 403, 429})
_PENDING = b'{"pending":true}'


@dataclass(frozen=True, slots=True)
class _Claim:
    """A key this request claimed: where its answer goes."""

    ctx: ApiContext
    digest: str
    fingerprint: str
    ttl_ms: int


def applies(scope: Scope) -> bool:
    path: str = scope["path"]
    return scope["method"] in _WRITES and path.startswith("/v1/") and path not in EXEMPT


class IdempotencyMiddleware:
    """Stores and replays the answers of writes that carry an `Idempotency-Key`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not applies(scope):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", ()))
        given = headers.get(_HEADER_KEY)
        if given is None:
            await self.app(scope, receive, send)
            return
        key = given.decode("latin-1")
        if not IDEMPOTENCY_KEY.fullmatch(key):
            problem = invalid(HEADER, f"must match {IDEMPOTENCY_KEY.pattern}")
            await problem.response()(scope, receive, send)
            return
        body = await _body(receive)
        ctx: ApiContext = scope["app"].state.ctx
        ttl_ms = int(ctx.config.idempotency_ttl_s * 1000)
        who = hashlib.sha256(headers.get(b"authorization", b"")).hexdigest()
        digest = hashlib.sha256(f"{who}\x1f{key}".encode()).hexdigest()
        fingerprint = _fingerprint(scope, body)
        found = await ctx.store.claim_idempotency(digest, _PENDING, ttl_ms)
        if found is not None:
            await _answer_again(found, fingerprint, scope, receive, send)
            return
        await self._run(scope, body, send, _Claim(ctx, digest, fingerprint, ttl_ms))

    async def _run(self, scope: Scope, body: bytes, send: Send, claim: _Claim) -> None:
        """Serve the request with its buffered body; keep its answer or free the key."""
        ctx, digest = claim.ctx, claim.digest
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        status = 500
        out_headers: list[tuple[bytes, bytes]] = []
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal status, out_headers
            if message["type"] == "http.response.start":
                status = message["status"]
                out_headers = list(message.get("headers", []))
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, replay, capture)
        except BaseException:
            await ctx.store.release_idempotency(digest)
            raise
        if status >= 500 or status in _NOT_STORED:
            await ctx.store.release_idempotency(digest)
            return
        record = {
            "fingerprint": claim.fingerprint,
            "status": status,
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in out_headers],
            "body": base64.b64encode(b"".join(chunks)).decode(),
        }
        await ctx.store.save_idempotency(digest, orjson.dumps(record), claim.ttl_ms)


async def _body(receive: Receive) -> bytes:
    """The whole request body (GuardMiddleware, outside, has already bounded its size)."""
    parts: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(parts)


def _fingerprint(scope: Scope, body: bytes) -> str:
    h = hashlib.sha256()
    for part in (scope["method"].encode(), scope["path"].encode(), scope.get("query_string", b"")):
        h.update(part + b"\x1f")
    h.update(body)
    return h.hexdigest()


async def _answer_again(
    found: bytes, fingerprint: str, scope: Scope, receive: Receive, send: Send
) -> None:
    """The stored answer, or the problem that says why there is none to give."""
    record: dict[str, Any] = orjson.loads(found)
    if record.get("pending"):
        problem = Problem(
            409,
            "idempotency_in_progress",
            "a request with this Idempotency-Key is still being processed; retry shortly",
            field=HEADER,
            headers={"Retry-After": "1"},
        )
    elif record["fingerprint"] != fingerprint:
        problem = Problem(
            422,
            "idempotency_key_reused",
            "this Idempotency-Key was used for another request (method, path or body "
            "differ); use a new key for a new request",
            field=HEADER,
        )
    else:
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in record["headers"]]
        headers.append((b"idempotent-replayed", b"true"))
        await send({"type": "http.response.start", "status": record["status"], "headers": headers})
        await send({"type": "http.response.body", "body": base64.b64decode(record["body"])})
        return
    await problem.response()(scope, receive, send)
