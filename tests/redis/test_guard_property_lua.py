"""The coherence machine of tests/unit/test_guard_property.py, on a real redis-server: the
Lua guard keeps the cache coherent under any interleaving of late, duplicated and reordered
invalidations, fills and rewarms."""

from __future__ import annotations

from redis_spanner.consumers.redis_cache import RedisCache

from tests.unit.test_guard_property import run_machine


def test_lua_guard_keeps_the_cache_coherent_under_any_interleaving(
    redis_cache: RedisCache,
) -> None:
    """On real Redis, after every step the cached version of a key never decreases nor falls
    below a delivered invalidation, a cached value is the row at its version, and after
    quiescence the cache holds the last committed value. Each example uses its own key
    namespace."""
    run_machine(lambda: redis_cache)
