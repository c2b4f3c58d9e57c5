"""The pure domain: no Kafka, Redis or HTTP, and nothing of ours outside `metering.core`.

See docs/decisions/0007-layout.md for the rooms and the arrows between them.
"""
