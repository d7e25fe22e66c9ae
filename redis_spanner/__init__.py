"""redis-spanner: keep a Redis cache coherent with Cloud Spanner.

The repository's top-level folders are this package's sub-packages (see ``pyproject.toml``):
``redis_spanner.schemas`` (the contract), ``redis_spanner.producers`` (outbox and relay),
``redis_spanner.consumers`` (apply events to Redis) and ``redis_spanner.infra`` (provisioning,
the local stack and the command line).
"""
