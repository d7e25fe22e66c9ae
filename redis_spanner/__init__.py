"""redis-spanner: keep a Redis cache coherent with Cloud Spanner.

The public API, for a service that writes through the outbox and reads through the cache::

    from redis_spanner import CacheClient, EventType, open_database, record, run_transaction

A writer that also gives ``run_transaction`` a ``FastPath`` (``AsyncFastPath`` with
``run_transaction_async`` in asyncio code) tombstones its keys right after the commit.

Everything else is internal. The repository's top-level folders are this package's
sub-packages (see ``pyproject.toml``): ``redis_spanner.schemas`` (the contract),
``redis_spanner.producers`` (outbox and relay), ``redis_spanner.consumers`` (apply events to
Redis, the read-through clients) and ``redis_spanner.infra`` (provisioning, the local stack and
the command line). Names load on first use, so importing one side never loads the other's
client libraries.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from redis_spanner.consumers.read_flow import Read
    from redis_spanner.consumers.readthrough import CacheClient
    from redis_spanner.consumers.readthrough_async import AsyncCacheClient
    from redis_spanner.producers.fast_path import FastPath
    from redis_spanner.producers.fast_path_async import AsyncFastPath, run_transaction_async
    from redis_spanner.producers.outbox import record
    from redis_spanner.producers.spanner import open_database, run_transaction
    from redis_spanner.schemas.errors import (
        DecodeError,
        EventTooLarge,
        KeyRefused,
        PermanentError,
        RedisSpannerError,
        TransientError,
        UnknownEventType,
    )
    from redis_spanner.schemas.events import EventType
    from redis_spanner.schemas.settings import Settings

_HOMES = {
    "record": "redis_spanner.producers.outbox",
    "run_transaction": "redis_spanner.producers.spanner",
    "open_database": "redis_spanner.producers.spanner",
    "FastPath": "redis_spanner.producers.fast_path",
    "AsyncFastPath": "redis_spanner.producers.fast_path_async",
    "run_transaction_async": "redis_spanner.producers.fast_path_async",
    "EventType": "redis_spanner.schemas.events",
    "CacheClient": "redis_spanner.consumers.readthrough",
    "AsyncCacheClient": "redis_spanner.consumers.readthrough_async",
    "Read": "redis_spanner.consumers.read_flow",
    "Settings": "redis_spanner.schemas.settings",
    "RedisSpannerError": "redis_spanner.schemas.errors",
    "TransientError": "redis_spanner.schemas.errors",
    "PermanentError": "redis_spanner.schemas.errors",
    "DecodeError": "redis_spanner.schemas.errors",
    "KeyRefused": "redis_spanner.schemas.errors",
    "EventTooLarge": "redis_spanner.schemas.errors",
    "UnknownEventType": "redis_spanner.schemas.errors",
}

__all__ = [
    "AsyncCacheClient",
    "AsyncFastPath",
    "CacheClient",
    "DecodeError",
    "EventTooLarge",
    "EventType",
    "FastPath",
    "KeyRefused",
    "PermanentError",
    "Read",
    "RedisSpannerError",
    "Settings",
    "TransientError",
    "UnknownEventType",
    "open_database",
    "record",
    "run_transaction",
    "run_transaction_async",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'redis_spanner' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
