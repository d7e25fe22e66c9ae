"""The Lua guard on a real redis-server obeys the same contract as the in-memory cache."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import redis
from redis_spanner.consumers.redis_cache import RedisCache
from redis_spanner.schemas import versions
from redis_spanner.schemas.cache import (
    FOREIGN_BAD_STATE,
    FOREIGN_BAD_VERSION,
    FOREIGN_FUTURE,
    FOREIGN_TYPE,
    FOREIGN_UNVERSIONED,
    OP_INVALIDATE,
    CacheOp,
)

from tests.cache_contract import CacheContract

# What an outside client or an older release may leave at a key, and the kind the guard must
# report when it overwrites it. A version ahead of the clock comes first: a guard that trusted
# foreign versions would refuse the write there.
FOREIGN: dict[str, tuple[Callable[[redis.Redis, str], Any], str]] = {
    "the largest version": (lambda r, k: r.hset(k, mapping={"v": "9" * 20, "s": "t"}),
                            FOREIGN_FUTURE),
    "a string": (lambda r, k: r.set(k, "plain"), FOREIGN_TYPE),
    "a hash without a version": (lambda r, k: r.hset(k, mapping={"d": "{}", "s": "v"}),
                                 FOREIGN_UNVERSIONED),
    "a version not a number": (lambda r, k: r.hset(k, mapping={"v": "a" * 20, "s": "t"}),
                               FOREIGN_BAD_VERSION),
    "a value without data": (lambda r, k: r.hset(k, mapping={"v": versions.encode(5), "s": "v"}),
                             FOREIGN_BAD_STATE),
}


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

    def test_a_foreign_entry_is_overwritten_and_reported_by_kind(self, cache: RedisCache) -> None:
        """Whatever the guard did not write at a key (another type, a hash without a version,
        a version that is no number or lies ahead of the clock, a value without data) is
        overwritten by an invalidation and by a fill alike, reported with its kind and no
        previous version, and the entry left is the guard's own."""
        assert isinstance(cache.client, redis.Redis)  # one server, not a cluster
        for name, (plant, kind) in FOREIGN.items():
            for op in (CacheOp.invalidate("k", 7), CacheOp.set("k", 7, {"a": 1})):
                cache.client.delete("k")
                plant(cache.client, "k")
                [result] = cache.apply([op])
                assert (result.applied, result.previous, result.foreign) == (True, None, kind), (
                    name, op.op)
                [entry] = cache.get(["k"])
                assert entry is not None and entry.version == 7, (name, op.op)
                assert entry.tombstone is (op.op == OP_INVALIDATE), (name, op.op)
