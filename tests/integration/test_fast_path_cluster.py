"""The writer's fast path given a Redis Cluster client: one commit's keys live on different
primaries, and a fresh cluster has the guard script on none of them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis_spanner.consumers.redis_cache import RedisCache
from redis_spanner.infra.demo.workload import seed_accounts
from redis_spanner.producers.fast_path import FastPath
from redis_spanner.producers.outbox import record
from redis_spanner.producers.redis_writer import GUARD_SHA
from redis_spanner.producers.spanner import run_transaction
from redis_spanner.schemas import versions
from redis_spanner.schemas.cache import Entry
from redis_spanner.schemas.events import EventType
from redis_spanner.schemas.keys import Catalog
from redis_spanner.schemas.settings import Settings

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
