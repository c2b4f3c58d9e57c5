"""State: what the processor and the API keep in Redis.

`model` and `keys` are pure (value types, argument encoding, key names) and tested without a
server; `redis_store` is the only module of the project that imports `redis`.
"""
