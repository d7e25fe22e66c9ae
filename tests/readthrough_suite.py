"""The read-through client's fault-free paths, run over the in-memory cache
(tests/unit/test_readthrough.py) and over real Redis (tests/redis/test_readthrough_on_redis.py):
misses fill through the guard, herds are held off by leases, and verify=True never serves a
value Spanner has moved past."""

from __future__ import annotations

import threading
from typing import Any

from prometheus_client import REGISTRY
from redis_spanner.consumers.readthrough import FillPolicy, LeasePolicy, ReadThrough
from redis_spanner.schemas.cache import CacheOp
from redis_spanner.schemas.catalog import DEMO
from redis_spanner.schemas.keys import Catalog

from tests.fakes import MemoryRows

CATALOG = Catalog("rsc", DEMO)
KEY = "rsc:account:{Accounts:a}"
TEAM = "rsc:team:{Teams:7}"
ACCOUNT_A = CATALOG.key(CATALOG.template("account"), ["a"])


# The fake's versions are small numbers: a clock just past them keeps every fill young.
FILLS = FillPolicy(clock=lambda: 1000)


def client(cache: Any, rows: MemoryRows, wait_ms: int = 30) -> ReadThrough:
    return ReadThrough(CATALOG, cache, rows, LeasePolicy(wait_ms=wait_ms, poll_ms=5), FILLS)


def lease_is_free(cache: Any, key: str) -> bool:
    taken: bool = cache.acquire_leases([key + ":lease"], "probe", 60_000) == [True]
    cache.release_leases([key + ":lease"], "probe")
    return taken


