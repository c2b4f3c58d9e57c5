"""The request id: taken from `X-Request-Id` (or made), echoed on the response, put in logs.

A caller (or a proxy in front) that sends `X-Request-Id` gets the same value back and finds it
in the API's log lines, so one request can be followed from the caller's logs to ours. A value
that is missing, longer than 128 characters or made of other characters than letters, digits
and `._:-` is replaced by a new one (32 hex digits), never refused: a bad id must not fail a
request, and only safe characters may reach a log line.

`current` holds the id of the request being served (a ContextVar, so concurrent requests do
not mix); `RequestIdFilter` copies it into every log record as `request_id` and appends it to
the message of text logs. Log configuration (metering/runtime) reads both from here.
"""

from __future__ import annotations

import logging
import re
import uuid
from contextvars import ContextVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "X-Request-Id"
_HEADER_KEY = b"x-request-id"
_VALID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")

current: ContextVar[str | None] = ContextVar("metering_request_id", default=None)
"""The id of the request this task serves (None outside a request)."""


def new_id() -> str:
    return uuid.uuid4().hex


def accepted(value: bytes | None) -> str:
    """The caller's id when it is safe to echo and log, else a new one."""
    if value is not None and _VALID.fullmatch(value):
        return value.decode("ascii")
    return new_id()


class RequestIdMiddleware:
    """Sets `current` for the request and adds `X-Request-Id` to its response (every one,
    problems and 413s included: it is the outermost of ours but the metrics)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope.get("headers", ()) if k == _HEADER_KEY), None)
        rid = accepted(given)
        header = (_HEADER_KEY, rid.encode("ascii"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), header]}
            await send(message)

        token = current.set(rid)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            current.reset(token)


class RequestIdFilter(logging.Filter):
    """Gives every record a `request_id` attribute (None outside requests); with `in_text`,
    also appends ` request_id=<id>` to the message of records logged during a request."""

    def __init__(self, *, in_text: bool = True) -> None:
        super().__init__()
        self._in_text = in_text

    def filter(self, record: logging.LogRecord) -> bool:
        rid = current.get()
        if getattr(record, "request_id", None) is None:
            record.request_id = rid
        if self._in_text and rid is not None and not getattr(record, "_rid_added", False):
            # The id holds no `%` (see _VALID), so the message stays a valid format string.
            record.msg = f"{record.msg} request_id={rid}"
            record._rid_added = True
        return True
