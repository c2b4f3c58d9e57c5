"""Errors of the state store; Redis library errors are translated into these at the boundary."""

from __future__ import annotations

from metering.core.errors import MeteringError


class StateStoreError(MeteringError):
    """The state store could not do what was asked; the message says what and why."""


class StateStoreUnavailable(StateStoreError):
    """Redis could not be reached or timed out: retry with backoff, never skip the batch."""


class StateLost(StateStoreError):
    """Redis answered but the state we wrote is gone (restarted empty): rebuild or stop."""
