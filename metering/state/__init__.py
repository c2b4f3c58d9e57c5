"""State: what the processor, the closer, the publisher and the API keep in Redis.

The only room that imports `redis`. `keys` and `codec` are pure (key names and scan patterns;
the Lua steps' arguments and replies as core values) and tested without a server;
`connection` holds the client, scripts and error translation; `usage`, `outbox`, `close`,
`reads` and `api_keys` serve one client each; `redis_store` composes them.
"""
