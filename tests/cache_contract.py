"""One suite for the guard, run against the in-memory cache and against real Redis."""

from __future__ import annotations

from typing import Any

from redis_spanner.schemas.cache import CacheOp


class CacheContract:
    """Subclasses provide a ``cache`` fixture with ``apply`` and ``get``."""

    def test_newer_invalidation_replaces_a_value_with_a_tombstone(self, cache: Any) -> None:
        """An invalidation at a newer version leaves a tombstone carrying that version."""
        cache.apply([CacheOp.set("k", 10, {"a": 1})])
        [result] = cache.apply([CacheOp.invalidate("k", 20)])
        assert result.applied and result.previous == 10
        [entry] = cache.get(["k"])
        assert entry.tombstone and entry.version == 20 and entry.data is None

    def test_duplicate_and_older_events_are_no_ops(self, cache: Any) -> None:
        """The same or an older version changes nothing and reports the version held."""
        cache.apply([CacheOp.invalidate("k", 20)])
        results = cache.apply([CacheOp.invalidate("k", 20), CacheOp.invalidate("k", 5)])
        assert [(r.applied, r.previous) for r in results] == [(False, 20), (False, 20)]

    def test_fill_older_than_tombstone_is_refused(self, cache: Any) -> None:
        """A slow fill read before the commit cannot bring the stale value back."""
        cache.apply([CacheOp.invalidate("k", 20)])
        [result] = cache.apply([CacheOp.set("k", 15, {"stale": True})])
        assert not result.applied
        assert cache.get(["k"])[0].tombstone

    def test_fill_newer_than_tombstone_is_accepted(self, cache: Any) -> None:
        """A fill from a snapshot after the commit replaces the tombstone."""
        cache.apply([CacheOp.invalidate("k", 20)])
        [result] = cache.apply([CacheOp.set("k", 21, {"fresh": True})])
        assert result.applied
        assert cache.get(["k"])[0].value() == {"fresh": True}

    def test_invalidation_covered_by_a_newer_value_is_a_no_op(self, cache: Any) -> None:
        """A value read at R already reflects every commit at or before R."""
        cache.apply([CacheOp.set("k", 30, [1, 2])])
        [result] = cache.apply([CacheOp.invalidate("k", 25)])
        assert not result.applied
        assert cache.get(["k"])[0].value() == [1, 2]

    def test_batch_results_come_back_in_order(self, cache: Any) -> None:
        """Each op of a batch gets its own answer, in the batch's order."""
        results = cache.apply([CacheOp.set(f"k{i}", 5, i) for i in range(50)])
        assert [r.op.key for r in results] == [f"k{i}" for i in range(50)]
        assert all(r.applied for r in results)
        assert [e.value() for e in cache.get([f"k{i}" for i in range(50)])] == list(range(50))

    def test_missing_key_reads_as_none(self, cache: Any) -> None:
        assert cache.get(["nothing-here"]) == [None]

    def test_one_fill_lease_per_key_until_released_by_its_holder(self, cache: Any) -> None:
        """Only one caller takes a key's fill lease; only its holder's token releases it."""
        assert cache.acquire_leases(["a:lease", "b:lease"], "t1", 5000) == [True, True]
        assert cache.acquire_leases(["a:lease"], "t2", 5000) == [False]
        cache.release_leases(["a:lease"], "t2")
        assert cache.acquire_leases(["a:lease"], "t3", 5000) == [False]
        cache.release_leases(["a:lease", "b:lease"], "t1")
        assert cache.acquire_leases(["a:lease", "b:lease"], "t3", 5000) == [True, True]
