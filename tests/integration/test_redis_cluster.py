"""The consumers on a real local Redis Cluster of three primaries: the whole path, the guard's
round trips per node, the read-through client, verify and repair, rewarm, and a slot migration
under a steady stream of events."""

from __future__ import annotations

import asyncio
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.cluster import RedisCluster
from redis_spanner.consumers.backfill import backfill
from redis_spanner.consumers.readthrough import ReadThrough
from redis_spanner.consumers.readthrough_async import AsyncCacheClient
from redis_spanner.consumers.redis_cache import RedisCache
from redis_spanner.consumers.spanner_rows import SpannerRows, TableWalker
from redis_spanner.consumers.verify import verify
from redis_spanner.infra.cli.dev import dev_app
from redis_spanner.infra.demo.workload import bump, latest_commit, seed_accounts
from redis_spanner.infra.local.processes import group_members
from redis_spanner.infra.local.redis_cluster import cluster_ok, find_redis_cli
from redis_spanner.infra.local.stack import LocalStack, StackEnv
from redis_spanner.schemas.cache import CacheOp
from redis_spanner.schemas.keys import Catalog
from redis_spanner.schemas.redis_connection import connect
from redis_spanner.schemas.settings import Settings, get_settings
from typer.testing import CliRunner

from tests.integration.consumer_support import Ledger, SteadyRun, start_pipeline
from tests.redis_servers import LocalCluster, start_cluster
from tests.redis_text import text
from tests.waiting import wait_until


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    yield from start_cluster(tmp_path_factory.mktemp("cluster"))


