"""One contract and race suite for both read-through clients, on real Redis and the Spanner
emulator: every test runs against ``CacheClient`` and ``AsyncCacheClient`` alike.

Properties: a miss fills at its snapshot's version; a fill read before a commit whose
invalidation landed is refused; fill leases let one caller of a herd fill; ``verify=True``
never serves a value older than a finished commit; a fill whose snapshot is older than half
the tombstone TTL is not written; an entry the guard did not write is a miss, never an error;
a failed Spanner read gives its fill leases back.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
import redis
from redis_spanner.consumers.read_flow import FillPolicy, LeasePolicy
from redis_spanner.consumers.readthrough_async import AsyncCacheClient
from redis_spanner.consumers.redis_cache import RedisCache
from redis_spanner.consumers.redis_cache_async import AsyncRedisCache
from redis_spanner.consumers.spanner_rows import SpannerRows
from redis_spanner.consumers.worker import PullWorker
from redis_spanner.schemas import versions
from redis_spanner.schemas.errors import TransientError
from redis_spanner.schemas.keys import CacheKey, Catalog
from redis_spanner.schemas.settings import Settings

from tests.integration.clients import KINDS, Clients, EventLoopThread
from tests.integration.race_support import (
    HeldRows,
    InThread,
    Running,
    account_value,
    entry_of,
    start_pipeline,
    wait_for_version,
    write_account,
)
from tests.waiting import wait_until


@pytest.fixture(params=KINDS)
def clients(request: pytest.FixtureRequest, settings: Settings,
            catalog: Catalog) -> Iterator[Clients]:
    built = Clients(request.param, settings, catalog)
    yield built
    built.close()


class CountingRows:
    """Spanner reads, counted; each may be delayed by ``delay`` seconds after it read."""

    def __init__(self, inner: SpannerRows, delay: float = 0.0) -> None:
        self._inner = inner
        self.delay = delay
        self.reads = 0
        self._lock = threading.Lock()

    def read(self, keys: Sequence[CacheKey]) -> tuple[dict[str, Any], int]:
        found = self._inner.read(keys)
        with self._lock:
            self.reads += 1
        time.sleep(self.delay)
        return found

    def read_versions(self, keys: Sequence[CacheKey]) -> tuple[dict[str, int | None], int]:
        return self._inner.read_versions(keys)


class FailingRows:
    def read(self, keys: Sequence[CacheKey]) -> tuple[dict[str, Any], int]:
        raise TransientError("spanner read failed on purpose")

    def read_versions(self, keys: Sequence[CacheKey]) -> tuple[dict[str, int | None], int]:
        raise TransientError("spanner read failed on purpose")


def account(catalog: Catalog, name: str) -> CacheKey:
    return catalog.key(catalog.template("account"), [name])


# --- fills --------------------------------------------------------------------------------


def test_miss_fills_at_the_snapshot_version_and_the_next_read_hits(
    clients: Clients, provisioned: Settings, database: Any, catalog: Catalog, cache: RedisCache,
) -> None:
    """A miss reads Spanner, caches the value at the snapshot's read timestamp (not before the
    commit), and the next read is served by Redis with that version; a missing row reads as
    None."""
    key = account(catalog, "fill-1")
    _, committed = write_account(database, "fill-1", 5)
    client = clients(SpannerRows(database))
    [first] = client.get_many([key])
    assert (first.hit, first.filled, first.value) == (False, True, account_value("fill-1", 5))
    assert first.version >= committed
    [second] = client.get_many([key])
    assert second.hit and second.version == first.version and second.value == first.value
    assert client.get("account", "no-such-row") is None
    assert not cache.client.exists(key.lease_key), "the fill lease is given back"


def test_slow_read_through_cannot_cache_what_a_newer_commit_invalidated(
    clients: Clients, provisioned: Settings, database: Any, catalog: Catalog, cache: RedisCache,
    worker: PullWorker, running: Running,
) -> None:
    """A reader misses, reads Spanner at R and stalls; meanwhile a commit at C > R lands as a
    tombstone. The stalled reader returns the value it read but its fill is refused, so Redis
    holds the tombstone. Property: a fill is never better than a landed invalidation."""
    key = account(catalog, "slow-2")
    _, seeded = write_account(database, "slow-2", 10)
    start_pipeline(running, provisioned, worker)
    wait_for_version(cache, key, seeded)

    held = HeldRows(SpannerRows(database))
    client = clients(held)
    slow = InThread(lambda: client.get_many([key])[0])
    try:
        assert held.has_read.wait(20), "the reader never reached Spanner"
        _, committed = write_account(database, "slow-2", 11)
        assert held.read_version is not None and committed > held.read_version
        wait_for_version(cache, key, committed)
    finally:
        held.release.set()
    read = slow.result()

    assert read.value == account_value("slow-2", 10) and not read.hit and not read.filled
    found = entry_of(cache, key)
    assert found is not None and found.tombstone and found.version == committed
    [fresh] = clients(SpannerRows(database)).get_many([key])
    assert fresh.value == account_value("slow-2", 11) and fresh.filled


def test_fill_older_than_half_the_tombstone_ttl_is_served_but_not_written(
    clients: Clients, provisioned: Settings, database: Any, catalog: Catalog, cache: RedisCache,
) -> None:
    """With a 4 s tombstone TTL, a fill whose snapshot is 2.5 s old when it would be written
    is served to its caller and never written (its tombstone may already be gone), while a
    prompt fill under the same policy is written. Property: no fill outlives its guard."""
    slow_key, quick_key = account(catalog, "late-1"), account(catalog, "late-2")
    write_account(database, "late-1", 1)
    write_account(database, "late-2", 2)
    policy = FillPolicy.for_tombstone_ttl(4)
    delayed = CountingRows(SpannerRows(database), delay=2.5)
    [late] = clients(delayed, fills=policy).get_many([slow_key])
    assert late.value == account_value("late-1", 1) and not late.filled
    assert entry_of(cache, slow_key) is None, "a fill older than half the tombstone TTL landed"
    assert not cache.client.exists(slow_key.lease_key)

    [prompt] = clients(SpannerRows(database), fills=policy).get_many([quick_key])
    assert prompt.filled and entry_of(cache, quick_key) is not None


# --- herds --------------------------------------------------------------------------------


def test_one_caller_of_a_herd_fills_and_the_others_get_the_same_value(
    clients: Clients, provisioned: Settings, database: Any, catalog: Catalog,
) -> None:
    """Eight concurrent callers miss on a cold key: the fill lease lets exactly one of them
    read Spanner and write it; the others wait for its value (the wait is long enough here
    for a loaded machine) and every caller gets the committed value."""
    key = account(catalog, "herd-1")
    write_account(database, "herd-1", 7)
    rows = CountingRows(SpannerRows(database), delay=0.05)
    client = clients(rows, leases=LeasePolicy(wait_ms=10_000))
    start = threading.Barrier(8)

    def one() -> Any:
        start.wait(10)
        return client.get_many([key])[0]

    calls = [InThread(one) for _ in range(8)]
    reads = [call.result() for call in calls]
    assert all(r.value == account_value("herd-1", 7) for r in reads)
    assert sum(r.filled for r in reads) == 1
    assert rows.reads == 1


def test_a_failed_spanner_read_raises_the_error_tree_and_gives_the_lease_back(
    clients: Clients, provisioned: Settings, catalog: Catalog, cache: RedisCache,
) -> None:
    """A transient Spanner failure reaches the caller as TransientError, and the fill lease
    is released at once, so the next caller can fill without waiting for it to expire."""
    key = account(catalog, "broken-1")
    with pytest.raises(TransientError):
        clients(FailingRows()).get_many([key])
    assert not cache.client.exists(key.lease_key)


# --- verify=True --------------------------------------------------------------------------


def test_verify_serves_a_cached_value_only_while_spanner_has_not_moved_past_it(
    clients: Clients, provisioned: Settings, database: Any, catalog: Catalog,
) -> None:
    """With no consumer running, a commit leaves the cached value stale: a plain read serves
    it, a verify=True read finds the newer commit, serves and fills the new value."""
    key = account(catalog, "ver-1")
    write_account(database, "ver-1", 1)
    client = clients(SpannerRows(database))
    [warm] = client.get_many([key])
    [confirmed] = client.get_many([key], verify=True)
    assert confirmed.hit and confirmed.version == warm.version
    _, committed = write_account(database, "ver-1", 2)
    [plain] = client.get_many([key])
    assert plain.hit and plain.value == account_value("ver-1", 1)
    [checked] = client.get_many([key], verify=True)
    assert not checked.hit and checked.value == account_value("ver-1", 2)
    assert checked.version >= committed and checked.filled


def test_verified_read_waiting_on_another_fill_sees_every_finished_commit(
    clients: Clients, provisioned: Settings, database: Any, catalog: Catalog,
) -> None:
    """Two verified readers of a hot key right after a commit whose invalidation has not
    landed: the first takes the fill lease and stalls after its Spanner read; the second loses
    the lease race. Property: a verify=True read never returns a value older than a commit
    that finished before the read started."""
    key = account(catalog, "hot-1")
    write_account(database, "hot-1", 1)
    [warm] = clients(SpannerRows(database)).get_many([key])
    assert warm.filled
    _, committed = write_account(database, "hot-1", 2)  # no consumer runs: not invalidated yet

    held = HeldRows(SpannerRows(database))
    first_client = clients(held)
    first = InThread(lambda: first_client.get_many([key], verify=True))
    try:
        assert held.has_read.wait(20), "the first reader never reached Spanner"
        [second] = clients(SpannerRows(database)).get_many([key], verify=True)
    finally:
        held.release.set()
    [first_read] = first.result()

    assert first_read.value == account_value("hot-1", 2)
    assert second.version >= committed, "verify=True served a value older than a commit"
    assert second.value == account_value("hot-1", 2)


# --- entries the guard did not write ------------------------------------------------------

FAR_FUTURE = versions.encode(time.time_ns() + 10 * 365 * 86400 * 10**9)
FOREIGN: dict[str, Callable[[redis.Redis, str], Any]] = {
    "a string": lambda r, k: r.set(k, "hello"),
    "a list": lambda r, k: r.rpush(k, "a", "b"),
    "a set": lambda r, k: r.sadd(k, "a"),
    "a hash without a version": lambda r, k: r.hset(k, mapping={"d": '{"Balance":-1}'}),
    "a non-numeric version": lambda r, k: r.hset(
        k, mapping={"v": "not-a-number", "s": "v", "d": '{"Balance":-1}'}),
    "a short version": lambda r, k: r.hset(k, mapping={"v": "12", "s": "v",
                                                       "d": '{"Balance":-1}'}),
    "a far-future version": lambda r, k: r.hset(
        k, mapping={"v": FAR_FUTURE, "s": "v", "d": '{"Balance":-1}'}),
    "an unknown state": lambda r, k: r.hset(
        k, mapping={"v": versions.encode(1), "s": "x", "d": '{"Balance":-1}'}),
    "a value that is not JSON": lambda r, k: r.hset(
        k, mapping={"v": versions.encode(1), "s": "v", "d": "{not json"}),
}


@pytest.mark.parametrize("kind", list(FOREIGN))
def test_an_entry_the_guard_did_not_write_is_a_miss_never_an_error(
    clients: Clients, kind: str, provisioned: Settings, database: Any, catalog: Catalog,
    redis_client: redis.Redis,
) -> None:
    """Whatever an outside client left at a key, a read (plain or verified, alone or in a
    batch with a normal key) serves Spanner's value, never the foreign data, never raises."""
    key, normal = account(catalog, "odd-1"), account(catalog, "odd-2")
    write_account(database, "odd-1", 3)
    write_account(database, "odd-2", 4)
    FOREIGN[kind](redis_client, key.key)
    client = clients(SpannerRows(database))
    odd, fine = client.get_many([key, normal])
    assert odd.value == account_value("odd-1", 3) and not odd.hit
    assert fine.value == account_value("odd-2", 4)
    redis_client.delete(key.key)  # the fill may have replaced it: plant it again
    FOREIGN[kind](redis_client, key.key)
    odd, fine = client.get_many([key, normal], verify=True)
    assert odd.value == account_value("odd-1", 3) and not odd.hit
    assert fine.value == account_value("odd-2", 4)
    assert client.get("account", "odd-1") == account_value("odd-1", 3)


