"""Usage events, schema v1: CloudEvents 1.0 attributes + a typed `data` object per event type.

A producer writes (JSON, UTF-8)::

    {"specversion": "1.0", "id": "e-123", "source": "crm/eu-1", "type": "email.sent",
     "subject": "acct-42", "time": "2026-11-23T10:00:00Z", "dataschema": "metering/v1",
     "data": {"contact": "c-9", "kind": "marketing"}}

`decode_event` turns those bytes into a `UsageEvent` or raises `EventRejected` naming the
reason code and the field. It runs once per event on the hot path, so it is a straight line of
dictionary look-ups and type checks (no pydantic, no per-event `datetime`). Unknown top-level
attributes (CloudEvents extensions) and unknown `data` fields are ignored so producers can add
information before we use it; a field we do use must have the right type and value. The one
extension we read is `holdid` (the admission hold the event captures, docs/api.md "Holds").

Why the schema lives in a table (`DATA_FIELDS`): the decoder, the encoder and the plan loader
(which checks that a meter filters on a field the event type actually has) read the same table,
so they cannot disagree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, NoReturn

import msgspec
import orjson

from metering.core.errors import EventRejected, RejectReason
from metering.core.event_fastpath import FastDecoder, Limits
from metering.core.rfc3339 import format_ms, parse_ms

SPEC_VERSION: Final = "1.0"
DATA_SCHEMA: Final = "metering/v1"
MAX_BYTES: Final = 64 * 1024
MAX_FUTURE_MS: Final = 5 * 60 * 1000
MAX_QUANTITY: Final = 1_000_000
MAX_ID_CHARS: Final = 128
MAX_TEXT_CHARS: Final = 256


class EventType(StrEnum):
    """What happened. One event is one fact; meters decide what it counts for."""

    EMAIL_SENT = "email.sent"
    EMAIL_OPENED = "email.opened"
    SMS_SENT = "sms.sent"
    SMS_CREDITS_ADDED = "sms.credits_added"
    SEARCH_VIEWED = "search.viewed"
    RECOMMENDATION_VIEWED = "recommendation.viewed"
    CONTACT_ADDED = "contact.added"
    CONTACT_UNSUBSCRIBED = "contact.unsubscribed"
    CONTACT_DELETED = "contact.deleted"
    CONTACT_SUPPRESSED = "contact.suppressed"
    CAMPAIGN_INTERACTION = "campaign.interaction"
    GOAL_TRIGGERED = "goal.triggered"
    RESOURCE_ADDED = "resource.added"
    RESOURCE_REMOVED = "resource.removed"


class EmailKind(StrEnum):
    MARKETING = "marketing"
    TRANSACTIONAL = "transactional"


class ContactOrigin(StrEnum):
    """How a contact came in (ActiveCampaign decides admission by it)."""

    API = "api"
    FORM = "form"
    IMPORT = "import"
    MANUAL = "manual"


class Channel(StrEnum):
    """Campaign channels of an interaction (Actito: 1 campaign sent to 1 profile)."""

    MARKETING_EMAIL = "marketing_email"
    TRANSACTIONAL_EMAIL = "transactional_email"
    PRINT = "print"
    SOCIAL = "social"
    CALL_CENTER = "call_center"


class SearchSurface(StrEnum):
    """Where search results were shown (Clerk.io: dropdown and page are one usage each)."""

    INSTANT = "instant"
    PAGE = "page"


class LicenseResource(StrEnum):
    """Resources of a license counted while they exist (Actito's "My consumption" sheet).

    A `resource.added` event says one resource (`resource_id`) of this kind exists or became
    active, `resource.removed` that it no longer does; a gauge per kind holds the number."""

    USER = "user"
    API_USER = "api_user"
    SENDING_DOMAIN = "sending_domain"
    ENTITY = "entity"
    SCENARIO = "scenario"
    SEGMENTATION_RULE = "segmentation_rule"
    DAILY_EXPORT = "daily_export"
    NEWSLETTER = "newsletter"
    WEBSITE_GOAL = "website_goal"
    TRANSACTIONAL_GOAL = "transactional_goal"
    FORM = "form"
    PROFILE_TABLE = "profile_table"
    CUSTOM_TABLE = "custom_table"
    SUBSCRIPTION = "subscription"


class SuppressionReason(StrEnum):
    OPTED_OUT = "opted_out"
    HARD_BOUNCE = "hard_bounce"
    SUPPRESSION_LIST = "suppression_list"


class UsageEvent(msgspec.Struct, frozen=True):
    """One decoded, validated usage event. Fields a type does not carry keep their defaults.

    A frozen msgspec struct rather than a frozen dataclass: one is built per event, and the
    dataclass's `__init__` (one `object.__setattr__` per field) cost ~2-3 µs of the decoder's
    budget against ~0.3 µs here (ADR 0005)."""

    id: str
    """Producer's idempotency key (CloudEvents `id`, 1..128 characters)."""
    source: str
    """Producer (CloudEvents `source`)."""
    type: EventType
    account: str
    """Account id (CloudEvents `subject`); also the Kafka record key."""
    time_ms: int
    """Event time, epoch milliseconds UTC: decides the period the event counts in."""
    contact: str | None = None
    """The contact/profile the event is about (member of distinct meters and gauges)."""
    quantity: int = 1
    """SMS segments/credits, recommendation elements shown: always >= 1."""
    kind: EmailKind | None = None
    origin: ContactOrigin | None = None
    channel: Channel | None = None
    surface: SearchSurface | None = None
    reason: SuppressionReason | None = None
    with_recommendations: bool = False
    """email.opened: the opened e-mail carried recommendation snippets (Clerk.io)."""
    campaign: str | None = None
    goal: str | None = None
    resource: LicenseResource | None = None
    """resource.added/removed: which kind of license resource (Actito's license sheet)."""
    resource_id: str | None = None
    """resource.added/removed: the resource itself (member of the kind's gauge)."""
    hold: str | None = None
    """The admission hold this event captures (CloudEvents extension attribute `holdid`,
    1..128 characters): the processor replaces the hold's units by this event's usage in the
    same atomic step that counts it (docs/api.md, "Holds")."""


# --- the schema table --------------------------------------------------------------------

FieldParser = Callable[[object, str], object]


@dataclass(frozen=True, slots=True)
class DataField:
    """One `data` field of an event type."""

    name: str
    """Both the JSON key under `data` and the `UsageEvent` attribute."""
    required: bool
    parse: FieldParser
    """Turns the JSON value into the attribute value or raises EventRejected."""
    values: tuple[str, ...] = ()
    """Allowed values of an enumerated field (empty when free text or a number)."""
    boolean: bool = False
    integer: bool = False
    """A quantity (an integer >= 1); free text when neither this, `boolean` nor `enum`."""
    enum: type[StrEnum] | None = None


def _text(value: object, path: str) -> str:
    if type(value) is not str:
        raise EventRejected(RejectReason.WRONG_TYPE, path, "must be a string")
    if not 0 < len(value) <= MAX_TEXT_CHARS:
        raise EventRejected(RejectReason.INVALID_VALUE, path, f"must be 1..{MAX_TEXT_CHARS} chars")
    return value


def _flag(value: object, path: str) -> bool:
    if type(value) is not bool:
        raise EventRejected(RejectReason.WRONG_TYPE, path, "must be true or false")
    return value


def _enum_parser(enum: type[StrEnum]) -> FieldParser:
    members: dict[str, StrEnum] = {member.value: member for member in enum}
    allowed = ", ".join(members)

    def parse(value: object, path: str) -> StrEnum:
        if type(value) is not str:
            raise EventRejected(RejectReason.WRONG_TYPE, path, f"must be one of: {allowed}")
        member = members.get(value)
        if member is None:
            raise EventRejected(RejectReason.INVALID_VALUE, path, f"must be one of: {allowed}")
        return member

    return parse


def _quantity(value: object, path: str) -> int:
    """Quantities are integers >= 1; the upper bound is checked by `decode_event`."""
    if type(value) is not int:
        raise EventRejected(RejectReason.WRONG_TYPE, path, "must be an integer")
    if value < 0:
        raise EventRejected(RejectReason.NEGATIVE_QUANTITY, path, f"{value} is negative")
    if value == 0:
        raise EventRejected(RejectReason.INVALID_VALUE, path, "must be at least 1")
    return value


def _choice(name: str, enum: type[StrEnum]) -> DataField:
    """A required enumerated field."""
    return DataField(name, True, _enum_parser(enum), tuple(m.value for m in enum), enum=enum)


_CONTACT = DataField("contact", True, _text)
_QUANTITY = DataField("quantity", False, _quantity, integer=True)
_CAMPAIGN = DataField("campaign", False, _text)
_RESOURCE = _choice("resource", LicenseResource)
_RESOURCE_ID = DataField("resource_id", True, _text)

DATA_FIELDS: Final[dict[EventType, tuple[DataField, ...]]] = {
    EventType.EMAIL_SENT: (_CONTACT, _choice("kind", EmailKind), _CAMPAIGN),
    EventType.EMAIL_OPENED: (
        _CONTACT,
        DataField("with_recommendations", False, _flag, boolean=True),
        _CAMPAIGN,
    ),
    EventType.SMS_SENT: (_CONTACT, _QUANTITY, _CAMPAIGN),
    EventType.SMS_CREDITS_ADDED: (DataField("quantity", True, _quantity, integer=True),),
    EventType.SEARCH_VIEWED: (_choice("surface", SearchSurface),),
    EventType.RECOMMENDATION_VIEWED: (_QUANTITY,),
    EventType.CONTACT_ADDED: (_CONTACT, _choice("origin", ContactOrigin)),
    EventType.CONTACT_UNSUBSCRIBED: (_CONTACT,),
    EventType.CONTACT_DELETED: (_CONTACT,),
    EventType.CONTACT_SUPPRESSED: (_CONTACT, _choice("reason", SuppressionReason)),
    EventType.CAMPAIGN_INTERACTION: (_CONTACT, _choice("channel", Channel), _CAMPAIGN),
    EventType.GOAL_TRIGGERED: (_CONTACT, DataField("goal", False, _text)),
    EventType.RESOURCE_ADDED: (_RESOURCE, _RESOURCE_ID),
    EventType.RESOURCE_REMOVED: (_RESOURCE, _RESOURCE_ID),
}
"""Per event type, the `data` fields it carries. Fields not listed keep `UsageEvent` defaults."""

_TYPES: Final[dict[str, EventType]] = {member.value: member for member in EventType}
_NO_DATA: Final[dict[str, Any]] = {}


# --- decoding ----------------------------------------------------------------------------

_SLOTS: Final[tuple[str, ...]] = UsageEvent.__struct_fields__
_DEFAULTS: Final[tuple[object, ...]] = tuple(
    None if field.default is msgspec.NODEFAULT else field.default
    for field in msgspec.structs.fields(UsageEvent)
)

_DECODERS: Final[dict[EventType, tuple[tuple[DataField, int, str], ...]]] = {
    event_type: tuple((spec, _SLOTS.index(spec.name), f"data.{spec.name}") for spec in specs)
    for event_type, specs in DATA_FIELDS.items()
}
"""Per type: (field, index in `_SLOTS`, dotted path) — computed once, not per event."""


_FAST: Final = FastDecoder(
    DATA_FIELDS.items(),
    UsageEvent,
    dict(zip(_SLOTS, _DEFAULTS, strict=True)),
    Limits(SPEC_VERSION, DATA_SCHEMA, MAX_ID_CHARS, MAX_TEXT_CHARS),
)


def _bad_attribute(doc: dict[str, Any], name: str, max_chars: int) -> NoReturn:
    value = doc.get(name)
    if value is None:
        raise EventRejected(RejectReason.MISSING_FIELD, name, "is required")
    if type(value) is not str:
        raise EventRejected(RejectReason.WRONG_TYPE, name, "must be a string")
    raise EventRejected(RejectReason.INVALID_VALUE, name, f"must be 1..{max_chars} chars")


def decode_event(
    raw: bytes | bytearray | memoryview | str,
    *,
    now_ms: int,
    key: bytes | None = None,
    max_bytes: int = MAX_BYTES,
    max_future_ms: int = MAX_FUTURE_MS,
    max_quantity: int = MAX_QUANTITY,
) -> UsageEvent:
    """Decode and validate one event; raise `EventRejected` (and nothing else) when it is bad.

    `now_ms` is the processor's clock: an event more than `max_future_ms` ahead of it is a
    producer clock error and would open a period that has not started yet. The common,
    well-formed event takes `metering.core.event_fastpath` (accept-only); everything else, and every
    refusal, is decided by `check_event`.

    `key` is the Kafka record key: when given, it must be the event's `subject` (UTF-8),
    checked last, after the event itself is valid (`key_mismatch`). A record without a key is
    accepted on its `subject` (docs/asyncapi.yaml says why).
    """
    if len(raw) > max_bytes:
        raise EventRejected(RejectReason.OVERSIZED, None, f"{len(raw)} bytes > {max_bytes}")
    event: UsageEvent | None = _FAST.decode(raw, now_ms, max_future_ms, max_quantity)
    if event is None:
        return check_event(
            raw, now_ms=now_ms, key=key, max_future_ms=max_future_ms, max_quantity=max_quantity
        )
    if key is not None and key != event.account.encode():
        _key_mismatch(key, event.account)
    return event


def check_event(
    raw: bytes | bytearray | memoryview | str,
    *,
    now_ms: int,
    key: bytes | None = None,
    max_future_ms: int = MAX_FUTURE_MS,
    max_quantity: int = MAX_QUANTITY,
) -> UsageEvent:
    """The checked decoder: the reference for what is valid, and the one that explains refusals.

    Reads orjson's dictionary attribute by attribute (the size limit is `decode_event`'s). The
    checks are written inline for the valid case; the helpers only run to explain a refusal.
    """
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise EventRejected(RejectReason.NOT_JSON, None, str(exc)[:200]) from exc
    if type(doc) is not dict:
        raise EventRejected(RejectReason.NOT_OBJECT, None, "an event is a JSON object")
    if doc.get("specversion") != SPEC_VERSION:
        _reject_version(doc.get("specversion"))
    event_id = doc.get("id")
    if type(event_id) is not str or not 0 < len(event_id) <= MAX_ID_CHARS:
        _bad_attribute(doc, "id", MAX_ID_CHARS)
    source = doc.get("source")
    if type(source) is not str or not 0 < len(source) <= MAX_TEXT_CHARS:
        _bad_attribute(doc, "source", MAX_TEXT_CHARS)
    type_name = doc.get("type")
    event_type = _TYPES.get(type_name) if type(type_name) is str else None
    if event_type is None:
        _bad_type(type_name)
    account = doc.get("subject")
    if (
        type(account) is not str
        or not 0 < len(account) <= MAX_ID_CHARS
        or not account.isprintable()
        or " " in account
        or "{" in account
        or "}" in account
    ):
        _bad_subject(account)
    time_ms = _time_ms(doc.get("time"), now_ms, max_future_ms)
    schema = doc.get("dataschema")
    if schema is not None and schema != DATA_SCHEMA:
        raise EventRejected(
            RejectReason.UNSUPPORTED_VERSION, "dataschema", f"only {DATA_SCHEMA} is supported"
        )
    values: list[Any] = list(_DEFAULTS)
    values[0:5] = event_id, source, event_type, account, time_ms
    hold = doc.get("holdid")
    if hold is not None:
        if type(hold) is not str or not 0 < len(hold) <= MAX_ID_CHARS:
            _bad_attribute(doc, "holdid", MAX_ID_CHARS)
        values[_HOLD_INDEX] = hold
    _read_data(event_type, doc.get("data", _NO_DATA), values, max_quantity)
    if key is not None and key != account.encode():
        _key_mismatch(key, account)
    return UsageEvent(*values)


def _key_mismatch(key: bytes, account: str) -> NoReturn:
    """Refuse a record keyed by another account than its `subject` (both named, bounded)."""
    shown = key[:MAX_ID_CHARS].decode("utf-8", "backslashreplace")
    raise EventRejected(
        RejectReason.KEY_MISMATCH,
        "subject",
        f"record key {shown!r} is not the subject {account!r}: key each event by its account",
    )


_QUANTITY_INDEX: Final = _SLOTS.index("quantity")
_HOLD_INDEX: Final = _SLOTS.index("hold")


def _read_data(event_type: EventType, data: object, values: list[Any], max_quantity: int) -> None:
    """Parse the type's `data` fields into `values` (slot order)."""
    if type(data) is not dict:
        raise EventRejected(RejectReason.WRONG_TYPE, "data", "must be an object")
    for spec, index, path in _DECODERS[event_type]:
        value = data.get(spec.name)
        if value is not None:
            values[index] = spec.parse(value, path)
        elif spec.required:
            raise EventRejected(RejectReason.MISSING_FIELD, path, "is required")
    quantity: int = values[_QUANTITY_INDEX]
    if quantity > max_quantity:
        raise EventRejected(
            RejectReason.ABSURD_QUANTITY, "data.quantity", f"{quantity} > {max_quantity}"
        )


def _bad_type(type_name: object) -> NoReturn:
    if type_name is None:
        raise EventRejected(RejectReason.MISSING_FIELD, "type", "is required")
    if type(type_name) is not str:
        raise EventRejected(RejectReason.WRONG_TYPE, "type", "must be a string")
    raise EventRejected(
        RejectReason.UNKNOWN_TYPE, "type", f"unknown event type {type_name[:100]!r}"
    )


def _bad_subject(account: object) -> NoReturn:
    if account is None:
        raise EventRejected(RejectReason.MISSING_FIELD, "subject", "is required")
    if type(account) is not str:
        raise EventRejected(RejectReason.WRONG_TYPE, "subject", "must be a string")
    if not 0 < len(account) <= MAX_ID_CHARS:
        raise EventRejected(
            RejectReason.INVALID_VALUE, "subject", f"must be 1..{MAX_ID_CHARS} chars"
        )
    raise EventRejected(
        RejectReason.INVALID_VALUE, "subject", "no whitespace, braces or control characters"
    )


def _reject_version(version: object) -> NoReturn:
    if version is None:
        raise EventRejected(RejectReason.MISSING_FIELD, "specversion", "is required")
    if type(version) is not str:
        raise EventRejected(RejectReason.WRONG_TYPE, "specversion", "must be a string")
    raise EventRejected(
        RejectReason.UNSUPPORTED_VERSION, "specversion", f"only {SPEC_VERSION} is supported"
    )


def _time_ms(text: object, now_ms: int, max_future_ms: int) -> int:
    if type(text) is not str:
        if text is None:
            raise EventRejected(RejectReason.MISSING_FIELD, "time", "is required")
        raise EventRejected(RejectReason.WRONG_TYPE, "time", "must be a string")
    try:
        time_ms = parse_ms(text)
    except ValueError as exc:
        raise EventRejected(RejectReason.INVALID_VALUE, "time", str(exc)) from exc
    if time_ms < 0:
        raise EventRejected(RejectReason.INVALID_VALUE, "time", "before 1970-01-01")
    if time_ms > now_ms + max_future_ms:
        raise EventRejected(
            RejectReason.FUTURE_TIMESTAMP, "time", f"{time_ms - now_ms} ms ahead of now"
        )
    return time_ms


# --- encoding ----------------------------------------------------------------------------


def event_document(event: UsageEvent) -> dict[str, Any]:
    """The CloudEvents JSON object for `event` (only the data fields its type carries)."""
    data: dict[str, Any] = {}
    for spec in DATA_FIELDS[event.type]:
        value = getattr(event, spec.name)
        if spec.name == "quantity":
            if value != 1 or spec.required:
                data["quantity"] = value
        elif spec.boolean:
            if value:
                data[spec.name] = True
        elif value is not None:
            data[spec.name] = str(value)
    doc = {
        "specversion": SPEC_VERSION,
        "id": event.id,
        "source": event.source,
        "type": event.type.value,
        "subject": event.account,
        "time": format_ms(event.time_ms),
        "dataschema": DATA_SCHEMA,
        "data": data,
    }
    if event.hold is not None:
        doc["holdid"] = event.hold
    return doc


def encode_event(event: UsageEvent) -> bytes:
    """Encode `event` as the JSON `decode_event` reads (for producers and tests)."""
    return orjson.dumps(event_document(event))