def _point_at(cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("REDIS_URL", cluster.url)
    monkeypatch.setenv("REDIS_SPANNER_REDIS_CLUSTER", "true")
    get_settings.cache_clear()
    return get_settings()


@pytest.fixture
def on_cluster(provisioned: Settings, cluster: LocalCluster,
               monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The test's provisioned resources, with the module's cluster as its Redis."""
    return _point_at(cluster, monkeypatch)


@pytest.fixture
def cluster_cache(on_cluster: Settings) -> Iterator[RedisCache]:
    cache = RedisCache.from_settings(on_cluster)
    assert isinstance(cache.client, RedisCluster)
    yield cache
    cache.client.close()


def _cluster_client(cache: RedisCache) -> RedisCluster:
    client = cache.client
    assert isinstance(client, RedisCluster)  # REDIS_SPANNER_REDIS_CLUSTER is set
    return client


def _nodes_of(client: RedisCluster, keys: list[str]) -> set[str]:
    return {client.get_node_from_key(k).name for k in keys}


def _account_keys(catalog: Catalog, ids: list[str]) -> list[str]:
    return [catalog.key(catalog.template("account"), [i]).key for i in ids]


def test_events_reach_keys_in_every_slot_of_the_cluster(
    on_cluster: Settings, database: Any, catalog: Catalog, cluster_cache: RedisCache,
    running: Any,
) -> None:
    """Events for accounts whose keys live on all three primaries are applied through the
    relay and the worker: every key ends as a tombstone at its row's last commit timestamp,
    and nothing is nacked or dead-lettered (no MOVED reaches the consumer)."""
    ids = [f"c-{n:03d}" for n in range(60)]
    keys = _account_keys(catalog, ids)
    assert len(_nodes_of(_cluster_client(cluster_cache), keys)) == 3
    cluster_cache.apply([CacheOp.set(k, 1, {"Owner": "old", "Balance": 0}) for k in keys])
    ledger = Ledger()
    consumer = start_pipeline(on_cluster, running, ledger)
    try:
        seed_accounts(database, ids)
        for i in ids[::3]:
            bump(database, i, 7)
        last = latest_commit(database)
        wanted = {k: last(i) for k, i in zip(keys, ids, strict=True)}

        def settled() -> bool:
            entries = cluster_cache.get(keys)
            return all(e is not None and e.tombstone and e.version == wanted[k]
                       for k, e in zip(keys, entries, strict=True))

        wait_until(settled, timeout=60)
        wait_until(lambda: len(ledger.events()) == 60 + 20, timeout=60)
        assert set(ledger.counts()) == {"applied"}, ledger.counts()
    finally:
        consumer.close()


def test_a_batch_is_one_round_trip_per_node(
    cluster_cache: RedisCache, catalog: Catalog, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A batch of 300 guarded writes spread over the three primaries is sent as one pipeline
    per node: each node's connection is written to once, not once per key."""
    keys = _account_keys(catalog, [f"rt-{n}" for n in range(300)])
    # Script loaded and a connection open on every node, so only the batch is counted.
    cluster_cache.apply([CacheOp.invalidate(k, 1) for k in keys])
    sends: Counter[str] = Counter()
    original = redis.connection.AbstractConnection.send_packed_command

    def counted(self: Any, command: Any, check_health: bool = True) -> None:
        sends[f"{self.host}:{self.port}"] += 1
        original(self, command, check_health)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counted)
    results = cluster_cache.apply([CacheOp.invalidate(k, 5) for k in keys])
    assert all(r.applied for r in results)
    assert len(sends) == 3 and set(sends.values()) == {1}, sends


def test_read_through_fills_and_rereads_on_the_cluster(
    on_cluster: Settings, database: Any, catalog: Catalog, cluster_cache: RedisCache,
) -> None:
    """The read-through client fills misses on every node from Spanner, serves hits after, and
    a tombstone makes the next read go back to Spanner for the new value."""
    ids = [f"rt-{n:02d}" for n in range(30)]
    seed_accounts(database, ids)
    client = ReadThrough(catalog, cluster_cache, SpannerRows(database))
    first = client.get_many([client.key("account", i) for i in ids])
    assert all(r.filled and not r.hit for r in first)
    assert len(_nodes_of(_cluster_client(cluster_cache), [r.key for r in first])) == 3
    again = client.get_many([client.key("account", i) for i in ids])
    assert all(r.hit for r in again)
    bump(database, "rt-05", 3)
    cluster_cache.apply([CacheOp.invalidate(client.key("account", "rt-05").key,
                                            latest_commit(database)("rt-05"))])
    assert client.get("account", "rt-05")["Balance"] == 1003


def test_async_read_through_fills_and_rereads_on_the_cluster(
    on_cluster: Settings, database: Any, catalog: Catalog, cluster_cache: RedisCache,
) -> None:
    """``AsyncCacheClient.from_env`` honours the cluster setting: it fills misses on every
    node through the guard, serves hits after, and a tombstone sends the next read to Spanner."""
    ids = [f"art-{n:02d}" for n in range(30)]
    seed_accounts(database, ids)

    async def scenario() -> None:
        async with AsyncCacheClient.from_env(on_cluster) as client:
            keys = [client.key("account", i) for i in ids]
            first = await client.get_many(keys)
            assert all(r.filled and not r.hit for r in first)
            assert len(_nodes_of(_cluster_client(cluster_cache), [r.key for r in first])) == 3
            assert all(r.hit for r in await client.get_many(keys))
            bump(database, "art-05", 3)
            cluster_cache.apply([CacheOp.invalidate(client.key("account", "art-05").key,
                                                    latest_commit(database)("art-05"))])
            assert (await client.get("account", "art-05"))["Balance"] == 1003

    asyncio.run(scenario())


def test_verify_and_repair_cover_every_primary(
    on_cluster: Settings, database: Any, catalog: Catalog, cluster_cache: RedisCache,
) -> None:
    """Stale entries planted on each of the three primaries are all found by verify (it scans
    every primary), repaired through the guard, and a second verify finds none; rewarm after
    a flush of every primary writes every key back, whichever node owns it."""
    ids = [f"vr-{n:02d}" for n in range(45)]
    seed_accounts(database, ids)
    rows = SpannerRows(database)
    client = ReadThrough(catalog, cluster_cache, rows)
    client.get_many([client.key("account", i) for i in ids])
    stale = ids[::5]
    for i in stale:
        bump(database, i, 1)  # committed without a consumer: the cached value is now stale
    stale_keys = _account_keys(catalog, stale)
    assert len(_nodes_of(_cluster_client(cluster_cache), stale_keys)) == 3

    report = verify(cluster_cache, catalog, rows)
    assert report.checked == 45
    assert sorted(report.stale) == sorted(stale_keys)
    repaired = verify(cluster_cache, catalog, rows, repair=True)
    assert (repaired.repaired, repaired.remaining_stale) == (len(stale), [])
    assert not verify(cluster_cache, catalog, rows).stale

    cluster_cache.delete(_account_keys(catalog, ids))
    done = backfill(TableWalker(database), rows, cluster_cache, catalog, "Accounts",
                    prefix="vr-", batch=20)
    assert done.written == 45
    after = verify(cluster_cache, catalog, rows)
    assert (after.checked, after.stale) == (45, [])


MIGRATED_SLOTS = 1500


def _keys_in_slots_of(client: RedisCluster, port: int, catalog: Catalog, ids: list[str]
                      ) -> set[str]:
    """The accounts' keys whose slot the node on ``port`` serves now."""
    client.nodes_manager.initialize()
    return {k for k in _account_keys(catalog, ids)
            if client.get_node_from_key(k).port == port}


def _reshard(cluster: LocalCluster, source: str, target: str, slots: int) -> None:
    ports = cluster.ports
    done = subprocess.run(
        [str(find_redis_cli()), "--cluster", "reshard", f"127.0.0.1:{ports[0]}",
         "--cluster-from", source, "--cluster-to", target, "--cluster-slots", str(slots),
         "--cluster-yes", "--cluster-pipeline", "50"],
        capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, (done.stdout + done.stderr)[-2000:]


def test_slot_migration_mid_run_leaves_no_stale_key(
    provisioned: Settings, database: Any, catalog: Catalog, running: Any,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While writers commit a steady stream of events and the worker applies them, slots
    holding some of the accounts' keys migrate (keys and all) from one primary to another.
    Every event is acked (none nacked or dead-lettered), and after quiescence no cached key is
    stale."""
    generator = start_cluster(tmp_path)
    cluster = next(generator)
    try:
        run = SteadyRun(_point_at(cluster, monkeypatch), database, catalog, running,
                        [f"m-{n:03d}" for n in range(90)])
        try:
            client = _cluster_client(run.cache)
            ids_by_port = {node.port: text(client.cluster_myid(node))
                           for node in client.get_primaries()}
            source, target = ids_by_port[cluster.ports[0]], ids_by_port[cluster.ports[1]]
            wait_until(lambda: run.applied() >= len(run.ids) + 20, timeout=60)
            applied_before = run.applied()
            moved = _keys_in_slots_of(client, cluster.ports[0], catalog, run.ids)
            _reshard(cluster, source, target, MIGRATED_SLOTS)
            assert run.applied() > applied_before  # the worker applied events meanwhile
            assert moved - _keys_in_slots_of(client, cluster.ports[0], catalog, run.ids)
            mark = run.applied()
            wait_until(lambda: run.applied() >= mark + 20, timeout=60)
            run.finish()
            assert set(run.ledger.counts()) == {"applied"}, run.ledger.counts()
            report = verify(run.cache, catalog, run.rows)
            assert report.stale == [] and report.checked == len(run.ids)
        finally:
            run.close()
    finally:
        generator.close()


def test_primary_killed_mid_run_fails_over_and_leaves_no_stale_key(
    provisioned: Settings, database: Any, catalog: Catalog, running: Any,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With a replica per primary, a primary is SIGKILLed while events stream in; its replica
    takes over its slots. Batches that meet the dead node are retried (in process, or
    redelivered), none is dead-lettered, every event is applied, and after quiescence no cached
    key is stale."""
    generator = start_cluster(tmp_path, replicas=1)
    cluster = next(generator)
    try:
        run = SteadyRun(_point_at(cluster, monkeypatch), database, catalog, running,
                        [f"f-{n:03d}" for n in range(90)])
        try:
            client = _cluster_client(run.cache)
            victim_port = next(n.port for n in client.get_primaries()
                               if n.port != cluster.ports[0])
            victim = next(n for n in cluster.nodes if n.ports["redis"] == victim_port)
            assert _keys_in_slots_of(client, victim_port, catalog, run.ids)
            wait_until(lambda: run.applied() >= len(run.ids) + 20, timeout=60)
            victim.kill()
            survivors = [p for p in cluster.ports if p != victim_port]
            wait_until(lambda: all(cluster_ok(p) for p in survivors), timeout=60)
            mark = run.applied()
            wait_until(lambda: run.applied() >= mark + 2 * len(run.ids), timeout=120)
            run.finish()
            counts = run.ledger.counts()
            assert counts["dead-lettered"] == 0, counts
            report = verify(run.cache, catalog, run.rows)
            assert report.stale == [] and report.checked == len(run.ids)
        finally:
            run.close()
    finally:
        generator.close()


def test_dev_up_redis_cluster_starts_three_primaries_and_down_stops_them(
    stack: StackEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`dev up --redis-cluster` starts a cluster of three primaries serving every slot (the
    emulators given in the environment are reused), `dev env` exports it with
    REDIS_SPANNER_REDIS_CLUSTER=true so the consumers' client finds every primary, and
    `dev down` leaves no node running."""
    monkeypatch.delenv("REDIS_URL")
    runner = CliRunner()
    state = ["--state-dir", str(tmp_path)]
    up = runner.invoke(dev_app, ["up", "--redis-cluster", *state])
    try:
        assert up.exit_code == 0, up.output
        exported = dict(line.removeprefix("export ").split("=", 1) for line in
                        runner.invoke(dev_app, ["env", *state]).output.splitlines())
        assert exported["REDIS_SPANNER_REDIS_CLUSTER"] == "true"
        monkeypatch.setenv("REDIS_URL", exported["REDIS_URL"])
        monkeypatch.setenv("REDIS_SPANNER_REDIS_CLUSTER", "true")
        get_settings.cache_clear()
        client = connect(get_settings())
        assert isinstance(client, RedisCluster) and len(client.get_primaries()) == 3
        client.close()
        recorded = LocalStack(tmp_path).status()["redis"]
        assert recorded["healthy"] and recorded["pid"]
        pgid = recorded["pid"]
    finally:
        down = runner.invoke(dev_app, ["down", *state])
    assert down.exit_code == 0 and "redis" in down.output
    assert group_members(pgid) == []
