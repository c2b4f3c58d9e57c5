"""The HTTP face of the metering service: usage, admission, plans/accounts and the dashboard.

The only package that imports Starlette and uvicorn besides runtime/ (docs/decisions/0001);
it never imports `streams` or `sinks`. Routes speak to the state store
(`metering.state.redis_store`), the configuration `Directory` and two small publishing
protocols (`context.ConfigPublisher`, `context.EventPublisher`) so that the HTTP logic is
tested without Kafka; `metering/runtime/api.py` wires the real Kafka clients. docs/api.md
describes every endpoint.
"""
