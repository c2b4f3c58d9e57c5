"""Input validation: every check names the field and the problem (422), JSON syntax is 400.

The rules here are the ones written in the OpenAPI document (`openapi.py`: patterns, bounds,
required and unknown fields), because schemathesis sends inputs just inside and just outside
them and expects the API to agree with its own contract.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Final

import orjson
from starlette.requests import Request

from metering.api.problems import Problem, invalid

ACCOUNT_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}", re.ASCII)
"""Account ids the API accepts in paths and bodies (a subset of what events allow: no
characters that need escaping in a URL path)."""
METER_NAME: Final = re.compile(r"[a-z][a-z0-9_]{0,62}", re.ASCII)
PLAN_ID: Final = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}", re.ASCII)
PERIOD_KEY: Final = re.compile(
    r"d\d{4}-\d{2}-\d{2}|\d{4}-\d{2}|\d{4}|[by]\d{4}-\d{2}-\d{2}", re.ASCII
)
IDEMPOTENCY_KEY: Final = re.compile(r"[A-Za-z0-9._:-]{1,100}", re.ASCII)
HOLD_ID: Final = re.compile(r"[A-Za-z0-9._:-]{1,128}", re.ASCII)
"""Admission hold ids the release route accepts (the API makes 24 hex digits)."""
MAX_CONTACT_CHARS: Final = 256
MAX_ITEMS: Final = 10_000
MAX_AMOUNT: Final = 10**12


async def json_object(request: Request) -> dict[str, Any]:
    """The request body as a JSON object (415 when not JSON, 400 when not parseable)."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json":
        raise Problem(415, "unsupported_media_type", "send the body as application/json")
    body = await request.body()
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Problem(400, "malformed_json", f"the body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise Problem(422, "invalid_body", "the body must be a JSON object", field="")
    return doc


def only(doc: dict[str, Any], allowed: Iterable[str]) -> None:
    """Refuse unknown fields: a misspelt `limt` must not silently mean nothing."""
    unknown = sorted(set(doc) - set(allowed))
    if unknown:
        raise invalid(unknown[0], f"unknown field (allowed: {', '.join(sorted(allowed))})")


def integer(
    doc: dict[str, Any],
    name: str,
    *,
    minimum: int,
    maximum: int = MAX_AMOUNT,
    default: int | None = None,
) -> int:
    value = doc.get(name)
    if value is None:
        if default is None:
            raise invalid(name, "is required (an integer)")
        return default
    if isinstance(value, float) and value.is_integer() and abs(value) <= 2**53:
        value = int(value)  # JSON Schema counts 3.0 as an integer; so do we
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(name, "must be an integer")
    if not minimum <= value <= maximum:
        raise invalid(name, f"must be between {minimum} and {maximum}")
    return value


def boolean(doc: dict[str, Any], name: str, *, default: bool) -> bool:
    value = doc.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise invalid(name, "must be true or false")
    return value


def text(
    doc: dict[str, Any],
    name: str,
    *,
    pattern: re.Pattern[str] | None = None,
    max_chars: int = 256,
    required: bool = True,
) -> str | None:
    value = doc.get(name)
    if value is None:
        if required:
            raise invalid(name, "is required (a string)")
        return None
    if not isinstance(value, str):
        raise invalid(name, "must be a string")
    if not 0 < len(value) <= max_chars:
        raise invalid(name, f"must be 1..{max_chars} characters")
    if pattern is not None and not pattern.fullmatch(value):
        raise invalid(name, f"must match {pattern.pattern}")
    return value


def required_text(
    doc: dict[str, Any], name: str, *, pattern: re.Pattern[str] | None = None, max_chars: int = 256
) -> str:
    value = text(doc, name, pattern=pattern, max_chars=max_chars)
    assert value is not None
    return value


def choice(doc: dict[str, Any], name: str, values: Iterable[str], default: str) -> str:
    allowed = list(values)
    value = doc.get(name, default)
    if not isinstance(value, str) or value not in allowed:
        raise invalid(name, f"must be one of: {', '.join(allowed)}")
    return value


def contacts(doc: dict[str, Any], name: str = "contacts") -> list[str]:
    """A non-empty list of contact ids (1..256 characters each, at most 10,000)."""
    value = doc.get(name)
    if value is None:
        raise invalid(name, "is required (a list of contact ids)")
    if not isinstance(value, list):
        raise invalid(name, "must be a list of contact ids")
    if not 0 < len(value) <= MAX_ITEMS:
        raise invalid(name, f"must hold 1..{MAX_ITEMS} contact ids")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise invalid(f"{name}[{i}]", "must be a string")
        if not 0 < len(item) <= MAX_CONTACT_CHARS:
            raise invalid(f"{name}[{i}]", f"must be 1..{MAX_CONTACT_CHARS} characters")
    return value


def path(request: Request, name: str, pattern: re.Pattern[str]) -> str:
    """A path parameter, checked against its pattern."""
    value = str(request.path_params[name])
    if not pattern.fullmatch(value):
        raise invalid(name, f"must match {pattern.pattern}")
    return value


def query_int(request: Request, name: str, *, minimum: int, maximum: int, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not re.fullmatch(r"-?[0-9]{1,12}", raw):
        raise invalid(name, "must be an integer")
    value = int(raw)
    if not minimum <= value <= maximum:
        raise invalid(name, f"must be between {minimum} and {maximum}")
    return value


def query_text(request: Request, name: str, pattern: re.Pattern[str]) -> str | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if not pattern.fullmatch(raw):
        raise invalid(name, f"must match {pattern.pattern}")
    return raw
