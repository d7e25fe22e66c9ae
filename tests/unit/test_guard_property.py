"""Random interleavings of commits, invalidations, fills and rewarms against the guard.

A model of Spanner (every commit of a few rows, with its version) drives the cache the way the
pipeline does: invalidations carry a commit's version and may come late, twice or out of order;
fills and rewarms carry the version of the snapshot they read and may land long after it. The
same machine runs here over the in-memory guard and in tests/redis over a real redis-server,
with Hypothesis's default sizes (100 examples of up to 50 steps).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from redis_spanner.consumers.readthrough import FillPolicy, LeasePolicy, ReadThrough
from redis_spanner.schemas.cache import CacheOp
from redis_spanner.schemas.catalog import ACCOUNT, DEMO
from redis_spanner.schemas.keys import CacheKey, Catalog

from tests.fakes import MemoryCache

ROWS = 3
PROPERTY_SETTINGS = settings(
    max_examples=100,
    stateful_step_count=50,
    deadline=None,
    derandomize=bool(os.environ.get("CI")),
)

balances = st.one_of(st.none(), st.integers(0, 1000))
"""A row's value after a commit; ``None`` is a delete."""


class ModelRows:
    """Spanner as the model sees it: every commit of every row, read at any snapshot."""

    def __init__(self, keys: Sequence[CacheKey]) -> None:
        self.now = 0
        self.commits: dict[str, list[tuple[int, dict[str, int] | None]]] = {
            k.key: [] for k in keys
        }

    def commit(self, key: str, balance: int | None, gap: int) -> int:
        self.now += gap
        self.commits[key].append((self.now, None if balance is None else {"Balance": balance}))
        return self.now

    def value_at(self, key: str, snapshot: int) -> dict[str, int] | None:
        value = None
        for version, committed in self.commits[key]:
            if version > snapshot:
                break
            value = committed
        return value

    def latest(self, key: str) -> dict[str, int] | None:
        return self.value_at(key, self.now)

    def read(self, keys: Sequence[CacheKey]) -> tuple[dict[str, Any], int]:
        return {k.key: self.latest(k.key) for k in keys}, self.now

    def read_versions(self, keys: Sequence[CacheKey]) -> tuple[dict[str, int | None], int]:
        found: dict[str, int | None] = {}
        for k in keys:
            history = self.commits[k.key]
            found[k.key] = history[-1][0] if history and history[-1][1] is not None else None
        return found, self.now


