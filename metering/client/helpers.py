"""One typed helper per event type, written once for the async and the sync producer.

A helper builds the event (validated locally, defaults from `metering.client.defaults`) and
hands it to `emit()`, which returns at once; what a helper returns is what the producer's
`emit()` returns: an `asyncio.Future` (async producer) or a `concurrent.futures.Future` (sync
producer) that resolves to the `Receipt`. Await it (or call `.result()`) only when you need
the acknowledgement; otherwise call `flush()` before you stop, and failures reach the
producer's `on_delivery_failure` callback.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Generic, TypedDict, TypeVar, Unpack

from metering.core.events import (
    Channel,
    ContactOrigin,
    EmailKind,
    EventType,
    LicenseResource,
    SearchSurface,
    SuppressionReason,
    UsageEvent,
)

R = TypeVar("R")


class EventOptions(TypedDict, total=False):
    """Keyword arguments every helper takes and hands to `build()` as they are (an option of
    every event type is added here, once, and in `build()`)."""

    time_ms: int
    """Event time, epoch milliseconds UTC (default: now)."""
    idempotency_key: str
    """A business key: the same key gives the same event id, so a re-send counts once."""
    hold: str
    """The id of the admission hold this event captures (`holdid`; docs/api.md, "Holds")."""


class EventHelpers(ABC, Generic[R]):
    """The per-type helpers over `build()` and `emit()` (each producer supplies those two).

    Every helper takes the `EventOptions` as keyword arguments."""

    @abstractmethod
    def build(
        self,
        event_type: EventType | str,
        account: str,
        *,
        time_ms: int | None = None,
        idempotency_key: str | None = None,
        **data: Any,
    ) -> UsageEvent:
        """A validated event; missing fields take their one default."""

    @abstractmethod
    def emit(self, event: UsageEvent) -> R:
        """Queue `event` for delivery and return at once."""

    def _helper(self, event_type: EventType, account: str, options: EventOptions, **data: Any) -> R:
        return self.emit(self.build(event_type, account, **options, **data))

    def email_sent(
        self,
        account: str,
        *,
        contact: str,
        kind: EmailKind | str | None = None,
        campaign: str | None = None,
        **options: Unpack[EventOptions],
    ) -> R:
        """One e-mail sent to one contact; `kind` marketing (default) or transactional."""
        return self._helper(
            EventType.EMAIL_SENT, account, options,
            contact=contact, kind=kind, campaign=campaign,
        )  # fmt: skip

    def email_opened(
        self,
        account: str,
        *,
        contact: str,
        with_recommendations: bool = False,
        campaign: str | None = None,
        **options: Unpack[EventOptions],
    ) -> R:
        """An e-mail opened; `with_recommendations` when it carried recommendation snippets."""
        return self._helper(
            EventType.EMAIL_OPENED, account, options,
            contact=contact, with_recommendations=with_recommendations, campaign=campaign,
        )  # fmt: skip

    def sms_sent(
        self,
        account: str,
        *,
        contact: str,
        segments: int = 1,
        campaign: str | None = None,
        **options: Unpack[EventOptions],
    ) -> R:
        """An SMS sent: uses `segments` prepaid credits (the event's `quantity`)."""
        return self._helper(
            EventType.SMS_SENT, account, options,
            contact=contact, quantity=segments, campaign=campaign,
        )  # fmt: skip

    def sms_credits_added(
        self,
        account: str,
        *,
        amount: int,
        **options: Unpack[EventOptions],
    ) -> R:
        """A top-up of `amount` prepaid SMS credits."""
        return self._helper(EventType.SMS_CREDITS_ADDED, account, options, quantity=amount)

    def search_viewed(
        self,
        account: str,
        *,
        surface: SearchSurface | str | None = None,
        **options: Unpack[EventOptions],
    ) -> R:
        """Search results shown once: `surface` instant (default, the dropdown) or page."""
        return self._helper(EventType.SEARCH_VIEWED, account, options, surface=surface)

    def recommendation_viewed(
        self,
        account: str,
        *,
        elements: int = 1,
        **options: Unpack[EventOptions],
    ) -> R:
        """Recommendation elements shown on a page (3 banners = 3, the event's `quantity`)."""
        return self._helper(EventType.RECOMMENDATION_VIEWED, account, options, quantity=elements)

    def contact_added(
        self,
        account: str,
        *,
        contact: str,
        origin: ContactOrigin | str | None = None,
        **options: Unpack[EventOptions],
    ) -> R:
        """A contact/profile added; `origin` api (default), form, import or manual."""
        return self._helper(
            EventType.CONTACT_ADDED, account, options,
            contact=contact, origin=origin,
        )  # fmt: skip

    def contact_unsubscribed(
        self,
        account: str,
        *,
        contact: str,
        **options: Unpack[EventOptions],
    ) -> R:
        """A contact unsubscribed (still a known profile)."""
        return self._helper(EventType.CONTACT_UNSUBSCRIBED, account, options, contact=contact)

    def contact_deleted(
        self,
        account: str,
        *,
        contact: str,
        **options: Unpack[EventOptions],
    ) -> R:
        """A contact deleted (no longer counted)."""
        return self._helper(EventType.CONTACT_DELETED, account, options, contact=contact)

    def contact_suppressed(
        self,
        account: str,
        *,
        contact: str,
        reason: SuppressionReason | str | None = None,
        **options: Unpack[EventOptions],
    ) -> R:
        """A contact suppressed: opted_out (default), hard_bounce or suppression_list."""
        return self._helper(
            EventType.CONTACT_SUPPRESSED, account, options,
            contact=contact, reason=reason,
        )  # fmt: skip

    def campaign_interaction(
        self,
        account: str,
        *,
        contact: str,
        channel: Channel | str,
        campaign: str | None = None,
        **options: Unpack[EventOptions],
    ) -> R:
        """One campaign sent to one profile on a channel (Actito's interaction)."""
        return self._helper(
            EventType.CAMPAIGN_INTERACTION, account, options,
            contact=contact, channel=channel, campaign=campaign,
        )  # fmt: skip

    def goal_triggered(
        self,
        account: str,
        *,
        contact: str,
        goal: str | None = None,
        **options: Unpack[EventOptions],
    ) -> R:
        """A goal reached by a contact (an automation's goal step)."""
        return self._helper(EventType.GOAL_TRIGGERED, account, options, contact=contact, goal=goal)

    def resource_added(
        self,
        account: str,
        *,
        resource: LicenseResource | str,
        resource_id: str,
        **options: Unpack[EventOptions],
    ) -> R:
        """A license resource exists or became active (Actito: a user, a scenario, a form...)."""
        return self._helper(
            EventType.RESOURCE_ADDED, account, options,
            resource=resource, resource_id=resource_id,
        )  # fmt: skip

    def resource_removed(
        self,
        account: str,
        *,
        resource: LicenseResource | str,
        resource_id: str,
        **options: Unpack[EventOptions],
    ) -> R:
        """A license resource no longer exists or is no longer active."""
        return self._helper(
            EventType.RESOURCE_REMOVED, account, options,
            resource=resource, resource_id=resource_id,
        )  # fmt: skip
