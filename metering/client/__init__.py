"""The producer SDK: typed helpers that emit usage events to the service's Kafka topic.

    async with UsageProducer.connect("127.0.0.1:19092", source="crm/eu-1") as usage:
        await usage.email_sent("acme", contact="c-9", kind="marketing")
        await usage.recommendation_viewed("acme", elements=3)

    with SyncUsageProducer.connect("127.0.0.1:19092", source="batch-job") as usage:
        usage.sms_sent("acme", contact="c-1", segments=2, hold=admission["hold"]["id"])

`hold=` (any helper) puts the admission hold's id on the event (`holdid`): the processor then
replaces the held units by this usage instead of counting both (docs/api.md, "Holds").

A face of the service, like the API and the CLI: it may import aiokafka, the domain core never
imports it. Every event is validated locally with the processor's own decoder before it is
sent, so a bad call fails at once with the field and the reason instead of landing in the
dead-letter topic later.
"""

from metering.client.producer import Receipt, UsageProducer
from metering.client.sync import SyncUsageProducer
from metering.core.errors import DeliveryError

__all__ = ["DeliveryError", "Receipt", "SyncUsageProducer", "UsageProducer"]
