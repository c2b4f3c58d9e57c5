"""The service's topics, with partitions, retention and compaction, created idempotently.

| topic (setting)      | key      | partitions        | cleanup / retention                 |
|----------------------|----------|-------------------|-------------------------------------|
| events_topic         | account  | events_partitions | delete, events_retention_ms         |
| dead_letter_topic    | original | 3                 | delete, 30 days, max.message.bytes  |
| late_topic           | original | 3                 | delete, 30 days, max.message.bytes  |
| thresholds_topic     | account  | 3                 | delete, 400 days                    |
| statements_topic     | account  | 3                 | delete, 400 days                    |
| tiers_topic          | account  | 3                 | delete, 400 days                    |
| reminders_topic      | account  | 3                 | delete, 400 days                    |
| accounts_topic       | plan:/account: id | 1        | compact (the full configuration)    |
| publisher_progress_topic | kind:id | publisher_shards | compact (ids published, ADR 0008) |
"""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from metering.core.errors import StreamError
from metering.core.periods import DAY_MS
from metering.settings import Settings
from streams.kafka import SIDE_OUTPUT_MAX_BYTES, client_options, translated


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str]


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """Every topic the service uses, from the settings."""
    keep = {"cleanup.policy": "delete", "retention.ms": str(400 * DAY_MS)}
    # Side topics take every batch the processor's producer may send (its request limit), so
    # a forwarded record is never refused for its size (sinks/side_outputs.py).
    side = {
        "cleanup.policy": "delete",
        "retention.ms": str(30 * DAY_MS),
        "max.message.bytes": str(SIDE_OUTPUT_MAX_BYTES),
    }
    return [
        TopicSpec(
            settings.events_topic,
            settings.events_partitions,
            {"cleanup.policy": "delete", "retention.ms": str(settings.events_retention_ms)},
        ),
        TopicSpec(settings.dead_letter_topic, 3, side),
        TopicSpec(settings.late_topic, 3, side),
        TopicSpec(settings.thresholds_topic, 3, keep),
        TopicSpec(settings.statements_topic, 3, keep),
        TopicSpec(settings.tiers_topic, 3, keep),
        TopicSpec(settings.reminders_topic, 3, keep),
        TopicSpec(settings.accounts_topic, 1, {"cleanup.policy": "compact"}),
        TopicSpec(
            settings.publisher_progress_topic,
            max(1, settings.publisher_shards),
            {"cleanup.policy": "compact"},
        ),
    ]


async def ensure_topics(settings: Settings, *, replication: int = 1) -> list[str]:
    """Create the topics that do not exist yet; returns the names created."""
    admin = AIOKafkaAdminClient(client_id="metering-admin", **client_options(settings))
    async with translated("create topics"):
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            wanted = [s for s in topic_specs(settings) if s.name not in existing]
            if not wanted:
                return []
            response = await admin.create_topics(
                [
                    NewTopic(s.name, s.partitions, replication, topic_configs=s.config)
                    for s in wanted
                ]
            )
        finally:
            await admin.close()
    created = []
    for topic, code, *rest in response.topic_errors:
        if code and code != TopicAlreadyExistsError.errno:
            raise StreamError(f"could not create topic {topic}: error {code} {rest}")
        created.append(topic)
    return created
