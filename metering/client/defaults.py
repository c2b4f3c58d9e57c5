"""One default per event field, shared by `build()` and every helper.

Before, the helpers defaulted `kind` to "marketing" while `build("email.sent", ...)` without a
`kind` was refused: the same event depended on how it was made. Now both fill a missing (or
None) field from this table, so there is exactly one place a default lives.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Final

from metering.core.events import (
    ContactOrigin,
    EmailKind,
    EventType,
    SearchSurface,
    SuppressionReason,
)

FIELD_DEFAULTS: Final = MappingProxyType(
    {
        EventType.EMAIL_SENT: MappingProxyType({"kind": EmailKind.MARKETING}),
        EventType.SEARCH_VIEWED: MappingProxyType({"surface": SearchSurface.INSTANT}),
        EventType.CONTACT_ADDED: MappingProxyType({"origin": ContactOrigin.API}),
        EventType.CONTACT_SUPPRESSED: MappingProxyType({"reason": SuppressionReason.OPTED_OUT}),
    }
)
"""Per event type, the value a field takes when the caller leaves it out. Fields not listed
keep the event model's own defaults (quantity 1, with_recommendations false) or are required."""


def with_defaults(event_type: EventType, fields: dict[str, Any]) -> dict[str, Any]:
    """`fields` without its None values, completed from `FIELD_DEFAULTS`."""
    given = {name: value for name, value in fields.items() if value is not None}
    return {**FIELD_DEFAULTS.get(event_type, {}), **given}
