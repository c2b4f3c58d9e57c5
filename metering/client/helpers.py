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
from typing import Any, Generic, TypeVar

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


class EventHelpers(ABC, Generic[R]):
    """The per-type helpers over `build()` and `emit()` (each producer supplies those two).

    Every helper takes `time_ms` (event time, default now) and `idempotency_key` (the same key
    gives the same event id, so a re-send counts once)."""

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

    def _helper(
        self,
        event_type: EventType,
        account: str,
        time_ms: int | None,
        idempotency_key: str | None,
        **data: Any,
    ) -> R:
        return self.emit(
            self.build(
                event_type, account, time_ms=time_ms, idempotency_key=idempotency_key, **data
            )
        )

    def email_sent(
        self,
        account: str,
        *,
        contact: str,
        kind: EmailKind | str | None = None,
        campaign: str | None = None,
        time_ms: int | None = None,
        idempotency_key: str | None = None,
    ) -> R:
        """One e-mail sent to one contact; `kind` marketing (default) or transactional."""
        return self._helper(
            EventType.EMAIL_SENT, account, time_ms, idempotency_key,
            contact=contact, kind=kind, campaign=campaign,
        )  # fmt: skip

    def email_opened(
        self,
        account: str,
        *,
        contact: str,
        with_recommendations: bool = False,
        campaign: str | None = None,
        time_ms: int | None = None,
        idempotency_key: str | None = None,
    ) -> R:
        """An e-mail opened; `with_recommendations` when it carried recommendation snippets."""
        return self._helper(
            EventType.EMAIL_OPENED, account, time_ms, idempotency_key,
            contact=contact, with_recommendations=with_recommendations, campaign=campaign,
        )  # fmt: skip

    def sms_sent(
        self,
        account: str,
        *,
        contact: str,
        segments: int = 1,
        campaign: str | None = None,
        time_ms: int | None = None,
        idempotency_key: str | None = None,
    ) -> R:
        """An SMS sent: uses `segments` prepaid credits (the event's `quantity`)."""
        return self._helper(
            EventType.SMS_SENT, account, time_ms, idempotency_key,
            contact=contact, quantity=segments, campaign=campaign,
        )  # fmt: skip

    def sms_credits_added(
        self,
        account: str,
        *,
        amount: int,
        time_ms: int | None = None,
        idempotency_key: str | None = None,
    ) -> R:
        """A top-up of `amount` prepaid SMS credits."""
        return self._helper(
            EventType.SMS_CREDITS_ADDED, account, time_ms, idempotency_key, quantity=amount
        )

    def search_viewed(
        self,
        account: str,
        *,
        surface: SearchSurface | str | None = None,
        time_ms: int | None = None,
        idempotency_key: str | None = None,
    ) -> R:
        """Search results shown once: `surface` instant (default, the dropdown) or page."""
        return self._helper(
            EventType.SEARCH_VIEWED, account, time_ms, idempotency_key, surface=surface
        )

    def recommendation_viewed(
        self,
        account: str,
        *,
        elements: int = 1,
        time_ms: int | None = None,
        idempotency_key: str | None = None,
    ) -> R:
        """Recommendation elements shown on a page (3 banners = 3, the event's `quantity`)."""
        return self._helper(
            EventType.RECOMMENDATION_VIEWED, account, time_ms, idempotency_key, quantity=elements
        )

    def contact_added(
        self,
        account: str,
        *,
        contact: str,
        origin: ContactOrigin | str | None = None,
        time_ms: int | None = None,
        idempotency_key: str | None = None,
    ) -> R:
        """A contact/profile added; `origin` api (default), form, import or manual."""
        return self._helper(
            EventType.CONTACT_ADDED, account, time_ms, idempotency_key,
            contact=contact, origin=origin,
        )  # fmt: skip

    def contact_unsubscribed(
        self,
        account: str,
        *,
        contact: str,
        time_ms: int | None = None,
        idempotency_key: str | None = None,
    ) -> R:
        """A contact unsubscribed (still a known profile)."""
        return self._helper(
            EventType.CONTACT_UNSUBSCRIBED, account, time_ms, idempotency_key, contact=contact
        )

    def contact_deleted(
        self,
        account: str,
        *,
        contact: str,
        time_ms: int | None = None,
        idempotency_key: str | None = None,
    ) -> R:
        """A contact deleted (no longer counted)."""
        return self._helper(
            EventType.CONTACT_DELETED, account, time_ms, idempotency_key, contact=contact
        )

    def contact_suppressed(
        self,
        account: str,
        *,
        contact: str,
        reason: SuppressionReason | str | None = None,
        time_ms: int | None = None,
        idempotency_key: str | None = None,
    ) -> R:
        """A contact suppressed: opted_out (default), hard_bounce or suppression_list."""
        return self._helper(
            EventType.CONTACT_SUPPRESSED, account, time_ms, idempotency_key,
            contact=contact, reason=reason,
        )  # fmt: skip

    def campaign_interaction(
        self,
        account: str,
        *,
        contact: str,
        channel: Channel | str,
        campaign: str | None = None,
        time_ms: int | None = None,
        idempotency_key: str | None = None,
    ) -> R:
        """One campaign sent to one profile on a channel (Actito's interaction)."""
        return self._helper(
            EventType.CAMPAIGN_INTERACTION, account, time_ms, idempotency_key,
            contact=contact, channel=channel, campaign=campaign,
        )  # fmt: skip

    def goal_triggered(
        self,
        account: str,
        *,
        contact: str,
        goal: str | None = None,
        time_ms: int | None = None,
        idempotency_key: str | None = None,
    ) -> R:
        """A goal reached by a contact (an automation's goal step)."""
        return self._helper(
            EventType.GOAL_TRIGGERED, account, time_ms, idempotency_key, contact=contact, goal=goal
        )

    def resource_added(
        self,
        account: str,
        *,
        resource: LicenseResource | str,
        resource_id: str,
        time_ms: int | None = None,
        idempotency_key: str | None = None,
    ) -> R:
        """A license resource exists or became active (Actito: a user, a scenario, a form...)."""
        return self._helper(
            EventType.RESOURCE_ADDED, account, time_ms, idempotency_key,
            resource=resource, resource_id=resource_id,
        )  # fmt: skip

    def resource_removed(
        self,
        account: str,
        *,
        resource: LicenseResource | str,
        resource_id: str,
        time_ms: int | None = None,
        idempotency_key: str | None = None,
    ) -> R:
        """A license resource no longer exists or is no longer active."""
        return self._helper(
            EventType.RESOURCE_REMOVED, account, time_ms, idempotency_key,
            resource=resource, resource_id=resource_id,
        )  # fmt: skip
