"""Kafka stream processors that turn usage events into state in Redis."""
