"""One suite for the guard and the fill leases, run against the in-memory cache
(tests/unit/test_memory_cache.py) and against real Redis (tests/redis/test_redis_cache.py)."""

from __future__ import annotations

import uuid
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis_spanner.schemas.cache import OP_INVALIDATE, CacheOp

from tests.waiting import wait_until

KEYS = 3
ops = st.lists(
    st.builds(
        lambda key, invalidate, version, value: (
            CacheOp.invalidate(f"k{key}", version) if invalidate
            else CacheOp.set(f"k{key}", version, value)),
        st.integers(0, KEYS - 1), st.booleans(), st.integers(1, 6), st.integers(0, 3),
    ),
    min_size=1, max_size=25,
)
"""Writes over a few keys and a few versions, so equal versions (ties) are frequent."""

ORDER_FREE = settings(
    max_examples=150, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.differing_executors],
)
"""Every example works in keys of its own, so the test's one cache serves them all; each
subclass of the contract runs the same property on its own cache (a different executor)."""


def in_namespace(op: CacheOp, prefix: str) -> CacheOp:
    return CacheOp(f"{prefix}:{op.key}", op.op, op.version, op.data)


class CacheContract:
    """Subclasses provide a ``cache`` fixture with ``apply``, ``get`` and the fill leases."""

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

    def test_equal_version_is_refused_whatever_the_write(self, cache: Any) -> None:
        """A tie is refused in every combination: a value or a tombstone already at version V
        is kept against a value or a tombstone at V, and the entry is left as it was."""
        for first in (CacheOp.set("t", 7, "held"), CacheOp.invalidate("t", 7)):
            for second in (CacheOp.set("t", 7, "other"), CacheOp.invalidate("t", 7)):
                cache.apply([CacheOp.invalidate("t", 1)])
                key = f"t-{uuid.uuid4().hex[:8]}"
                cache.apply([CacheOp(key, first.op, first.version, first.data)])
                [result] = cache.apply([CacheOp(key, second.op, second.version, second.data)])
                assert (result.applied, result.previous) == (False, 7), (first, second)
                [entry] = cache.get([key])
                assert (entry.version, entry.tombstone, entry.data) == (
                    7, first.op == OP_INVALIDATE, first.data), (first, second)

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
        assert result.applied and result.previous == 20
        assert cache.get(["k"])[0].value() == {"fresh": True}

    def test_invalidation_covered_by_a_newer_value_is_a_no_op(self, cache: Any) -> None:
        """A value read at R already reflects every commit at or before R."""
        cache.apply([CacheOp.set("k", 30, [1, 2])])
        [result] = cache.apply([CacheOp.invalidate("k", 25)])
        assert not result.applied
        assert cache.get(["k"])[0].value() == [1, 2]

    def test_first_write_reports_no_previous_version(self, cache: Any) -> None:
        """A write to an empty key applies and reports that nothing was held."""
        [result] = cache.apply([CacheOp.set("fresh", 3, "x")])
        assert (result.applied, result.previous) == (True, None)

    def test_batch_results_come_back_in_order(self, cache: Any) -> None:
        """Each op of a batch gets its own answer, in the batch's order."""
        results = cache.apply([CacheOp.set(f"k{i}", 5, i) for i in range(50)])
        assert [r.op.key for r in results] == [f"k{i}" for i in range(50)]
        assert all(r.applied for r in results)
        assert [e.value() for e in cache.get([f"k{i}" for i in range(50)])] == list(range(50))

    def test_missing_key_reads_as_none(self, cache: Any) -> None:
        assert cache.get(["nothing-here"]) == [None]

    @ORDER_FREE
    @given(data=st.data(), writes=ops)
    def test_newest_version_wins_and_ties_are_refused_in_any_order(
        self, cache: Any, data: st.DataObject, writes: list[CacheOp]
    ) -> None:
        """Whatever the order, duplication and batching of writes, each write applies exactly
        when it is strictly newer than what the key holds, reports the version it found, and
        the key ends at its newest version, held by the first write of that version."""
        replayed = writes + data.draw(st.lists(st.sampled_from(writes), max_size=10))
        order = data.draw(st.permutations(replayed), label="order")
        cuts = sorted(data.draw(st.sets(st.integers(1, len(order)), max_size=4)))
        prefix = uuid.uuid4().hex[:12]
        held: dict[str, CacheOp] = {}
        for start, end in zip([0, *cuts], [*cuts, len(order)], strict=True):
            batch = [in_namespace(op, prefix) for op in order[start:end]]
            for op, result in zip(batch, cache.apply(batch), strict=True):
                current = held.get(op.key)
                assert result.previous == (current.version if current else None)
                assert result.applied == (current is None or op.version > current.version)
                if result.applied:
                    held[op.key] = op
        keys = sorted({in_namespace(op, prefix).key for op in writes})
        for key, entry in zip(keys, cache.get(keys), strict=True):
            newest = max(op.version for op in writes if f"{prefix}:{op.key}" == key)
            winner = held[key]
            assert entry.version == winner.version == newest
            assert entry.tombstone == (winner.op == OP_INVALIDATE)
            assert entry.data == winner.data

    def test_one_fill_lease_per_key_until_released_by_its_holder(self, cache: Any) -> None:
        """Only one caller takes a key's fill lease; only its holder's token releases it."""
        assert cache.acquire_leases(["a:lease", "b:lease"], "t1", 5000) == [True, True]
        assert cache.acquire_leases(["a:lease"], "t2", 5000) == [False]
        cache.release_leases(["a:lease"], "t2")
        assert cache.acquire_leases(["a:lease"], "t3", 5000) == [False]
        cache.release_leases(["a:lease", "b:lease"], "t1")
        assert cache.acquire_leases(["a:lease", "b:lease"], "t3", 5000) == [True, True]

    def test_a_lease_whose_holder_never_returns_expires_after_its_ttl(self, cache: Any) -> None:
        """A lease left by a crashed holder frees its key once its TTL passes; a late release
        by that holder then frees nothing that a new holder took."""
        assert cache.acquire_leases(["c:lease"], "crashed", 50) == [True]
        wait_until(lambda: cache.acquire_leases(["c:lease"], "next", 60_000) == [True],
                   timeout=30, interval=0.02)
        cache.release_leases(["c:lease"], "crashed")
        assert cache.acquire_leases(["c:lease"], "third", 60_000) == [False]
