"""The writer's fast path on a Redis Cluster, given a cluster client or building its own from the
consumer's settings: one commit's keys live on different primaries, and a fresh cluster has the
guard script on none of them."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster
from redis_spanner.consumers.redis_cache import RedisCache
from redis_spanner.infra.demo.workload import seed_accounts
from redis_spanner.producers.fast_path import FastPath
from redis_spanner.producers.fast_path_async import AsyncFastPath
from redis_spanner.producers.outbox import record
from redis_spanner.producers.redis_writer import GUARD_SHA
from redis_spanner.producers.spanner import run_transaction
from redis_spanner.schemas import versions
from redis_spanner.schemas.cache import Entry
from redis_spanner.schemas.events import EventType
from redis_spanner.schemas.keys import Catalog
from redis_spanner.schemas.settings import Settings

from tests.integration.fast_path_support import commit_through_from_env
from tests.redis_servers import LocalCluster, start_cluster

ACCOUNTS = [f"fpc-{n}" for n in range(12)]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    yield from start_cluster(tmp_path)


def test_a_commit_tombstones_keys_on_every_primary_at_its_version(
    provisioned: Settings, database: Any, catalog: Catalog, cluster: LocalCluster,
) -> None:
    """A commit whose keys hash to all three primaries tombstones each at the commit version
    (the script is loaded on each node on first use); a value cached from an older snapshot on
    any of them is gone, and a second fast path at an older version is refused everywhere."""
    seed_accounts(database, ACCOUNTS)
    client = cluster.client()
    cache = RedisCache(client, cache_ttl_seconds=600, tombstone_ttl_seconds=600)
    keys = [catalog.key(catalog.template("account"), [a]).key for a in ACCOUNTS]
    assert len({client.get_node_from_key(k).name for k in keys}) == 3
    for key in keys:  # cached values written without the script: no node has it yet
        client.hset(key, mapping={"v": versions.encode(1), "s": "v", "d": '{"Balance":0}'})
    assert client.script_exists(GUARD_SHA) == [False]
    assert cache.get(keys) == [Entry(1, False, '{"Balance":0}')] * len(keys)
    fast_path = FastPath(client, catalog)

    def work(tx: Any) -> None:
        for account in ACCOUNTS:
            tx.update("Accounts", ("AccountId", "Balance"), [[account, 1]])
            record(tx, EventType.ROW_CHANGED, "Accounts", (account,))

    _, committed = run_transaction(database, work, fast_path=fast_path)

    version = versions.from_datetime(committed)
    assert cache.get(keys) == [Entry(version, True, None)] * len(keys)
    assert fast_path.writer.write(keys, version - 1) == [False] * len(keys)
    client.close()


def set_balances(accounts: Sequence[str], balance: int) -> Callable[[Any], None]:
    def work(tx: Any) -> None:
        for account in accounts:
            tx.update("Accounts", ("AccountId", "Balance"), [[account, balance]])
            record(tx, EventType.ROW_CHANGED, "Accounts", (account,))

    return work


def test_from_env_with_the_consumers_cluster_settings_tombstones_on_every_primary(
    provisioned: Settings, database: Any, catalog: Catalog, cluster: LocalCluster,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Configured as the consumer is (``REDIS_URL`` names one node,
    ``REDIS_SPANNER_REDIS_CLUSTER=true``), ``AsyncFastPath.from_env()`` and
    ``FastPath.from_env()`` build cluster clients; each commit's keys, spread over the three
    primaries of a fresh cluster, are tombstones at its commit version, with no failure."""
    monkeypatch.setenv("REDIS_URL", cluster.url)
    monkeypatch.setenv("REDIS_SPANNER_REDIS_CLUSTER", "true")
    seed_accounts(database, ACCOUNTS)
    client = cluster.client()
    cache = RedisCache(client, cache_ttl_seconds=600, tombstone_ttl_seconds=600)
    by_node: dict[str, list[str]] = {}
    for account in ACCOUNTS:
        key = catalog.key(catalog.template("account"), [account]).key
        by_node.setdefault(client.get_node_from_key(key).name, []).append(account)
    halves = ([a for accounts in by_node.values() for a in accounts[::2]],
              [a for accounts in by_node.values() for a in accounts[1::2]])
    keys = [[catalog.key(catalog.template("account"), [a]).key for a in h] for h in halves]
    assert all(len({client.get_node_from_key(k).name for k in ks}) == 3 for ks in keys)
    assert client.script_exists(GUARD_SHA) == [False]
    failures = REGISTRY.get_sample_value("redis_spanner_fast_path_failures_total") or 0.0

    def on_cluster(fast: FastPath | AsyncFastPath) -> None:
        assert isinstance(fast.writer.client, (RedisCluster, AsyncRedisCluster))

    committed_async, committed = commit_through_from_env(
        database, set_balances(halves[0], 2), set_balances(halves[1], 3), on_cluster)

    for at, ks in zip((committed_async, committed), keys, strict=True):
        assert cache.get(ks) == [Entry(versions.from_datetime(at), True, None)] * len(ks)
    assert REGISTRY.get_sample_value("redis_spanner_fast_path_failures_total") == failures
    client.close()