# --- asyncio only -------------------------------------------------------------------------


def test_a_cancelled_async_read_gives_its_fill_lease_back(
    provisioned: Settings, database: Any, catalog: Catalog, cache: RedisCache,
) -> None:
    """A coroutine cancelled while its Spanner read is in flight (a request timeout in an
    asyncio service) releases its fill lease before the cancellation propagates, so the next
    caller fills at once instead of waiting out the lease."""
    key = account(catalog, "cancel-1")
    write_account(database, "cancel-1", 1)
    held = HeldRows(SpannerRows(database))
    loop = EventLoopThread()
    client = AsyncCacheClient(catalog, AsyncRedisCache.from_settings(provisioned), held,
                              LeasePolicy(ttl_ms=60_000))
    try:
        task = asyncio.run_coroutine_threadsafe(client.get_many([key]), loop.loop)
        assert held.has_read.wait(20), "the reader never reached Spanner"
        assert cache.client.exists(key.lease_key)
        task.cancel()
        with pytest.raises(concurrent.futures.CancelledError):
            task.result(10)
        # Released, not expired: the lease would live a minute.
        wait_until(lambda: not cache.client.exists(key.lease_key), timeout=5)
        assert entry_of(cache, key) is None
    finally:
        held.release.set()
        loop.run(client.aclose())
        loop.close()
