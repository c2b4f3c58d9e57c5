"""Usage metering: the domain core (events, plans, meters, periods, thresholds, tiers).

The modules here import no Kafka, Redis or HTTP library; `metering.state.redis_store` (Redis)
and the faces (`metering.api`, `metering.cli`) live beside them and are never imported by them.
"""
