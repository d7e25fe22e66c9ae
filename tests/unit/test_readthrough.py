"""The read-through clients: misses fill through the guard, herds are held off by leases,
and verify=True never serves a value Spanner has moved past. Every test runs against the sync
and the asyncio client, over the in-memory cache."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from redis_spanner.consumers.read_flow import Read
from redis_spanner.consumers.readthrough import FillPolicy, LeasePolicy, ReadThrough
from redis_spanner.consumers.readthrough_async import AsyncCacheClient
from redis_spanner.schemas.cache import CacheOp
from redis_spanner.schemas.catalog import DEMO
from redis_spanner.schemas.keys import CacheKey, Catalog

from tests.fakes import MemoryCache, MemoryRows

CATALOG = Catalog("rsc", DEMO)
KEY = "rsc:account:{Accounts:a}"
TEAM = "rsc:team:{Teams:7}"


LEASES = LeasePolicy(wait_ms=30, poll_ms=5)
# The fake's versions are small numbers: a clock just past them keeps every fill young.
FILLS = FillPolicy(clock=lambda: 1000)


class AsyncMemoryCache:
    """The in-memory cache behind the asyncio client's interface."""

    def __init__(self, inner: MemoryCache) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._inner, name)

        async def call(*args: Any) -> Any:
            return method(*args)
        return call

    async def aclose(self) -> None:
        pass


class AsyncRun:
    def __init__(self, client: AsyncCacheClient) -> None:
        self._client = client

    def get_many(self, keys: Sequence[CacheKey], *, verify: bool = False) -> list[Read]:
        return asyncio.run(self._client.get_many(keys, verify=verify))


Make = Callable[..., Any]


@pytest.fixture(params=["sync", "async"])
def client(request: pytest.FixtureRequest) -> Make:
    def make(cache: MemoryCache, rows: MemoryRows, fills: FillPolicy = FILLS) -> Any:
        if request.param == "sync":
            return ReadThrough(CATALOG, cache, rows, LEASES, fills)
        return AsyncRun(AsyncCacheClient(CATALOG, AsyncMemoryCache(cache), rows, LEASES, fills))
    return make


def test_miss_reads_spanner_and_fills_at_the_read_version(client: Make) -> None:
    """A miss is read from Spanner and cached with the snapshot's read timestamp."""
    cache, rows = MemoryCache(), MemoryRows(version=50)
    rows.values[KEY] = {"Balance": 1}
    [read] = client(cache, rows).get_many([CATALOG.key(CATALOG.template("account"), ["a"])])
    assert (read.hit, read.filled, read.value) == (False, True, {"Balance": 1})
    assert cache.entries[KEY].version == 50
    assert not cache.leases, "the fill lease is given back"


def test_fill_older_than_the_tombstone_is_refused_but_served(client: Make) -> None:
    """A reader whose snapshot predates the invalidation gets its value but can't cache it."""
    cache, rows = MemoryCache(), MemoryRows(version=40)
    cache.apply([CacheOp.invalidate(KEY, 45)])
    rows.values[KEY] = {"Balance": 1}
    [read] = client(cache, rows).get_many([CATALOG.key(CATALOG.template("account"), ["a"])])
    assert not read.filled and read.value == {"Balance": 1}
    assert cache.entries[KEY].tombstone


def test_lease_holder_fills_and_a_contender_reads_without_filling(client: Make) -> None:
    """While another caller holds the fill lease, a reader neither fills nor waits forever."""
    cache, rows = MemoryCache(), MemoryRows(version=60)
    rows.values[KEY] = {"Balance": 2}
    cache.acquire_leases([KEY + ":lease"], "someone-else", 2000)
    [read] = client(cache, rows).get_many([CATALOG.key(CATALOG.template("account"), ["a"])])
    assert read.value == {"Balance": 2} and not read.filled
    assert KEY not in cache.entries


def test_verify_confirms_with_a_version_only_read(client: Make) -> None:
    """A cached value whose row has not changed since its version is served after a
    version-only read; one whose row moved on is re-read and refilled."""
    cache, rows = MemoryCache(), MemoryRows(version=100)
    cache.apply([CacheOp.set(KEY, 70, {"Balance": 1})])
    rows.commits[KEY] = 60
    rt = client(cache, rows)
    key = CATALOG.key(CATALOG.template("account"), ["a"])
    [read] = rt.get_many([key], verify=True)
    assert read.hit and read.value == {"Balance": 1} and rows.reads == []
    rows.commits[KEY], rows.values[KEY] = 90, {"Balance": 9}
    [read] = rt.get_many([key], verify=True)
    assert not read.hit and read.value == {"Balance": 9}
    assert cache.entries[KEY].version == 100


def test_verify_without_version_column_compares_values(client: Make) -> None:
    """Templates without a version column are confirmed by comparing the value itself."""
    cache, rows = MemoryCache(), MemoryRows(version=100)
    cache.apply([CacheOp.set(TEAM, 70, {"Name": "old"})])
    rows.values[TEAM] = {"Name": "new"}
    [read] = client(cache, rows).get_many([CATALOG.key(CATALOG.template("team"), [7])],
                                           verify=True)
    assert read.value == {"Name": "new"} and not rows.version_reads


def test_fill_from_a_snapshot_older_than_the_bound_is_served_not_written(client: Make) -> None:
    """A snapshot older than the bound (half the tombstone TTL) is not written; one within it
    is. The lease is given back either way."""
    key = CATALOG.key(CATALOG.template("account"), ["a"])
    policy = FillPolicy(max_snapshot_age_ns=100, clock=lambda: 1000)
    cache, rows = MemoryCache(), MemoryRows(version=899)
    rows.values[KEY] = {"Balance": 1}
    [read] = client(cache, rows, policy).get_many([key])
    assert read.value == {"Balance": 1} and not read.filled and KEY not in cache.entries
    assert not cache.leases
    rows.version = 900
    [read] = client(cache, rows, policy).get_many([key])
    assert read.filled and cache.entries[KEY].version == 900


def test_read_counters_follow_hits_misses_refused_fills_and_lease_waits(client: Make) -> None:
    """``redis_spanner_reads_total`` moves by one per key for each result: a miss that fills,
    a hit, a fill the guard refuses under a newer tombstone, and a wait on another caller's
    lease."""
    from prometheus_client import REGISTRY

    def counts() -> dict[str, float]:
        return {r: REGISTRY.get_sample_value("redis_spanner_reads_total", {"result": r}) or 0.0
                for r in ("hit", "miss", "fill_refused", "lease_wait")}

    account = CATALOG.key(CATALOG.template("account"), ["a"])
    team = CATALOG.key(CATALOG.template("team"), [7])
    cache, rows = MemoryCache(), MemoryRows(version=40)
    rows.values[KEY], rows.values[TEAM] = {"Balance": 1}, {"Name": "t"}
    rt = client(cache, rows)
    before = counts()
    rt.get_many([account])  # miss, filled at 40
    rt.get_many([account])  # hit
    cache.apply([CacheOp.invalidate(TEAM, 45)])
    rt.get_many([team])  # miss, fill at 40 refused under the tombstone at 45
    cache.acquire_leases([account.lease_key], "someone-else", 2000)
    cache.apply([CacheOp.invalidate(KEY, 41)])
    rt.get_many([account])  # miss, waits on the other caller's lease
    after = counts()
    assert {r: after[r] - before[r] for r in after} == {"hit": 1, "miss": 3,
                                                          "fill_refused": 1, "lease_wait": 1}
