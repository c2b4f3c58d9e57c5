"""A deadline on every API call that writes to Kafka, so that a broker that does not answer
costs the caller a few seconds and a 503, never a hung request.

aiokafka waits up to its `request_timeout_ms` (40 s) for a topic's metadata, for room in its
buffer and again for the acknowledgement, and retries the produce itself: with the broker down,
a top-up answered after 40 s and an account change after more than a minute. The publishers
here wrap the real ones (`ConfigWriter`, the events producer) and give each write
`timeout_s` (`METERING_API_KAFKA_WRITE_TIMEOUT_MS`); past it the write raises
`KafkaWriteTimeout`, a `StreamUnavailable`, which the application answers with 503
`kafka_unavailable` and `Retry-After`.

"Not done or done once, never half": every API call writes exactly one record whose effect
does not depend on how often it lands. An account change is the account's whole document,
keyed by account on a compacted topic (writing it twice leaves the same account); a top-up is
one event whose id is derived from the account and the caller's `Idempotency-Key` (the
processor counts an id once). The API's producer gives up a record it could not deliver
within the same deadline, at its next failed attempt (`server.bounded_producer`: not retried
forever), so after a 503 the change is not written, or written once by an attempt already on
its way or made just after the deadline (the producer retries every 100 ms); it does not turn
up minutes later when Kafka is back (tests/api/test_kafka_deadline.py). A client that
retries the same request writes the same record again, which changes nothing. The API applies
a change to its own view only after the broker acknowledged it (routes_admin.py), so a 503
never shows the caller a change that is not in Kafka.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from metering.api.context import ConfigPublisher, EventPublisher
from metering.core.accounts import Account
from metering.core.errors import KafkaWriteTimeout


async def within(timeout_s: float, what: str, call: Awaitable[None]) -> None:
    """Await `call`, or raise `KafkaWriteTimeout` naming `what` once `timeout_s` passed."""
    try:
        async with asyncio.timeout(timeout_s):
            await call
    except TimeoutError:
        raise KafkaWriteTimeout(
            f"Kafka did not acknowledge {what} within {timeout_s:g} s"
        ) from None


class BoundedConfig:
    """A `ConfigPublisher` whose every write ends within `timeout_s`."""

    def __init__(self, inner: ConfigPublisher, timeout_s: float) -> None:
        self._inner = inner
        self._timeout = timeout_s

    async def put_account(self, account: Account) -> None:
        await within(self._timeout, f"account {account.id}", self._inner.put_account(account))

    async def delete_account(self, account_id: str) -> None:
        await within(
            self._timeout, f"deletion of {account_id}", self._inner.delete_account(account_id)
        )


class BoundedEvents:
    """An `EventPublisher` whose every event ends within `timeout_s`."""

    def __init__(self, inner: EventPublisher, timeout_s: float) -> None:
        self._inner = inner
        self._timeout = timeout_s

    async def publish(self, account: str, value: bytes) -> None:
        await within(self._timeout, f"an event of {account}", self._inner.publish(account, value))
