"""Errors of the producer SDK."""

from __future__ import annotations

from metering.core.errors import MeteringError


class DeliveryError(MeteringError):
    """Kafka did not acknowledge an event; `event_id` says which, so it can be retried as is
    (the same id counts once however often it is delivered within the dedup window)."""

    def __init__(self, event_id: str, problem: str) -> None:
        super().__init__(f"event {event_id} not delivered: {problem}")
        self.event_id = event_id
        self.problem = problem
