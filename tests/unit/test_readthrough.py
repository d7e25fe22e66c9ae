"""The read-through client: misses fill through the guard, herds are held off by leases,
and verify=True never serves a value Spanner has moved past."""

from __future__ import annotations

from redis_spanner.consumers.readthrough import FillPolicy, LeasePolicy, ReadThrough
from redis_spanner.schemas.cache import CacheOp
from redis_spanner.schemas.catalog import DEMO
from redis_spanner.schemas.keys import Catalog

from tests.fakes import MemoryCache, MemoryRows

CATALOG = Catalog("rsc", DEMO)
KEY = "rsc:account:{Accounts:a}"
TEAM = "rsc:team:{Teams:7}"


def client(cache: MemoryCache, rows: MemoryRows) -> ReadThrough:
    # The fake's versions are small numbers: a clock just past them keeps every fill young.
    return ReadThrough(CATALOG, cache, rows, LeasePolicy(wait_ms=30, poll_ms=5),
                       FillPolicy(clock=lambda: 1000))


def test_miss_reads_spanner_and_fills_at_the_read_version() -> None:
    """A miss is read from Spanner and cached with the snapshot's read timestamp."""
    cache, rows = MemoryCache(), MemoryRows(version=50)
    rows.values[KEY] = {"Balance": 1}
    [read] = client(cache, rows).get_many([CATALOG.key(CATALOG.template("account"), ["a"])])
    assert (read.hit, read.filled, read.value) == (False, True, {"Balance": 1})
    assert cache.entries[KEY].version == 50
    assert not cache.leases, "the fill lease is given back"


def test_fill_older_than_the_tombstone_is_refused_but_served() -> None:
    """A reader whose snapshot predates the invalidation gets its value but can't cache it."""
    cache, rows = MemoryCache(), MemoryRows(version=40)
    cache.apply([CacheOp.invalidate(KEY, 45)])
    rows.values[KEY] = {"Balance": 1}
    [read] = client(cache, rows).get_many([CATALOG.key(CATALOG.template("account"), ["a"])])
    assert not read.filled and read.value == {"Balance": 1}
    assert cache.entries[KEY].tombstone


def test_lease_holder_fills_and_a_contender_reads_without_filling() -> None:
    """While another caller holds the fill lease, a reader neither fills nor waits forever."""
    cache, rows = MemoryCache(), MemoryRows(version=60)
    rows.values[KEY] = {"Balance": 2}
    cache.acquire_leases([KEY + ":lease"], "someone-else", 2000)
    [read] = client(cache, rows).get_many([CATALOG.key(CATALOG.template("account"), ["a"])])
    assert read.value == {"Balance": 2} and not read.filled
    assert KEY not in cache.entries


def test_verify_confirms_with_a_version_only_read() -> None:
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


def test_verify_without_version_column_compares_values() -> None:
    """Templates without a version column are confirmed by comparing the value itself."""
    cache, rows = MemoryCache(), MemoryRows(version=100)
    cache.apply([CacheOp.set(TEAM, 70, {"Name": "old"})])
    rows.values[TEAM] = {"Name": "new"}
    [read] = client(cache, rows).get_many([CATALOG.key(CATALOG.template("team"), [7])],
                                           verify=True)
    assert read.value == {"Name": "new"} and not rows.version_reads
