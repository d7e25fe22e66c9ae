"""The writer's fast path on the real Spanner and Pub/Sub emulators and a real redis-server: the
commit's keys are tombstoned at its commit version before the relay runs, the outbox path's
later write of that version is a no-op, a Redis that can't be reached fails nothing, and the
asyncio variant does the same."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from prometheus_client import REGISTRY
from redis import asyncio as aioredis
from redis_spanner.consumers.messages import Outcome
from redis_spanner.consumers.pubsub import PullSubscription
from redis_spanner.consumers.redis_cache import RedisCache
from redis_spanner.consumers.spanner_rows import SpannerRows
from redis_spanner.consumers.worker import Consumer, PullWorker
from redis_spanner.infra.demo.workload import seed_accounts
from redis_spanner.infra.local.processes import LOOPBACK, free_ports
from redis_spanner.producers.fast_path import FastPath
from redis_spanner.producers.fast_path_async import AsyncFastPath, run_transaction_async
from redis_spanner.producers.outbox import record
from redis_spanner.producers.runner import build_relay
from redis_spanner.producers.spanner import run_transaction
from redis_spanner.schemas import versions
from redis_spanner.schemas.cache import CacheOp, Entry
from redis_spanner.schemas.events import EventType
from redis_spanner.schemas.keys import Catalog
from redis_spanner.schemas.settings import Settings

from tests.waiting import wait_until

FAILURES = "redis_spanner_fast_path_failures_total"


def failures() -> float:
    return REGISTRY.get_sample_value(FAILURES) or 0.0


def account_key(catalog: Catalog, account: str) -> str:
    return catalog.key(catalog.template("account"), [account]).key


def set_balance(account: str, balance: int) -> Callable[[Any], str]:
    def work(tx: Any) -> str:
        tx.update("Accounts", ("AccountId", "Balance"), [[account, balance]])
        return record(tx, EventType.ROW_CHANGED, "Accounts", (account,))

    return work


def entry(cache: RedisCache, key: str) -> Entry | None:
    return cache.get([key])[0]


@pytest.fixture
def observed(provisioned: Settings) -> Iterator[tuple[Consumer, list[Outcome]]]:
    outcomes: list[Outcome] = []
    consumer = Consumer.from_settings(provisioned, observer=outcomes.extend)
    yield consumer, outcomes
    consumer.close()


def start_pipeline(settings: Settings, consumer: Consumer, running: Any) -> None:
    relay, _ = build_relay(settings)
    running(relay.run)
    worker = PullWorker(PullSubscription(settings.subscription_path), consumer.processor,
                        streams=1)
    running(worker.run)


def acked(outcomes: list[Outcome], event_id: str) -> Outcome | None:
    return next((o for o in list(outcomes) if o.event and o.event.event_id == event_id
                 and o.disposition == "ack"), None)


def test_commit_tombstones_its_key_at_the_commit_version_and_the_outbox_write_is_a_no_op(
    provisioned: Settings, database: Any, cache: RedisCache, catalog: Catalog, running: Any,
    redis_client: redis.Redis, observed: tuple[Consumer, list[Outcome]],
) -> None:
    """Before any relay or worker runs, the cached value is already a tombstone at the commit
    timestamp (the version the outbox event carries). When the event arrives through the outbox
    path the guard refuses the tie: the consumer acks it without changing the key."""
    seed_accounts(database, ["fp-1"])
    key = account_key(catalog, "fp-1")
    cache.apply([CacheOp.set(key, 1, {"Owner": "old", "Balance": 0})])
    fast_path = FastPath(redis_client, catalog,
                         tombstone_ttl_seconds=provisioned.tombstone_ttl_seconds)

    event_id, committed = run_transaction(database, set_balance("fp-1", 7), fast_path=fast_path)

    version = versions.from_datetime(committed)
    assert entry(cache, key) == Entry(version, True, None)
    consumer, outcomes = observed
    start_pipeline(provisioned, consumer, running)
    outcome = wait_until(lambda: acked(outcomes, event_id), timeout=60)
    assert outcome.event is not None and outcome.event.version == version
    assert outcome.changed is False
    assert entry(cache, key) == Entry(version, True, None)


def test_a_fill_from_a_snapshot_older_than_the_commit_is_refused_after_the_fast_path(
    provisioned: Settings, database: Any, cache: RedisCache, catalog: Catalog,
    redis_client: redis.Redis,
) -> None:
    """A reader that read the row before the commit and fills after the fast path (at its
    snapshot's version, as the read-through does) is refused; so is any older version, while a
    fill from a snapshot that includes the commit is written."""
    seed_accounts(database, ["fp-2"])
    cache_key = catalog.key(catalog.template("account"), ["fp-2"])
    key = cache_key.key
    values, old_version = SpannerRows(database).read([cache_key])
    old = values[key]
    fast_path = FastPath(redis_client, catalog)

    _, committed = run_transaction(database, set_balance("fp-2", 9), fast_path=fast_path)
    version = versions.from_datetime(committed)
    assert old_version < version

    refused = cache.apply([CacheOp.set(key, v, old) for v in (old_version, 1, version)])
    assert [a.applied for a in refused] == [False, False, False]
    assert entry(cache, key) == Entry(version, True, None)
    fresh, fresh_version = SpannerRows(database).read([cache_key])
    assert fresh[key]["Balance"] == 9 and fresh_version >= version
    assert cache.apply([CacheOp.set(key, fresh_version, fresh[key])])[0].applied is (
        fresh_version > version)


def test_a_fast_path_never_lowers_a_version(
    provisioned: Settings, database: Any, cache: RedisCache, catalog: Catalog,
    redis_client: redis.Redis,
) -> None:
    """A key already holding a newer version (a later commit's event got there first) keeps it:
    the fast path's tombstone is refused, and counted as refused, not as a failure."""
    seed_accounts(database, ["fp-3"])
    key = account_key(catalog, "fp-3")
    ahead = versions.ceiling(60)
    cache.apply([CacheOp.set(key, ahead, {"Owner": "newer", "Balance": 1})])
    refused = REGISTRY.get_sample_value("redis_spanner_fast_path_tombstones_total",
                                        {"outcome": "refused"}) or 0.0
    before = failures()

    run_transaction(database, set_balance("fp-3", 3), fast_path=FastPath(redis_client, catalog))

    assert entry(cache, key) == Entry(ahead, False, '{"Balance":1,"Owner":"newer"}')
    assert REGISTRY.get_sample_value("redis_spanner_fast_path_tombstones_total",
                                     {"outcome": "refused"}) == refused + 1
    assert failures() == before


def test_redis_down_the_transaction_commits_the_failure_is_counted_and_the_outbox_heals(
    provisioned: Settings, database: Any, cache: RedisCache, catalog: Catalog, running: Any,
    observed: tuple[Consumer, list[Outcome]], caplog: pytest.LogCaptureFixture,
    request: pytest.FixtureRequest,
) -> None:
    """With the fast path's Redis unreachable (nothing listens on its port), the business write
    commits and returns, one failure is counted and logged without the Redis password, and the
    outbox path later tombstones the stale key at the commit version."""
    seed_accounts(database, ["fp-4"])
    key = account_key(catalog, "fp-4")
    cache.apply([CacheOp.set(key, 1, {"Owner": "old", "Balance": 0})])
    (port,) = free_ports(1)
    dead = redis.Redis.from_url(f"redis://:hunter2-secret@{LOOPBACK}:{port}/0",
                                socket_connect_timeout=2, decode_responses=True)
    request.addfinalizer(dead.close)
    before = failures()

    event_id, committed = run_transaction(database, set_balance("fp-4", 11),
                                          fast_path=FastPath(dead, catalog))

    version = versions.from_datetime(committed)
    assert failures() == before + 1
    assert "fast path failed" in caplog.text and "hunter2" not in caplog.text
    with database.snapshot() as snapshot:
        assert list(snapshot.execute_sql(
            "SELECT Balance FROM Accounts WHERE AccountId = 'fp-4'")) == [[11]]
    stale = entry(cache, key)
    assert stale is not None and stale.version == 1
    consumer, outcomes = observed
    start_pipeline(provisioned, consumer, running)
    wait_until(lambda: acked(outcomes, event_id), timeout=60)
    assert entry(cache, key) == Entry(version, True, None)


def test_the_async_fast_path_tombstones_at_the_commit_version_and_survives_redis_down(
    provisioned: Settings, database: Any, cache: RedisCache, catalog: Catalog, running: Any,
    observed: tuple[Consumer, list[Outcome]],
) -> None:
    """``run_transaction_async`` with ``AsyncFastPath``: the key is a tombstone at the commit
    version when the call returns, and the outbox event later is a no-op; with its Redis
    unreachable the write still commits and the failure is counted. The event loop stays
    responsive while the transaction runs."""
    seed_accounts(database, ["fp-5", "fp-6"])
    live, down = account_key(catalog, "fp-5"), account_key(catalog, "fp-6")
    cache.apply([CacheOp.set(k, 1, {"Owner": "old", "Balance": 0}) for k in (live, down)])
    (port,) = free_ports(1)
    before = failures()

    async def scenario() -> tuple[tuple[str, Any], tuple[str, Any], int]:
        ticks = 0
        done = threading.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0.001)

        tick_task = asyncio.create_task(ticker())
        live_client = aioredis.Redis.from_url(provisioned.require_redis_url(),
                                              decode_responses=True)
        dead_client = aioredis.Redis.from_url(f"redis://{LOOPBACK}:{port}/0",
                                              socket_connect_timeout=2)
        good, bad = AsyncFastPath(live_client, catalog), AsyncFastPath(dead_client, catalog)
        try:
            first = await run_transaction_async(database, set_balance("fp-5", 5), fast_path=good)
            second = await run_transaction_async(database, set_balance("fp-6", 6),
                                                 fast_path=bad)
        finally:
            done.set()
            await tick_task
            await live_client.aclose()
            await dead_client.aclose()
        return first, second, ticks

    (event_id, committed), (_, committed_down), ticks = asyncio.run(scenario())

    version = versions.from_datetime(committed)
    assert ticks > 0
    assert entry(cache, live) == Entry(version, True, None)
    assert failures() == before + 1
    stale = entry(cache, down)
    assert stale is not None and stale.version == 1
    consumer, outcomes = observed
    start_pipeline(provisioned, consumer, running)
    outcome = wait_until(lambda: acked(outcomes, event_id), timeout=60)
    assert outcome.changed is False
    wait_until(lambda: entry(cache, down) == Entry(versions.from_datetime(committed_down), True,
                                                   None), timeout=60)