class ReadThroughSuite:
    """Subclasses provide a ``cache`` fixture: a guarded cache with fill leases."""

    def test_miss_reads_spanner_and_fills_at_the_read_version(self, cache: Any) -> None:
        """A miss is read from Spanner and cached with the snapshot's read timestamp; the fill
        lease is given back."""
        rows = MemoryRows(version=50)
        rows.values[KEY] = {"Balance": 1}
        [read] = client(cache, rows).get_many([ACCOUNT_A])
        assert (read.hit, read.filled, read.value, read.version) == (False, True,
                                                                      {"Balance": 1}, 50)
        [entry] = cache.get([KEY])
        assert (entry.version, entry.value()) == (50, {"Balance": 1})
        assert lease_is_free(cache, KEY), "the fill lease is given back"

    def test_hit_is_served_from_the_cache_without_reading_spanner(self, cache: Any) -> None:
        """A cached value is served as a hit, with its version, and Spanner is not read."""
        rows = MemoryRows(version=90)
        cache.apply([CacheOp.set(KEY, 70, {"Balance": 3})])
        [read] = client(cache, rows).get_many([ACCOUNT_A])
        assert (read.hit, read.value, read.version, read.filled) == (True, {"Balance": 3},
                                                                      70, False)
        assert rows.reads == [] and rows.version_reads == []

    def test_a_tombstone_is_a_miss(self, cache: Any) -> None:
        """A tombstone is never served: the key is read from Spanner and refilled."""
        rows = MemoryRows(version=80)
        rows.values[KEY] = {"Balance": 4}
        cache.apply([CacheOp.invalidate(KEY, 60)])
        assert client(cache, rows).get("account", "a") == {"Balance": 4}
        assert cache.get([KEY])[0].version == 80

    def test_fill_older_than_the_tombstone_is_refused_but_served(self, cache: Any) -> None:
        """A reader whose snapshot predates the invalidation gets its value but can't cache
        it."""
        rows = MemoryRows(version=40)
        cache.apply([CacheOp.invalidate(KEY, 45)])
        rows.values[KEY] = {"Balance": 1}
        [read] = client(cache, rows).get_many([ACCOUNT_A])
        assert not read.filled and read.value == {"Balance": 1}
        assert cache.get([KEY])[0].tombstone

    def test_lease_holder_fills_and_a_contender_reads_without_filling(self, cache: Any) -> None:
        """While another caller holds the fill lease, a reader neither fills nor waits
        forever, and leaves the holder's lease alone."""
        rows = MemoryRows(version=60)
        rows.values[KEY] = {"Balance": 2}
        cache.acquire_leases([KEY + ":lease"], "someone-else", 60_000)
        [read] = client(cache, rows).get_many([ACCOUNT_A])
        assert read.value == {"Balance": 2} and not read.filled and not read.hit
        assert cache.get([KEY]) == [None]
        assert not lease_is_free(cache, KEY)

    def test_a_contender_takes_the_holders_value_when_it_lands(self, cache: Any) -> None:
        """A reader that lost the lease serves the holder's value once it is cached, without
        reading Spanner."""
        rows = MemoryRows(version=60)
        cache.acquire_leases([KEY + ":lease"], "holder", 60_000)
        holder = threading.Timer(0.2, cache.apply, [[CacheOp.set(KEY, 55, {"Balance": 5})]])
        holder.start()
        try:
            [read] = client(cache, rows, wait_ms=60_000).get_many([ACCOUNT_A])
        finally:
            holder.join()
        assert (read.key, read.hit, read.value, read.version) == (KEY, True, {"Balance": 5}, 55)
        assert rows.reads == []

    def test_one_round_trip_per_side_for_many_keys(self, cache: Any) -> None:
        """Several misses are read in one Spanner call and come back in the asked order."""
        rows = MemoryRows(version=30)
        keys = [CATALOG.key(CATALOG.template("account"), [f"k{i}"]) for i in range(5)]
        for i, key in enumerate(keys):
            rows.values[key.key] = {"Balance": i}
        reads = client(cache, rows).get_many(keys)
        assert [r.value for r in reads] == [{"Balance": i} for i in range(5)]
        assert [r.key for r in reads] == [k.key for k in keys]
        assert rows.reads == [[k.key for k in keys]]

    def test_verify_confirms_with_a_version_only_read(self, cache: Any) -> None:
        """A cached value whose row has not changed since its version is served after a
        version-only read; one whose row moved on is re-read and refilled."""
        rows = MemoryRows(version=100)
        cache.apply([CacheOp.set(KEY, 70, {"Balance": 1})])
        rows.commits[KEY] = 70
        rt = client(cache, rows)
        [read] = rt.get_many([ACCOUNT_A], verify=True)
        assert read.hit and read.value == {"Balance": 1} and rows.reads == []
        rows.commits[KEY], rows.values[KEY] = 90, {"Balance": 9}
        [read] = rt.get_many([ACCOUNT_A], verify=True)
        assert not read.hit and read.value == {"Balance": 9}
        assert cache.get([KEY])[0].version == 100

    def test_verify_drops_a_value_whose_row_was_deleted(self, cache: Any) -> None:
        """A cached value whose row no longer exists is not served under verify."""
        rows = MemoryRows(version=100)
        cache.apply([CacheOp.set(KEY, 70, {"Balance": 1})])
        [read] = client(cache, rows).get_many([ACCOUNT_A], verify=True)
        assert read.value is None and not read.hit

    def test_verify_without_version_column_compares_values(self, cache: Any) -> None:
        """Templates without a version column are confirmed by comparing the value itself:
        an unchanged value is a hit, a changed one is re-read."""
        rows = MemoryRows(version=100)
        team = CATALOG.key(CATALOG.template("team"), [7])
        cache.apply([CacheOp.set(TEAM, 70, {"Name": "same"})])
        rows.values[TEAM] = {"Name": "same"}
        [read] = client(cache, rows).get_many([team], verify=True)
        assert read.hit and read.value == {"Name": "same"}
        rows.values[TEAM] = {"Name": "new"}
        [read] = client(cache, rows).get_many([team], verify=True)
        assert read.value == {"Name": "new"} and not read.hit
        assert not rows.version_reads

    def test_get_reads_one_key_by_template_name_and_parts(self, cache: Any) -> None:
        """``get`` builds the key from a template name and parts and returns the value."""
        rows = MemoryRows(version=10)
        rows.values[TEAM] = {"Name": "t"}
        reader = client(cache, rows)
        assert reader.key("team", 7).key == TEAM
        assert reader.get("team", 7) == {"Name": "t"}
        assert reader.get("team", 7, verify=True) == {"Name": "t"}
        rows.values[TEAM] = {"Name": "renamed"}
        assert reader.get("team", 7) == {"Name": "t"}, "a plain get serves the cached value"
        assert reader.get("team", 7, verify=True) == {"Name": "renamed"}

    def test_a_contender_that_waits_in_vain_reads_at_the_snapshot_without_filling(
        self, cache: Any
    ) -> None:
        """A reader whose wait for the lease holder runs out serves Spanner's value at the
        snapshot's version, as a miss, and writes nothing."""
        rows = MemoryRows(version=61)
        rows.values[KEY] = {"Balance": 6}
        cache.acquire_leases([KEY + ":lease"], "holder", 60_000)
        [read] = client(cache, rows, wait_ms=50).get_many([ACCOUNT_A])
        assert (read.key, read.value, read.version, read.hit, read.filled) == (
            KEY, {"Balance": 6}, 61, False, False)
        assert cache.get([KEY]) == [None]

    def test_verify_keeps_a_value_committed_at_exactly_its_version(self, cache: Any) -> None:
        """A cached value whose version equals the row's last commit is current: it is
        served as a hit."""
        rows = MemoryRows(version=100)
        cache.apply([CacheOp.set(KEY, 70, {"Balance": 1})])
        rows.commits[KEY] = 70
        [read] = client(cache, rows).get_many([ACCOUNT_A], verify=True)
        assert read.hit and read.version == 70

    def test_verify_refreshes_stale_hits_and_fills_misses_together(self, cache: Any) -> None:
        """With verify, a stale hit and a plain miss in one call are both read from Spanner
        and both served fresh."""
        rows = MemoryRows(version=100)
        other = CATALOG.key(CATALOG.template("account"), ["b"])
        cache.apply([CacheOp.set(KEY, 70, {"Balance": 1})])
        rows.commits[KEY], rows.values[KEY] = 90, {"Balance": 9}
        rows.commits[other.key], rows.values[other.key] = 80, {"Balance": 8}
        reads = client(cache, rows).get_many([ACCOUNT_A, other], verify=True)
        assert [(r.value, r.hit) for r in reads] == [({"Balance": 9}, False),
                                                     ({"Balance": 8}, False)]

    def test_reads_are_counted_by_how_they_were_served(self, cache: Any) -> None:
        """Hits, misses, lease waits and unconfirmed hits each have their counter."""
        def counted() -> dict[str, float]:
            return {label: REGISTRY.get_sample_value(
                "redis_spanner_reads_total", {"result": label}) or 0.0
                for label in ("hit", "miss", "lease_wait", "unconfirmed")}

        rows = MemoryRows(version=100)
        rows.values[KEY] = {"Balance": 1}
        reader = client(cache, rows, wait_ms=0)
        before = counted()
        reader.get_many([ACCOUNT_A])  # miss, filled
        reader.get_many([ACCOUNT_A])  # hit
        rows.commits[KEY] = 200
        reader.get_many([ACCOUNT_A], verify=True)  # unconfirmed, read again
        other = CATALOG.key(CATALOG.template("account"), ["held"])
        cache.acquire_leases([other.lease_key], "holder", 60_000)
        reader.get_many([other])  # miss that waits on the lease holder
        after = counted()
        assert {k: after[k] - before[k] for k in after} == {
            "hit": 1, "miss": 3, "lease_wait": 1, "unconfirmed": 1}

    def test_verify_never_waits_on_another_callers_fill(self, cache: Any) -> None:
        """A verified read whose key another caller is filling reads Spanner itself: that
        caller may have read before a commit this read must see, and its value is never
        served."""
        rows = MemoryRows(version=100)
        cache.apply([CacheOp.set(KEY, 70, {"Balance": 1})])
        rows.commits[KEY], rows.values[KEY] = 90, {"Balance": 9}
        cache.acquire_leases([KEY + ":lease"], "slow-filler", 60_000)
        [read] = client(cache, rows, wait_ms=60_000).get_many([ACCOUNT_A], verify=True)
        assert (read.value, read.version, read.hit, read.filled) == ({"Balance": 9}, 100,
                                                                     False, False)
