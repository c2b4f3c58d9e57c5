"""The demo: the whole service at work on a synthetic but realistic stretch of traffic.

`deploy/demo` brings the local stack up and runs `python -m metering.demo`, which creates
fresh topics for this run, loads the example plans (one per seed vendor), starts a processor
and the API, streams traffic that exercises every policy of the seeds, prints threshold and
tier events as they arrive and the final usage tables, and leaves the processor and the API
running so the dashboard stays reachable (`deploy/demo stop` stops them).

A face of the service, like the CLI: it may use Kafka and Redis through the SDK and the stores.
"""