class CoherenceMachine(RuleBasedStateMachine):
    """Subclasses set ``new_cache``: a fresh cache (or a shared one; keys are namespaced per
    run) with the guard's ``apply``/``get`` and the read-through's fill leases."""

    new_cache: Callable[[], Any]

    def __init__(self) -> None:
        super().__init__()
        self.cache = type(self).new_cache()
        self.catalog = Catalog(f"p{uuid.uuid4().hex[:12]}", DEMO)
        self.keys = [self.catalog.key(ACCOUNT, [f"a{n}"]) for n in range(ROWS)]
        self.rows = ModelRows(self.keys)
        self.reader = ReadThrough(self.catalog, self.cache, self.rows,
                                  LeasePolicy(wait_ms=0, poll_ms=1),
                                  FillPolicy(clock=lambda: self.rows.now))
        self.undelivered: list[tuple[str, int]] = []
        """Invalidations of committed versions that Pub/Sub still holds."""
        self.delivered: list[tuple[str, int]] = []
        self.in_flight: list[CacheOp] = []
        """Fills and rewarms that read a snapshot and have not reached the cache yet."""
        self.seen = {k.key: -1 for k in self.keys}
        """The highest version observed per key: the cache may never go below it."""
        self.floor = {k.key: -1 for k in self.keys}
        """The highest invalidation delivered per key: the cache may never go below it."""

    def _key(self, index: int) -> str:
        return self.keys[index].key

    @rule(index=st.integers(0, ROWS - 1), balance=balances, gap=st.integers(1, 3))
    def commit(self, index: int, balance: int | None, gap: int) -> None:
        """A writer commits the row and its outbox event."""
        key = self._key(index)
        self.undelivered.append((key, self.rows.commit(key, balance, gap)))

    @precondition(lambda self: self.undelivered)
    @rule(data=st.data(), keep=st.booleans())
    def deliver(self, data: st.DataObject, keep: bool) -> None:
        """Any pending invalidation is delivered next (reordering); with ``keep`` it stays
        pending too, to be delivered again (a redelivery before the ack)."""
        event = data.draw(st.sampled_from(self.undelivered))
        self._invalidate(*event)
        if not keep:
            self.undelivered.remove(event)

    @precondition(lambda self: self.delivered)
    @rule(data=st.data())
    def redeliver(self, data: st.DataObject) -> None:
        """An event acked long ago comes back (a replay)."""
        self._invalidate(*data.draw(st.sampled_from(self.delivered)))

    def _invalidate(self, key: str, version: int) -> None:
        self.cache.apply([CacheOp.invalidate(key, version)])
        self.delivered.append((key, version))
        self.floor[key] = max(self.floor[key], version)

    @rule(data=st.data(), index=st.integers(0, ROWS - 1))
    def slow_fill(self, data: st.DataObject, index: int) -> None:
        """A reader reads the row at any snapshot up to now; its fill lands later."""
        key = self._key(index)
        snapshot = data.draw(st.integers(0, self.rows.now), label="snapshot")
        self.in_flight.append(CacheOp.set(key, snapshot, self.rows.value_at(key, snapshot)))

    @precondition(lambda self: self.undelivered or self.delivered)
    @rule(data=st.data())
    def slow_rewarm(self, data: st.DataObject) -> None:
        """A consumer rewarms for an event: it reads at a snapshot at or after the event's
        version; its write lands later."""
        key, version = data.draw(st.sampled_from(self.undelivered + self.delivered))
        snapshot = data.draw(st.integers(version, self.rows.now), label="snapshot")
        self.in_flight.append(CacheOp.set(key, snapshot, self.rows.value_at(key, snapshot)))

    @precondition(lambda self: self.in_flight)
    @rule(data=st.data())
    def land(self, data: st.DataObject) -> None:
        """Any fill or rewarm in flight reaches the cache next."""
        op = data.draw(st.sampled_from(self.in_flight))
        self.in_flight.remove(op)
        self.cache.apply([op])

    @rule(index=st.integers(0, ROWS - 1), verify=st.booleans())
    def read_through(self, index: int, verify: bool) -> None:
        """A service reads through the cache now. With ``verify`` it must see the latest
        commit, whatever the cache holds."""
        [read] = self.reader.get_many([self.keys[index]], verify=verify)
        if verify:
            assert read.value == self.rows.latest(read.key)

    @invariant()
    def versions_never_go_back_and_values_match_their_version(self) -> None:
        """The cached version of a key never decreases, never falls below a delivered
        invalidation, and a cached value is exactly the row at the version it carries."""
        entries = self.cache.get([k.key for k in self.keys])
        for key, entry in zip(self.keys, entries, strict=True):
            if entry is None:
                assert self.seen[key.key] == -1, f"{key.key} vanished"
                continue
            assert entry.version >= self.seen[key.key], f"{key.key} went back"
            assert entry.version >= self.floor[key.key], f"{key.key} below an invalidation"
            self.seen[key.key] = entry.version
            if not entry.tombstone:
                assert entry.value() == self.rows.value_at(key.key, entry.version)

    def teardown(self) -> None:
        """Quiescence: once every invalidation is delivered, whatever value the cache holds is
        the last committed one; late fills can't change that; one read-through at the latest
        snapshot caches the last committed value."""
        for event in reversed(self.undelivered):
            self._invalidate(*event)
        self.undelivered.clear()
        self._assert_no_stale_value()
        for op in reversed(self.in_flight):
            self.cache.apply([op])
        self.in_flight.clear()
        self._assert_no_stale_value()
        self.rows.now += 1
        reads = self.reader.get_many(self.keys)
        assert [r.value for r in reads] == [self.rows.latest(k.key) for k in self.keys]
        for key, entry in zip(self.keys, self.cache.get([k.key for k in self.keys]),
                              strict=True):
            assert entry is not None and not entry.tombstone
            assert entry.value() == self.rows.latest(key.key)

    def _assert_no_stale_value(self) -> None:
        for key, entry in zip(self.keys, self.cache.get([k.key for k in self.keys]),
                              strict=True):
            if entry is not None and not entry.tombstone:
                assert entry.value() == self.rows.latest(key.key), f"{key.key} is stale"


def run_machine(new_cache: Callable[[], Any]) -> None:
    machine = type("Machine", (CoherenceMachine,), {"new_cache": staticmethod(new_cache)})
    run_state_machine_as_test(machine, settings=PROPERTY_SETTINGS)


def test_guard_keeps_the_cache_coherent_under_any_interleaving() -> None:
    """Over the in-memory guard: versions never go back, a cached value is the row at its
    version, and after quiescence the cache holds the last committed value."""
    run_machine(MemoryCache)
