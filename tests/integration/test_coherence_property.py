"""The coherence property of tests/unit/test_guard_property.py, on a real redis-server: the
Lua guard keeps the cache coherent under any interleaving of late, duplicated and reordered
invalidations, fills and rewarms."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import redis
from redis_spanner.consumers.redis_cache import RedisCache
from redis_spanner.schemas.settings import Settings

from tests.unit.test_guard_property import run_machine

PROPERTY_DB = 14
"""A database index of the session's redis that only this module uses (flushed around it)."""


@pytest.fixture
def db14_cache(settings: Settings) -> Iterator[RedisCache]:
    url = urlsplit(settings.require_redis_url())._replace(path=f"/{PROPERTY_DB}").geturl()
    client = redis.Redis.from_url(url, decode_responses=True)
    client.flushdb()
    yield RedisCache(client, cache_ttl_seconds=600, tombstone_ttl_seconds=600)
    client.flushdb()
    client.close()


def test_lua_guard_keeps_the_cache_coherent_under_any_interleaving(
    db14_cache: RedisCache,
) -> None:
    """On real Redis, after every step the cached version of a key never decreases nor falls
    below a delivered invalidation, a cached value is the row at its version, and after
    quiescence the cache holds the last committed value. Each example uses its own key
    namespace."""
    run_machine(lambda: db14_cache)
