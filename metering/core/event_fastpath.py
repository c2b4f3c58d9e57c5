"""The decoder's fast path: one msgspec call parses, types and bounds a well-formed event.

Why a second decoder: the checked decoder in `metering.core.events` reads a dictionary built by
orjson and checks each attribute in Python, about 6-9 µs per event here, most of the processor's
per-event cost (ADR 0005). msgspec decodes straight into typed structs and checks lengths, enums,
literals and integer bounds in C (about 1 µs).

Why it cannot change a verdict: the fast path only ever *accepts*. Its types are a strict subset
of what the checked decoder accepts — unknown attributes and `data` fields are forbidden, the
account id must be printable ASCII without spaces or braces, every value is typed — and
anything it does not accept (including valid events it is unsure of: CloudEvents extensions
other than `holdid`,
non-ASCII account ids, events over a quantity limit) returns None, and the checked decoder
decides and explains. tests/unit/core/test_fuzz_events.py runs both decoders on every fuzzed input
and requires the same event or the same refusal.

The structs are generated from `metering.core.events.DATA_FIELDS`, the table the checked
decoder, the encoder and the plan loader read, so a new field or event type cannot be forgotten
here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal, Protocol

import msgspec

from metering.core.rfc3339 import parse_ms

ACCOUNT_PATTERN = "^[!-z|~]+$"
"""Printable ASCII except space, `{` and `}`: a subset of the account ids the checked decoder
accepts (which also allows printable non-ASCII); the others take the checked path."""


class FieldSpec(Protocol):
    """What the generator needs from one `metering.core.events.DataField`."""

    @property
    def name(self) -> str: ...

    @property
    def required(self) -> bool: ...

    @property
    def boolean(self) -> bool: ...

    @property
    def integer(self) -> bool: ...

    @property
    def enum(self) -> type[StrEnum] | None: ...


@dataclass(frozen=True, slots=True)
class Limits:
    """The schema's constants (`metering.core.events` passes its own)."""

    spec_version: str
    data_schema: str
    max_id_chars: int
    max_text_chars: int


_FAILED = (msgspec.MsgspecError, ValueError, RecursionError)
"""What the fast path may raise on input it does not accept: msgspec's decode and validation
errors, ValueError (invalid UTF-8 inside a string, a timestamp `parse_ms` refuses) and
RecursionError (msgspec's answer to a nesting bomb)."""


class FastDecoder:
    """Decodes the common, well-formed event; None means "ask the checked decoder"."""

    def __init__(
        self,
        fields: Iterable[tuple[StrEnum, Sequence[FieldSpec]]],
        make: Callable[..., Any],
        defaults: Mapping[str, object],
        limits: Limits,
    ) -> None:
        envelopes = [
            _envelope(event_type, specs, make, defaults, limits) for event_type, specs in fields
        ]
        union: Any = envelopes[0]
        for envelope in envelopes[1:]:
            union = union | envelope
        self._decode = msgspec.json.Decoder(union).decode

    def decode(
        self,
        raw: bytes | bytearray | memoryview | str,
        now_ms: int,
        max_future_ms: int,
        max_quantity: int,
    ) -> Any | None:
        """The event `raw` holds, or None when the checked decoder must decide."""
        try:
            envelope: Any = self._decode(raw)
            time_ms = parse_ms(envelope.time)
        except _FAILED:
            return None
        if not 0 <= time_ms <= now_ms + max_future_ms:
            return None
        event = envelope.event(time_ms)
        if event.quantity > max_quantity:
            return None
        return event


def _envelope(
    event_type: StrEnum,
    specs: Sequence[FieldSpec],
    make: Callable[..., Any],
    defaults: Mapping[str, object],
    limits: Limits,
) -> type[msgspec.Struct]:
    """The struct of one event type: CloudEvents attributes, its own `data` struct, and an
    `event(time_ms)` method building the domain event from it."""
    text = Annotated[str, msgspec.Meta(min_length=1, max_length=limits.max_text_chars)]
    ident = Annotated[str, msgspec.Meta(min_length=1, max_length=limits.max_id_chars)]
    account = Annotated[
        str,
        msgspec.Meta(min_length=1, max_length=limits.max_id_chars, pattern=ACCOUNT_PATTERN),
    ]
    data_fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    for spec in specs:
        kind = _json_type(spec, text)
        if spec.required:
            data_fields.append((spec.name, kind))
        elif defaults[spec.name] is None:
            data_fields.append((spec.name, kind | None, None))
        else:  # an explicit null is left to the checked decoder (it reads null as absent)
            data_fields.append((spec.name, kind, defaults[spec.name]))
    data = msgspec.defstruct(
        f"Data_{event_type.name}", data_fields, forbid_unknown_fields=True, kw_only=True
    )
    required_data = any(spec.required for spec in specs)
    data_field: tuple[str, Any] | tuple[str, Any, Any] = (
        ("data", data) if required_data else ("data", data, msgspec.field(default_factory=data))
    )
    return msgspec.defstruct(
        f"Event_{event_type.name}",
        [
            ("specversion", Literal[limits.spec_version]),
            ("id", ident),
            ("source", text),
            ("subject", account),
            ("time", str),
            ("dataschema", Literal[limits.data_schema] | None, None),
            ("holdid", ident | None, None),
            data_field,
        ],
        tag_field="type",
        tag=event_type.value,
        forbid_unknown_fields=True,
        kw_only=True,
        namespace={"event": _builder(event_type, [spec.name for spec in specs], make)},
    )


def _builder(event_type: StrEnum, names: Sequence[str], make: Callable[..., Any]) -> Any:
    """`event(self, time_ms)` for one event type, generated like dataclasses' `__init__`:
    a straight call with one keyword per data field (a loop or a dict of keywords cost about
    0.5-1.5 µs more per event). The names come from our own schema table, never from input."""
    if not all(name.isidentifier() for name in names):
        raise ValueError(f"data field names must be identifiers: {names}")
    keywords = "".join(f", {name}=data.{name}" for name in names)
    source = (
        "def event(self, time_ms):\n"
        "    data = self.data\n"
        "    return make(self.id, self.source, event_type, self.subject, time_ms"
        f"{keywords}, hold=self.holdid)\n"
    )
    scope: dict[str, Any] = {"make": make, "event_type": event_type}
    exec(source, scope)  # noqa: S102 - generated from the schema table, see the docstring
    return scope["event"]


def _json_type(spec: FieldSpec, text: Any) -> Any:
    if spec.enum is not None:
        return spec.enum
    if spec.boolean:
        return bool
    if spec.integer:
        return Annotated[int, msgspec.Meta(ge=1)]
    return text
