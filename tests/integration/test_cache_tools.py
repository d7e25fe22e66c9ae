"""verify finds what is wrong in the cache and repairs it; rewarm backfills a cold cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from redis_spanner.consumers.backfill import backfill
from redis_spanner.consumers.readthrough import ReadThrough
from redis_spanner.consumers.redis_cache import RedisCache
from redis_spanner.consumers.spanner_rows import SpannerRows, TableWalker
from redis_spanner.consumers.verify import verify
from redis_spanner.infra.demo.workload import bump, seed_accounts
from redis_spanner.schemas.cache import CacheOp
from redis_spanner.schemas.keys import Catalog
from redis_spanner.schemas.settings import Settings


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "redis_spanner.infra.cli", *args],
                          env=dict(os.environ), capture_output=True, text=True, timeout=120)


def test_verify_finds_and_repairs_deliberate_corruption(
    provisioned: Settings, database: Any, cache: RedisCache, catalog: Catalog,
) -> None:
    """Entries corrupted on purpose (a wrong value at an old version, a value of a row that
    changed without an event, a plain string, a key of no template) are reported as stale,
    unversioned and orphaned; repair fixes them through the guard and verify then passes."""
    ids = [f"v-{n}" for n in range(20)]
    seed_accounts(database, ids)
    rows = SpannerRows(database)
    client = ReadThrough(catalog, cache, rows)
    reads = client.get_many([client.key("account", i) for i in ids])
    assert all(r.filled for r in reads)
    key = client.key("account", "v-3").key
    cache.client.hset(key, "d", json.dumps({"Balance": -1, "Owner": "nobody"}))
    bump(database, "v-4", 5)  # committed, but no consumer runs: its cached value is now stale
    cache.client.set(client.key("account", "plain").key, "not a hash")
    cache.client.hset(f"{catalog.namespace}:ghost:{{Ghosts:1}}", mapping={"v": "1"})

    report = verify(cache, catalog, rows)
    assert sorted(report.stale) == sorted([key, client.key("account", "v-4").key])
    assert report.unversioned == [client.key("account", "plain").key]
    assert report.orphaned == [f"{catalog.namespace}:ghost:{{Ghosts:1}}"]
    assert cli("verify", "--json").returncode == 1

    repaired = cli("verify", "--repair", "--json")
    assert repaired.returncode == 0, repaired.stderr[-2000:]
    summary = json.loads(repaired.stdout.strip().splitlines()[-1])
    assert (summary["stale"], summary["repaired"], summary["deleted"],
            summary["stale_remaining"]) == (2, 2, 2, 0)
    after = verify(cache, catalog, rows)
    assert not (after.stale or after.orphaned or after.unversioned)
    assert client.get("account", "v-4")["Balance"] == 1005


def test_verify_sample_checks_only_that_many(
    provisioned: Settings, database: Any, cache: RedisCache, catalog: Catalog,
) -> None:
    """--sample N checks a random N of the namespace's keys."""
    ids = [f"s-{n}" for n in range(30)]
    seed_accounts(database, ids)
    cache.apply([CacheOp.invalidate(catalog.key(catalog.template("account"), [i]).key, 1)
                 for i in ids])
    assert verify(cache, catalog, SpannerRows(database), sample=7).checked == 7


def test_rewarm_backfills_a_table_and_never_lowers_a_version(
    provisioned: Settings, database: Any, cache: RedisCache, catalog: Catalog,
) -> None:
    """A backfill caches every row of the table (or of a key prefix) at its snapshot's
    version; an entry already newer than that snapshot is left alone."""
    ids = [f"w-{n:03d}" for n in range(120)]
    seed_accounts(database, ids)
    rows = SpannerRows(database)
    newer = catalog.key(catalog.template("account"), ["w-000"]).key
    cache.apply([CacheOp.invalidate(newer, 2**62)])
    report = backfill(TableWalker(database), rows, cache, catalog, "Accounts",
                      prefix="w-0", batch=50)
    assert (report.rows, report.written, report.superseded) == (100, 99, 1)
    [held] = cache.get([newer])
    assert held is not None and held.version == 2**62
    done = cli("rewarm", "--table", "Accounts", "--rate", "1000", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1])["rows"] == 120
    checked = verify(cache, catalog, rows)
    assert checked.checked == 120 and not checked.stale
