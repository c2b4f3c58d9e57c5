"""Errors of the Kafka side; aiokafka errors are translated into these at the boundary."""

from __future__ import annotations

from metering.core.errors import MeteringError


class StreamError(MeteringError):
    """Kafka refused or failed an operation; the message names the operation and the cause."""


class StreamUnavailable(StreamError):
    """The broker could not be reached or timed out: retry with backoff."""
