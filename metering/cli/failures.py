"""Expected failures of the `metering` command as one line and a documented exit status.

A command that cannot reach Kafka or Redis, finds no topic, reads a bad setting or a bad file
has failed in a way the operator can fix; a traceback would bury the fix. `explain` turns such
an exception (ours, or a library's that escaped its boundary) into the line to print, naming
the problem and the fix, and the exit status of docs/cli.md. Anything else is a bug: the caller
lets it raise with its traceback. `--debug` prints the traceback of expected failures too.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from metering.core.errors import (
    AccountError,
    ApiUnreachable,
    ConfigError,
    InputError,
    MeteringError,
    PlanError,
    StateStoreUnavailable,
    StreamUnavailable,
    TopicMissing,
)
from metering.settings import Settings


class Exit(IntEnum):
    """Exit statuses of `metering` (docs/cli.md lists them)."""

    OK = 0
    NOT_FOUND = 1
    """`api-keys revoke` of a key that does not exist."""
    REFUSED = 2
    """A command-line usage error, or the service refused (a plan dropping meters in use,
    the processor's StateLost...)."""
    TIMED_OUT = 3
    """`metering wait`: the timeout passed first."""
    BAD_SETTINGS = 4
    BAD_INPUT = 5
    KAFKA_UNAVAILABLE = 6
    TOPIC_MISSING = 7
    REDIS_UNAVAILABLE = 8
    API_UNREACHABLE = 9


@dataclass(frozen=True, slots=True)
class Failure:
    """What to print (one line, without the `metering: ` prefix) and the exit status."""

    line: str
    code: Exit


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()).rstrip(".") or type(exc).__name__


def explain(exc: BaseException, settings: Settings | None) -> Failure | None:  # noqa: PLR0911
    """The one-line failure for an expected exception, or None for a bug."""
    kafka = settings.kafka_bootstrap if settings else "METERING_KAFKA_BOOTSTRAP"
    if isinstance(exc, ConfigError):
        return Failure(f"bad setting {_one_line(exc)}; fix the variable", Exit.BAD_SETTINGS)
    if isinstance(exc, InputError | PlanError | AccountError):
        return Failure(_one_line(exc), Exit.BAD_INPUT)
    if isinstance(exc, TopicMissing):
        return Failure(_one_line(exc), Exit.TOPIC_MISSING)
    if isinstance(exc, StreamUnavailable) or _is_kafka_unreachable(exc):
        what = _one_line(exc) if isinstance(exc, MeteringError) else f"Kafka unreachable ({exc!r})"
        return Failure(
            f"{what}; is Kafka running at {kafka}? Start it (`deploy/local/stack.sh up`) or "
            "set METERING_KAFKA_BOOTSTRAP",
            Exit.KAFKA_UNAVAILABLE,
        )
    if isinstance(exc, StateStoreUnavailable):
        return Failure(
            f"{_one_line(exc)}; is Redis running and METERING_REDIS_URL right? Start it "
            "(`deploy/local/stack.sh up`) or set METERING_REDIS_URL",
            Exit.REDIS_UNAVAILABLE,
        )
    if isinstance(exc, ApiUnreachable):
        return Failure(_one_line(exc), Exit.API_UNREACHABLE)
    if _is_unknown_topic(exc):
        return Failure(
            f"Kafka topic missing ({type(exc).__name__}); create it with `metering topics "
            "create` or point METERING_*_TOPIC at an existing one",
            Exit.TOPIC_MISSING,
        )
    if isinstance(exc, MeteringError):
        return Failure(_one_line(exc), Exit.REFUSED)
    return None


def _is_kafka_unreachable(exc: BaseException) -> bool:
    from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError  # noqa: PLC0415

    return isinstance(exc, KafkaConnectionError | KafkaTimeoutError)


def _is_unknown_topic(exc: BaseException) -> bool:
    from aiokafka.errors import UnknownTopicOrPartitionError  # noqa: PLC0415

    return isinstance(exc, UnknownTopicOrPartitionError)
