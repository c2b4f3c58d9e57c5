"""Every exception we raise on purpose: one root, a `retriable` flag, data on each exception.

Everything derives from `MeteringError`, so a caller (processor, API, CLI) can catch our
refusals without catching programming errors. Each exception keeps its facts as attributes (a
reason code, a field path, a file name) because callers turn them into dead-letter headers,
metric labels and HTTP problem documents, and parsing a message back would be fragile.

`retriable` (a class attribute, aiokafka's `KafkaError.retriable` style) answers "may the same
call succeed if I try again later, unchanged?". Callers decide by the flag, not by the class:
the processor backs off and retries a batch on a retriable error and stops on any other one;
the API answers 503 with Retry-After for a retriable one (metering/api/app.py). Library errors
(redis-py, aiokafka) are translated into these at the boundary (metering/state/,
streams/kafka.py) with `raise ... from exc`.

The whole tree lives in this module (ADR 0007) so that it can be read in one place;
metering/core/ imports no library, so the Redis and Kafka classes carry no library types.

Tree (`*` = retriable)::

    MeteringError
    ├── EventRejected          an event that cannot be metered (reason code + field)
    ├── PlanError              a plan file that does not describe a valid plan
    ├── AccountError           account settings that do not fit their plan
    ├── ApiKeyError            an API key record that cannot be applied
    ├── PeriodError            a timezone or anchor that cannot define periods
    ├── UnknownAccount         no account with this id
    ├── UnknownPlan            no plan with this id
    ├── UnknownMeter           the plan has no meter with this name
    ├── ConfigError            a setting (METERING_*) with a value we cannot use
    ├── StateStoreError        Redis refused an operation (a bug or a misconfiguration)
    │   ├── StateStoreUnavailable *  Redis unreachable or timed out
    │   │   └── StateStoreRefusingWrites *  Redis answers but refuses writes (cause)
    │   └── StateLost          Redis answered but the state we wrote is gone
    ├── StreamError            Kafka refused or failed an operation
    │   ├── StreamUnavailable *      the broker unreachable, timed out, or said "retriable"
    │   │   └── KafkaWriteTimeout *  the API's deadline on a Kafka write passed
    │   ├── RecordRejected     Kafka refused one record for what it is (too large)
    │   ├── TopicMissing       a topic the CLI reads or writes does not exist
    │   ├── PositionOutOfRange a fetch position outside the partition's log
    │   └── NotPositioned      a partition without a fetch position yet (a seek follows)
    ├── DeliveryError *        the producer SDK: Kafka did not acknowledge an event
    ├── BufferFull *           the producer SDK: its bounded buffer is full (nothing queued)
    ├── ApiError               the SDK's HTTP client: the API refused (status, code) or is silent
    ├── ApiCallFailed          the CLI: the API refused or could not be reached
    │   └── ApiUnreachable     no answer at all from the API's URL
    ├── InputError             the CLI: a file it was given cannot be used (names the lines)
    └── BackfillRefused        the backfill's target is not empty

The HTTP face has two exceptions of its own that are not errors of the service but control
flow inside Starlette: `metering.api.problems.Problem` (an HTTP problem document to send) and
the body-limit signal in metering/api/app.py. They stay in the API (ADR 0007).
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar


class MeteringError(Exception):
    """Root of every error we raise on purpose."""

    retriable: ClassVar[bool] = False
    """Whether the same call may succeed if tried again later, unchanged (see the module doc)."""


class RejectReason(StrEnum):
    """Stable codes for why an event was not metered.

    The values are part of the public contract: they label dead-lettered records and metrics,
    so they never change once released (add new ones instead).
    """

    NOT_JSON = "not_json"
    NOT_OBJECT = "not_object"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    INVALID_VALUE = "invalid_value"
    UNKNOWN_TYPE = "unknown_type"
    UNSUPPORTED_VERSION = "unsupported_version"
    OVERSIZED = "oversized"
    NEGATIVE_QUANTITY = "negative_quantity"
    ABSURD_QUANTITY = "absurd_quantity"
    FUTURE_TIMESTAMP = "future_timestamp"
    UNKNOWN_ACCOUNT = "unknown_account"
    """Decided by the processor (the decoder does not know the accounts)."""
    KEY_MISMATCH = "key_mismatch"
    """The Kafka record key names another account than the event's `subject`: the record sits
    on another account's partition, so counting it would break per-account order."""


class EventRejected(MeteringError):
    """An event that cannot be metered; it goes to the dead-letter topic with `reason`."""

    def __init__(self, reason: RejectReason, field: str | None, detail: str) -> None:
        self.reason = reason
        """Stable code (dead-letter header, metric label)."""
        self.field = field
        """Dotted path of the offending field (`data.quantity`), None for the whole record."""
        self.detail = detail
        """Human-readable explanation, safe to log (never contains the whole payload)."""
        where = f" at {field}" if field else ""
        super().__init__(f"{reason.value}{where}: {detail}")


class PlanError(MeteringError):
    """A plan file that does not describe a valid plan.

    The message names the file, the dotted field path and the problem, so the person who wrote
    the file can fix it without reading our code.
    """

    def __init__(self, source: str, field: str, problem: str) -> None:
        self.source = source
        """File name (or another label for where the plan came from)."""
        self.field = field
        """Dotted path, e.g. `meters.contacts.limit`; empty for the whole document."""
        self.problem = problem
        super().__init__(f"{source}: {field or '<document>'}: {problem}")


