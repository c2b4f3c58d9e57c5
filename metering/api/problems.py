"""Errors as RFC 9457 problem documents (`application/problem+json`).

Every refusal the API makes is a `Problem`: a status, a stable `code`, a human `detail` and,
for validation errors, the dotted `field` at fault, so a client can point at the input that
was wrong without parsing prose. Store and Kafka failures become 503 (retry) or 500 documents
in `app.py`; nothing else reaches the client as an HTML error page or a stack trace.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.responses import Response

PROBLEM_TYPE = "application/problem+json"


class Problem(Exception):
    """An HTTP error to send as a problem document."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        field: str | None = None,
        headers: Mapping[str, str] | None = None,
        title: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.field = field
        self.headers = dict(headers or {})
        self.title = title
        """Overrides the status's generic title when the code has a more telling one (RFC 9457:
        one title per problem type, and the type is the code)."""
        self.extra = dict(extra or {})
        """More members of the document, for problems that name a cause (RFC 9457
        extension members), e.g. `cause` of `store_refusing_writes`."""

    def document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "type": f"https://metering.invalid/problems/{self.code}",
            "title": self.title or TITLES.get(self.status, "Error"),
            "status": self.status,
            "code": self.code,
            "detail": self.detail,
        }
        if self.field is not None:
            doc["field"] = self.field
        doc.update(self.extra)
        return doc

    def response(self) -> Response:
        return Response(
            orjson.dumps(self.document()),
            status_code=self.status,
            media_type=PROBLEM_TYPE,
            headers=self.headers,
        )


TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
}


def invalid(field: str, detail: str) -> Problem:
    """422: the request is well-formed JSON but `field` has a value we cannot use."""
    return Problem(422, "invalid_field", detail, field=field)


def conflict(field: str, detail: str) -> Problem:
    """409: the input is valid, but the account's plan or state does not allow it (an unknown
    plan, a meter the plan lacks, a billing period without a contract date)."""
    return Problem(409, "conflict", detail, field=field)


def not_found(what: str, field: str | None = None) -> Problem:
    return Problem(404, "not_found", what, field=field)
