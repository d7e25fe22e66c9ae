"""The Lua guard on a real redis-server obeys the same contract as the in-memory cache."""

from __future__ import annotations

import pytest
from redis_spanner.consumers.redis_cache import RedisCache
from redis_spanner.schemas.cache import CacheOp

from tests.cache_contract import CacheContract


class TestRedisCache(CacheContract):
    @pytest.fixture
    def cache(self, redis_cache: RedisCache) -> RedisCache:
        return redis_cache

    def test_script_flush_is_survived(self, cache: RedisCache) -> None:
        """After Redis loses its scripts (restart, SCRIPT FLUSH) the next batch still applies."""
        cache.client.script_flush()
        [result] = cache.apply([CacheOp.invalidate("k", 7)])
        assert result.applied

    def test_entries_expire_tombstones_sooner_than_values(self, cache: RedisCache) -> None:
        """Every entry has a TTL: values the cache TTL, tombstones the tombstone TTL."""
        cache.apply([CacheOp.set("v", 1, 1), CacheOp.invalidate("t", 1)])
        assert 55_000 < cache.client.pttl("v") <= 60_000
        assert 25_000 < cache.client.pttl("t") <= 30_000
