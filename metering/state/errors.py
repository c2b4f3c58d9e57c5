"""Errors of the state store; Redis library errors are translated into these at the boundary."""

from __future__ import annotations

from typing import ClassVar

from metering.errors import MeteringError


class StateStoreError(MeteringError):
    """The state store could not do what was asked; the message says what and why."""


class StateStoreUnavailable(StateStoreError):
    """Redis could not be reached or timed out: retry with backoff, never skip the batch."""


class StateStoreRefusingWrites(StateStoreUnavailable):
    """Redis answers but refuses writes until an operator acts: retry with backoff.

    A kind of `StateStoreUnavailable` because it is just as transient from a caller's side
    (nothing was written, the same write succeeds once Redis accepts writes again) and just as
    outside the caller's control; `cause` names which refusal it is, so that a 503 or a log
    line can tell the operator what to fix:

    - `persistence` (MISCONF): Redis cannot save (disk full, unwritable directory) and
      `stop-writes-on-bgsave-error` is on;
    - `out_of_memory` (OOM): `maxmemory` is reached under the `noeviction` policy;
    - `read_only` (READONLY): the server is a read-only replica (a failover pointed the API at
      the wrong node, or a `REPLICAOF` left it one).
    """

    CAUSES: ClassVar[dict[str, str]] = {
        "MISCONF": "persistence",
        "OOM": "out_of_memory",
        "READONLY": "read_only",
    }
    """Redis's error prefix -> our cause name."""

    def __init__(self, message: str, cause: str) -> None:
        super().__init__(message)
        self.cause = cause


class StateLost(StateStoreError):
    """Redis answered but the state we wrote is gone (restarted empty): rebuild or stop."""
