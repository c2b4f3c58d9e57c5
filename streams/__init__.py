"""Kafka in: the usage processor, the period closer, the configuration follower, topics, and the
Kafka client adapter. Typed against `metering.core.ports`; never imports `sinks`,
`metering.state` or `metering.api` (tests/unit/test_boundaries.py)."""