class AccountError(MeteringError):
    """Account settings that do not fit their plan (unknown meter in an override, ...)."""

    def __init__(self, account: str, field: str, problem: str) -> None:
        self.account = account
        self.field = field
        self.problem = problem
        super().__init__(f"account {account}: {field}: {problem}")


class ApiKeyError(MeteringError):
    """An API key record that cannot be applied (names the field and the problem)."""

    def __init__(self, key_id: str, field: str, problem: str) -> None:
        self.key_id = key_id
        self.field = field
        self.problem = problem
        super().__init__(f"API key {key_id}: {field or '<document>'}: {problem}")


class PeriodError(MeteringError):
    """A timezone or anchor date that cannot define periods."""

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(problem)


class UnknownAccount(MeteringError):
    """No account with this id (the processor dead-letters with `RejectReason.UNKNOWN_ACCOUNT`)."""

    def __init__(self, account: str) -> None:
        self.account = account
        super().__init__(f"unknown account {account!r}")


class UnknownPlan(MeteringError):
    """No plan with this id."""

    def __init__(self, plan_id: str) -> None:
        self.plan_id = plan_id
        super().__init__(f"unknown plan {plan_id!r}")


class UnknownMeter(MeteringError):
    """The plan has no meter with this name."""

    def __init__(self, plan_id: str, meter: str) -> None:
        self.plan_id = plan_id
        self.meter = meter
        super().__init__(f"plan {plan_id!r} has no meter {meter!r}")


class ConfigError(MeteringError):
    """A setting has a value we cannot use; names the variable and the problem."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem


# --- the state store (metering/state/ translates redis-py errors into these) ----------------


class StateStoreError(MeteringError):
    """The state store could not do what was asked; the message says what and why."""


class StateStoreUnavailable(StateStoreError):
    """Redis could not be reached or timed out: retry with backoff, never skip the batch."""

    retriable = True


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


# --- Kafka (streams/kafka.py translates aiokafka errors into these) -------------------------


class StreamError(MeteringError):
    """Kafka refused or failed an operation; the message names the operation and the cause."""


class StreamUnavailable(StreamError):
    """The broker could not be reached, timed out, or answered with an error Kafka marks
    retriable (a leader moving, a coordinator loading...): retry with backoff."""

    retriable = True


class KafkaWriteTimeout(StreamUnavailable):
    """Kafka did not acknowledge a write within the API's deadline (metering/api/deadline.py)."""


class RecordRejected(StreamError):
    """Kafka refused one record for what it is (too large for the request or the topic):
    sending it again cannot succeed, but other records can."""


class PositionOutOfRange(StreamError):
    """A fetch position is outside the partition's log (retention deleted the records it
    points at, or the log was truncated): `positions` maps (topic, partition) to the offset."""

    def __init__(self, message: str, positions: dict[tuple[str, int], int]) -> None:
        super().__init__(message)
        self.positions = positions


class NotPositioned(StreamError):
    """A partition has no fetch position yet (assigned, not sought by the rebalance listener
    yet, with `auto_offset_reset="none"`): the listener's seek follows; nothing to retry."""

    def __init__(self, message: str, partitions: list[tuple[str, int]]) -> None:
        super().__init__(message)
        self.partitions = partitions


# --- the faces -------------------------------------------------------------------------------


class DeliveryError(MeteringError):
    """Kafka did not acknowledge an event; `event_id` says which, so it can be retried as is
    (the same id counts once however often it is delivered within the dedup window)."""

    retriable = True

    def __init__(self, event_id: str, problem: str) -> None:
        super().__init__(f"event {event_id} not delivered: {problem}")
        self.event_id = event_id
        self.problem = problem


class BufferFull(MeteringError):
    """The producer SDK's `emit()` found its buffer full: `max_buffered` events are waiting for
    Kafka. Nothing was queued; the buffer drains as Kafka acknowledges (`flush()` waits)."""

    retriable = True

    def __init__(self, max_buffered: int, waited_ms: int) -> None:
        waited = f" after waiting {waited_ms} ms" if waited_ms else ""
        super().__init__(
            f"the SDK's buffer is full ({max_buffered} events not yet acknowledged by Kafka)"
            f"{waited}: call flush() or slow down, or raise max_buffered"
        )
        self.max_buffered = max_buffered


class ApiError(MeteringError):
    """The SDK's HTTP client: the API answered with a problem document (`status`, `code`,
    `detail`), or did not answer at all (`status` 0, `code` "unreachable")."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        where = f"HTTP {status}" if status else "no answer"
        super().__init__(f"{where} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail


class ApiCallFailed(MeteringError):
    """The API refused or could not be reached; the message carries its problem document."""


class ApiUnreachable(ApiCallFailed):
    """The API did not answer at all (no server at the URL, a timeout)."""


class BackfillRefused(MeteringError):
    """The backfill's target cannot be rebuilt into (not empty)."""


class InputError(MeteringError):
    """A file or stream given to the CLI that cannot be used (missing, unreadable, bad lines);
    the message names the file, the lines and the problem."""


class TopicMissing(StreamError):
    """Topics the CLI reads or writes do not exist; names each with its variable."""

    def __init__(self, topics: list[str], variables: list[str]) -> None:
        names = ", ".join(f"{t} ({v})" for t, v in zip(topics, variables, strict=True))
        super().__init__(
            f"Kafka topic missing: {names}; create it with `metering topics create`, or point "
            f"the variable at an existing topic (`deploy/demo` prints its run's exports)"
        )
        self.topics = topics
