"""A client of the HTTP API: usage, admission and event ingestion, sync (`MeteringApi`) and async
(`AsyncMeteringApi`). Needs the `http` extra (httpx): `pip install 'metering[sdk,http]'`.

    with MeteringApi("http://127.0.0.1:8080", key="mk_...") as api:
        answer = api.admit_messages("acton", ["c1", "c2"])
        if answer["allowed"]: ...
        meters = api.usage("acton")["meters"]

Answers are the API's JSON documents as dicts (docs/api.md describes every field). An error
answer becomes `ApiError` with the problem document's `status`, `code` and `detail`; a server
that cannot be reached is `ApiError` with status 0 and code `unreachable`. The endpoints are
written once (`Endpoints`) and typed for both faces: the sync client returns the document, the
async one a coroutine of it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Generic, Self, TypeVar
from urllib.parse import quote

import httpx
import orjson

from metering.core.errors import ApiError
from metering.core.events import UsageEvent, event_document

Json = dict[str, Any]
R = TypeVar("R")

DEFAULT_TIMEOUT_S = 10.0
CLOUDEVENT = "application/cloudevents+json"
CLOUDEVENTS_BATCH = "application/cloudevents-batch+json"


@dataclass(frozen=True, slots=True)
class Call:
    """One request: method, path under the base URL, JSON body, query parameters."""

    method: str
    path: str
    body: Json | None = None
    params: dict[str, str | int] = field(default_factory=dict)
    content: bytes | None = None
    """A body already encoded (CloudEvents), sent with `headers`' Content-Type."""
    headers: dict[str, str] = field(default_factory=dict)


def _account(account: str) -> str:
    return f"/v1/accounts/{quote(account, safe='')}"


def _answer(response: httpx.Response) -> Json:
    """The JSON document of a 2xx answer, or `ApiError` from the problem document."""
    try:
        document = response.json()
    except ValueError:
        document = None
    if response.is_success and isinstance(document, dict):
        return document
    problem = document if isinstance(document, dict) else {}
    code = str(problem.get("code") or f"http_{response.status_code}")
    detail = str(problem.get("detail") or problem.get("title") or response.text[:200])
    if "field" in problem:
        detail = f"{problem['field']}: {detail}"
    raise ApiError(response.status_code, code, detail)


def _unreachable(base_url: str, exc: httpx.HTTPError) -> ApiError:
    return ApiError(0, "unreachable", f"{base_url}: {type(exc).__name__}: {exc}")


class Endpoints(ABC, Generic[R]):
    """The API's usage, admission and ingestion endpoints (docs/api.md), over `_do`."""

    @abstractmethod
    def _do(self, call: Call) -> R:
        """Send `call` and return its answer (or a coroutine of it)."""

    def usage(self, account: str) -> R:
        """`GET /v1/accounts/{account}/usage`: every meter of the account's plan."""
        return self._do(Call("GET", f"{_account(account)}/usage"))

    def history(self, account: str, meter: str, *, periods: int = 12) -> R:
        """`GET .../meters/{meter}/history`: this period and the ones before it."""
        path = f"{_account(account)}/meters/{quote(meter, safe='')}/history"
        return self._do(Call("GET", path, params={"periods": periods}))

    def admit_messages(
        self, account: str, contacts: Iterable[str], *, kind: str = "marketing"
    ) -> R:
        """May one e-mail be sent to each contact? Decided per contact."""
        body = {"contacts": list(contacts), "kind": kind}
        return self._do(Call("POST", f"{_account(account)}/admission/messages", body))

    def admit_contacts(self, account: str, contacts: Iterable[str], *, origin: str) -> R:
        """May these contacts be added (origin api, form, import or manual)?"""
        body = {"contacts": list(contacts), "origin": origin}
        return self._do(Call("POST", f"{_account(account)}/admission/contacts", body))

    def admit_campaign(
        self,
        account: str,
        *,
        action: str,
        recipients: int,
        contacts_via_api: bool = False,
        kind: str = "marketing",
    ) -> R:
        """May this campaign be created or sent (action campaign.create or campaign.send)?"""
        body = {
            "action": action,
            "recipients": recipients,
            "contacts_via_api": contacts_via_api,
            "kind": kind,
        }
        return self._do(Call("POST", f"{_account(account)}/admission/campaigns", body))

    def admit_automations(
        self, account: str, contacts: Iterable[str], *, contacts_via_api: bool = False
    ) -> R:
        """May an automation be triggered for each of these contacts?"""
        body = {"contacts": list(contacts), "contacts_via_api": contacts_via_api}
        return self._do(Call("POST", f"{_account(account)}/admission/automations", body))

    def send_events(
        self,
        events: Iterable[UsageEvent | Mapping[str, Any]],
        *,
        idempotency_key: str | None = None,
    ) -> R:
        """`POST /v1/events` as a CloudEvents batch: the answer (202) has `accepted`,
        `refused` and one entry per event in the order sent (`status`, `reason`, `field`).
        Events are `UsageEvent`s (from any producer's `build()`) or CloudEvents documents."""
        documents = [e if isinstance(e, Mapping) else event_document(e) for e in events]
        return self._events(orjson.dumps(documents), CLOUDEVENTS_BATCH, idempotency_key)

    def send_event(
        self, event: UsageEvent | Mapping[str, Any], *, idempotency_key: str | None = None
    ) -> R:
        """`POST /v1/events` with one event (structured mode); the same answer, one entry."""
        document = event if isinstance(event, Mapping) else event_document(event)
        return self._events(orjson.dumps(document), CLOUDEVENT, idempotency_key)

    def _events(self, content: bytes, content_type: str, idempotency_key: str | None) -> R:
        headers = {"Content-Type": content_type}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        return self._do(Call("POST", "/v1/events", content=content, headers=headers))

    def admit_sms(self, account: str, *, messages: int, segments: int = 1) -> R:
        """May `messages` SMS of `segments` credits each be sent?"""
        body = {"messages": messages, "segments": segments}
        return self._do(Call("POST", f"{_account(account)}/admission/sms", body))


class MeteringApi(Endpoints[Json]):
    """The blocking client (one connection pool; close it, or use `with`)."""

    def __init__(
        self,
        base_url: str,
        *,
        key: str,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {key}"},
            timeout=timeout_s,
            transport=transport,
        )

    def _do(self, call: Call) -> Json:
        try:
            response = self._http.request(
                call.method,
                call.path,
                json=call.body,
                params=call.params,
                content=call.content,
                headers=call.headers,
            )
        except httpx.HTTPError as exc:
            raise _unreachable(self.base_url, exc) from exc
        return _answer(response)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncMeteringApi(Endpoints[Coroutine[Any, Any, Json]]):
    """The asyncio client: `await api.usage("acme")`."""

    def __init__(
        self,
        base_url: str,
        *,
        key: str,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {key}"},
            timeout=timeout_s,
            transport=transport,
        )

    async def _do(self, call: Call) -> Json:
        try:
            response = await self._http.request(
                call.method,
                call.path,
                json=call.body,
                params=call.params,
                content=call.content,
                headers=call.headers,
            )
        except httpx.HTTPError as exc:
            raise _unreachable(self.base_url, exc) from exc
        return _answer(response)

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
