"""Kafka out: threshold, statement and tier events from the outboxes, dead letters, late events,
and configuration records. Never imports the engine (the processor, the closer); only the
Kafka client adapter `streams.kafka` (tests/unit/test_boundaries.py)."""
