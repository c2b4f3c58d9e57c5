"""The producer SDK: typed helpers that emit usage events to the service's Kafka topic.

    async with UsageProducer.connect("127.0.0.1:19092", source="crm/eu-1") as usage:
        usage.email_sent("acme", contact="c-9")          # returns at once
        usage.recommendation_viewed("acme", elements=3)
        await usage.flush()                              # everything emitted is acknowledged

    with SyncUsageProducer.connect("127.0.0.1:19092", source="batch-job") as usage:
        usage.sms_sent("acme", contact="c-1", segments=2, hold=admission["hold"]["id"])

`hold=` (any helper) puts the admission hold's id on the event (`holdid`): the processor then
replaces the held units by this usage instead of counting both (docs/api.md, "Holds").

A face of the service, like the API and the CLI: it may import aiokafka, the domain core never
imports it. Every event is validated locally with the processor's own decoder before it is
queued, so a bad call fails at once with the field and the reason instead of landing in the
dead-letter topic later. Buffering is bounded (`max_buffered`); events Kafka does not take
reach `on_delivery_failure`. The HTTP API client is `metering.client.http` (extra `http`).
Install the SDK alone with `pip install 'metering[sdk]'`: no web server comes with it.
Helpers and `emit()` return at once (a future of the receipt); `close()` flushes. docs/sdk.md.
"""

from metering.client.producer import Receipt, UsageProducer
from metering.client.sync import SyncUsageProducer
from metering.core.errors import ApiError, BufferFull, DeliveryError

__all__ = [
    "ApiError",
    "BufferFull",
    "DeliveryError",
    "Receipt",
    "SyncUsageProducer",
    "UsageProducer",
]
