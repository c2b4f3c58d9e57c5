"""`POST /v1/events`: usage events over HTTP, as CloudEvents, onto the events topic.

For producers that cannot speak Kafka (OpenMeter and Lago take events over HTTP too). One
event is sent as `application/cloudevents+json` (the CloudEvents structured mode), several as
`application/cloudevents-batch+json` (a JSON array; at most `events_burst` events, and the
body at most 64 KiB like every body). Each event goes through the very decoder the processor
and the SDK use (`metering.core.events.decode_event`), so an event the API accepts is one the
processor counts, and a refused one is refused here, with the same reason code and field,
instead of ending on the dead-letter topic. On top of the decoder, the API refuses:

- `forbidden_subject`: an account key may only send events of its own account;
- `unknown_account`: the subject is no account the API knows.

Accepted events are produced to the events topic keyed by their account (the processor's
order), as sent; the answer, 202, lists every event with `accepted` or `refused` (reason,
field, detail) in the order sent. A refused event never stops the others. If Kafka does not
acknowledge within the write deadline the answer is 503 `kafka_unavailable`: some events may
have been written; sending the same events again is safe, the processor counts an event id
once (within its dedup window).

Rate: one request token (every route's bucket), then one token per event from a bucket of
its own (`events_per_s`, `events_burst`): a batch that does not fit is refused whole with 429
and Retry-After, and the RateLimit fields of the answer describe the events bucket.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

import msgspec
import orjson
from msgspec import Meta
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from metering.api.auth import Scope
from metering.api.context import ratelimit_headers
from metering.api.problems import Problem
from metering.api.responses import context, json_response
from metering.core.errors import EventRejected
from metering.core.events import UsageEvent, decode_event

SINGLE = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"


class EventOutcome(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True):
    """What happened to one event of the request."""

    index: Annotated[int, Meta(ge=0, description="Position of the event in the request.")]
    id: Annotated[str | None, Meta(description="The event's `id`, when it has a usable one.")]
    status: Annotated[
        Literal["accepted", "refused"],
        Meta(description="`accepted`: on the events topic; `refused`: not written."),
    ]
    reason: Annotated[
        str | None,
        Meta(
            description="Why it was refused: a reason code of the event contract "
            "(docs/asyncapi.yaml: `missing_field`, `invalid_value`, ...) or `forbidden_subject`"
            " / `unknown_account`."
        ),
    ] = None
    field: Annotated[
        str | None, Meta(description="Dotted path of the attribute at fault (`data.quantity`).")
    ] = None
    detail: Annotated[str | None, Meta(description="A sentence that says what is wrong.")] = None


class IngestAnswer(msgspec.Struct, forbid_unknown_fields=True):
    """The 202 answer of `POST /v1/events`: every event of the request, accepted or refused."""

    accepted: Annotated[int, Meta(ge=0, description="How many events are on the events topic.")]
    refused: Annotated[int, Meta(ge=0, description="How many were refused (not written).")]
    events: Annotated[
        list[EventOutcome], Meta(description="Every event of the request, in the order sent.")
    ]


async def ingest(request: Request) -> Response:
    ctx = context(request)
    record = await ctx.principal(request)
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in (SINGLE, BATCH):
        raise Problem(
            415,
            "unsupported_media_type",
            f"send one event as {SINGLE} or a JSON array of events as {BATCH}",
        )
    body = await request.body()
    raws = _split(body, batch=media == BATCH, most=ctx.config.events_burst)
    wait = ctx.event_limiter.take(record.id, len(raws))
    ratelimit_headers(request, ctx.event_limiter.headers(record.id))
    if wait is not None:
        raise Problem(
            429,
            "rate_limited",
            f"{len(raws)} events exceed this key's event rate; retry in {wait:.2f} s",
            headers={"Retry-After": str(max(1, int(wait + 0.999)))},
        )
    now_ms = ctx.clock_ms()
    outcomes: list[EventOutcome] = []
    sends = []
    for index, raw in enumerate(raws):
        try:
            event = decode_event(raw, now_ms=now_ms)
        except EventRejected as exc:
            outcomes.append(_refused(index, _id_of(raw), exc.reason.value, exc.field, exc.detail))
            continue
        refusal = _refusal(event, record.scope, record.account, ctx.directory.account)
        if refusal is not None:
            outcomes.append(_refused(index, event.id, *refusal))
            continue
        outcomes.append(EventOutcome(index=index, id=event.id, status="accepted"))
        sends.append(ctx.events.publish(event.account, raw))
    await asyncio.gather(*sends)
    accepted = len(sends)
    answer = IngestAnswer(accepted=accepted, refused=len(raws) - accepted, events=outcomes)
    return json_response(msgspec.to_builtins(answer), 202)


def _split(body: bytes, *, batch: bool, most: int) -> list[bytes]:
    """The events of the body, each as the bytes the processor will read."""
    if not batch:
        return [body]
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Problem(400, "malformed_json", f"the body is not valid JSON: {exc}") from None
    if not isinstance(doc, list):
        raise Problem(422, "invalid_body", f"a {BATCH} body is a JSON array of events", field="")
    if not doc:
        raise Problem(422, "invalid_body", "the batch holds no event", field="")
    if len(doc) > most:
        raise Problem(
            422, "invalid_body", f"a batch holds at most {most} events, not {len(doc)}", field=""
        )
    return [orjson.dumps(item) for item in doc]


def _refusal(
    event: UsageEvent, scope: Scope, own: str | None, known: Any
) -> tuple[str, str, str] | None:
    if scope is Scope.ACCOUNT and event.account != own:
        return ("forbidden_subject", "subject", "this API key may only send its account's events")
    if known(event.account) is None:
        return ("unknown_account", "subject", f"no account {event.account!r}")
    return None


def _refused(
    index: int, event_id: str | None, reason: str, field: str | None, detail: str
) -> EventOutcome:
    return EventOutcome(
        index=index, id=event_id, status="refused", reason=reason, field=field, detail=detail
    )


def _id_of(raw: bytes) -> str | None:
    """The `id` of an event the decoder refused, when it has a usable one (for the answer)."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    found = doc.get("id") if isinstance(doc, dict) else None
    return found if isinstance(found, str) and 0 < len(found) <= 128 else None


ROUTES = [Route("/v1/events", ingest, methods=["POST"])]
