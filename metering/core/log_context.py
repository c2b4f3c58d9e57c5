"""What a log record is about, set where it is known and read by the log formatter.

Code that knows what it works on binds it here: the HTTP face the request id (`X-Request-Id`),
a processor or closer the partition or account; every log record emitted inside that context
then carries them (metering/runtime/logging.py adds them as fields of the
JSON line, or as `key=value` on a text line). Context variables follow asyncio tasks, so two
requests served at once never mix their ids. Standard library only: every room may import it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

request_id: ContextVar[str | None] = ContextVar("metering_request_id", default=None)
"""The HTTP request being served (`X-Request-Id`)."""
partition: ContextVar[int | None] = ContextVar("metering_partition", default=None)
"""The Kafka partition of the usage topic being worked on."""
account: ContextVar[str | None] = ContextVar("metering_account", default=None)
"""The account being worked on."""

FIELDS: tuple[tuple[str, ContextVar[str | None] | ContextVar[int | None]], ...] = (
    ("request_id", request_id),
    ("partition", partition),
    ("account", account),
)
"""The context fields in the order they are printed."""


def current() -> dict[str, str | int]:
    """The context fields set in the current task (unset ones left out)."""
    values: dict[str, str | int] = {}
    for name, var in FIELDS:
        value = var.get()
        if value is not None:
            values[name] = value
    return values


@contextmanager
def bound(
    *, request: str | None = None, partition_: int | None = None, account_: str | None = None
) -> Iterator[None]:
    """Set some fields for the duration of a block, then restore what was there."""
    resets: list[Callable[[], None]] = []
    if request is not None:
        request_token = request_id.set(request)
        resets.append(lambda: request_id.reset(request_token))
    if partition_ is not None:
        partition_token = partition.set(partition_)
        resets.append(lambda: partition.reset(partition_token))
    if account_ is not None:
        account_token = account.set(account_)
        resets.append(lambda: account.reset(account_token))
    try:
        yield
    finally:
        for reset in reversed(resets):
            reset()
