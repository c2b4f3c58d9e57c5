"""The Redis state store: one object on one connection, made of one part per client.

| part (module)  | client                         | Protocol it satisfies (metering.core.ports) |
|----------------|--------------------------------|---------------------------------------------|
| usage.py       | the processor (and backfill)   | `UsageStore`                                |
| outbox.py      | the outbox publisher           | `OutboxStore`                               |
| close.py       | the period closer              | `CloseStore`                                |
| reminders.py   | the reminder scheduler         | `ReminderStore`                             |
| reads.py       | the API: reads and admission   | (used directly by metering/api)             |
| api_keys.py    | the API: keys                  | (used directly by metering/api)             |
| idempotency.py | the API: Idempotency-Key       | (used directly by metering/api)             |

connection.py holds what they share (the client, scripts, error translation); keys.py every
key name and scan pattern; codec.py the Lua steps' arguments and replies. A process opens one
`RedisStateStore` and hands it to each client as the Protocol that client is typed against,
so one connection pool serves a processor's processor, publisher and closer.
"""

from __future__ import annotations

from metering.state.api_keys import ApiKeyState
from metering.state.close import CloseState
from metering.state.idempotency import IdempotencyState
from metering.state.outbox import OutboxState
from metering.state.reads import ReadState
from metering.state.reminders import ReminderState
from metering.state.usage import UsageState


class RedisStateStore(
    UsageState, OutboxState, CloseState, ReminderState, ReadState, ApiKeyState, IdempotencyState
):
    """Counters, sets, fences, positions and outboxes of every account, in Redis."""
