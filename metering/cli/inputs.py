"""What the CLI reads before it touches Kafka: input files, event lines, the topics it needs.

Everything here fails before anything is sent, so a bad file or a missing topic never leaves
half of a run in Kafka: `checked_events` validates every line with the processor's own decoder
(metering/core/events.py) and refuses the whole file naming each bad line; `require_topics`
asks the cluster which topics exist instead of letting the producer wait 40 s for metadata.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from metering.core.errors import EventRejected, InputError, TopicMissing
from metering.settings import Settings

SHOWN_BAD_LINES = 10
"""Bad lines printed one by one; the summary counts the rest."""


def read_input(name: str) -> bytes:
    """The bytes of a file named on the command line (`-`: standard input)."""
    if name == "-":
        return sys.stdin.buffer.read()
    path = Path(name)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{name}: no such file; give an existing file, or - for stdin") from None
    except IsADirectoryError:
        raise InputError(f"{name}: is a directory; give a file, or - for stdin") from None
    except OSError as exc:
        raise InputError(
            f"{name}: cannot be read ({exc.strerror}); check its permissions"
        ) from None


def checked_events(raw: bytes, name: str, settings: Settings) -> list[tuple[bytes, bytes]]:
    """(line, key) of every event line, blank lines skipped; `InputError` when any line is
    not an event the processor would accept. Bad lines are printed to stderr first, each with
    its number and reason (the first `SHOWN_BAD_LINES`)."""
    from metering.core.events import decode_event  # noqa: PLC0415 - keep --help light

    now_ms = int(time.time() * 1000)
    good: list[tuple[bytes, bytes]] = []
    bad: list[int] = []
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            event = decode_event(
                line,
                now_ms=now_ms,
                max_bytes=settings.max_event_bytes,
                max_future_ms=settings.max_future_s * 1000,
            )
        except EventRejected as exc:
            bad.append(number)
            if len(bad) <= SHOWN_BAD_LINES:
                print(f"{name}:{number}: {exc}", file=sys.stderr)  # noqa: T201
            continue
        good.append((line, event.account.encode()))
    if bad:
        shown = ", ".join(str(n) for n in bad[:SHOWN_BAD_LINES])
        more = f" and {len(bad) - SHOWN_BAD_LINES} more" if len(bad) > SHOWN_BAD_LINES else ""
        raise InputError(
            f"{name}: {len(bad)} of {len(bad) + len(good)} lines are not valid usage events "
            f"(lines {shown}{more}); nothing was sent: fix or remove them (docs/asyncapi.yaml)"
        )
    if not good:
        raise InputError(f"{name}: no events (the input is empty); give JSON lines, one event each")
    return good


async def require_topics(settings: Settings, fields: list[str]) -> None:
    """Raise `TopicMissing` naming each of these topics (Settings field names) that the
    cluster does not have, with the variable that names it."""
    from streams.kafka import new_consumer, started  # noqa: PLC0415

    consumer = new_consumer(settings, group_id=None, client_id="metering-cli-topics")
    async with started(consumer):
        existing = await consumer.topics()
    missing = [f for f in fields if getattr(settings, f) not in existing]
    if missing:
        raise TopicMissing(
            [getattr(settings, f) for f in missing], [f"METERING_{f.upper()}" for f in missing]
        )
