"""verify finds what is wrong in the cache and repairs it; rewarm backfills a cold cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

from redis_spanner.consumers.backfill import backfill
from redis_spanner.consumers.readthrough import ReadThrough
from redis_spanner.consumers.redis_cache import RedisCache
from redis_spanner.consumers.spanner_rows import SpannerRows, TableWalker
from redis_spanner.consumers.verify import verify
from redis_spanner.infra.demo.workload import bump, seed_accounts
from redis_spanner.schemas import versions
from redis_spanner.schemas.cache import CacheOp
from redis_spanner.schemas.keys import Catalog, internal_key
from redis_spanner.schemas.settings import Settings


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "redis_spanner.infra.cli", *args],
                          env=dict(os.environ), capture_output=True, text=True, timeout=120)


def test_verify_finds_and_repairs_deliberate_corruption(
    provisioned: Settings, database: Any, cache: RedisCache, catalog: Catalog,
) -> None:
    """Entries corrupted on purpose (a wrong value at an old version, a value of a row that
    changed without an event, every kind of foreign entry, a key of no template) are reported
    as stale, foreign (with their kind) and orphaned; repair fixes them through the guard and
    verify then passes. The consumers' own keys (a heal probe, a replication barrier) are left
    alone."""
    ids = [f"v-{n}" for n in range(20)]
    seed_accounts(database, ids)
    rows = SpannerRows(database)
    client = ReadThrough(catalog, cache, rows)
    reads = client.get_many([client.key("account", i) for i in ids])
    assert all(r.filled for r in reads)
    key = client.key("account", "v-3").key
    cache.client.hset(key, "d", json.dumps({"Balance": -1, "Owner": "nobody"}))
    bump(database, "v-4", 5)  # committed, but no consumer runs: its cached value is now stale
    future = versions.encode(time.time_ns() + 2 * 3600 * 10**9)
    planted = {
        "v-10": (lambda k: cache.client.set(k, "not a hash"), "wrong-type"),
        "v-11": (lambda k: cache.client.rpush(k, "a"), "wrong-type"),
        "v-12": (lambda k: cache.client.xadd(k, {"f": "v"}), "wrong-type"),
        "v-13": (lambda k: cache.client.hset(k, mapping={"d": "{}"}), "unversioned"),
        "v-14": (lambda k: cache.client.hset(k, mapping={"v": "x1", "s": "t"}), "bad-version"),
        "v-15": (lambda k: cache.client.hset(k, mapping={"v": future, "s": "t"}),
                 "future-version"),
        "v-16": (lambda k: cache.client.hset(k, mapping={"v": versions.encode(9)}), "bad-state"),
        "plain": (lambda k: cache.client.set(k, "no row behind it"), "wrong-type"),
    }
    for account, (plant, _) in planted.items():
        k = client.key("account", account).key
        cache.client.delete(k)
        plant(k)
    cache.client.hset(f"{catalog.namespace}:ghost:{{Ghosts:1}}", mapping={"v": "1"})
    own = [internal_key(catalog.namespace, "heal-probe"),
           internal_key(catalog.namespace, "replication-barrier", "7")]
    cache.apply([CacheOp.invalidate(own[0], time.time_ns())])
    cache.client.set(own[1], "")

    report = verify(cache, catalog, rows)
    assert sorted(report.stale) == sorted([key, client.key("account", "v-4").key])
    assert report.foreign == {client.key("account", a).key: kind
                              for a, (_, kind) in planted.items()}
    assert report.orphaned == [f"{catalog.namespace}:ghost:{{Ghosts:1}}"]
    failing = cli("verify", "--json")
    assert failing.returncode == 1 and "Traceback" not in failing.stderr
    summary = json.loads(failing.stdout.strip().splitlines()[-1])
    assert summary["foreign"] == 8 and summary["foreign_kinds"]["wrong-type"] == 4

    repaired = cli("verify", "--repair", "--json")
    assert repaired.returncode == 0, repaired.stderr[-2000:]
    summary = json.loads(repaired.stdout.strip().splitlines()[-1])
    assert (summary["stale"], summary["foreign"], summary["repaired"], summary["deleted"],
            summary["stale_remaining"], summary["foreign_remaining"]) == (2, 8, 10, 1, 0, 0)
    after = verify(cache, catalog, rows)
    assert not (after.stale or after.orphaned or after.foreign)
    assert cache.client.exists(*own) == 2  # the consumers' own keys: neither checked nor deleted
    assert client.get("account", "v-4")["Balance"] == 1005
    assert client.get("account", "v-15")["Balance"] == 1000
    [plain] = cache.get([client.key("account", "plain").key])
    assert plain is not None and plain.data == "null"


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
    ahead = time.time_ns() + 600 * 10**9  # newer than any snapshot, within the allowed skew
    cache.apply([CacheOp.invalidate(newer, ahead)])
    report = backfill(TableWalker(database), rows, cache, catalog, "Accounts",
                      prefix="w-0", batch=50)
    assert (report.rows, report.written, report.superseded) == (100, 99, 1)
    [held] = cache.get([newer])
    assert held is not None and held.version == ahead
    done = cli("rewarm", "--table", "Accounts", "--rate", "1000", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1])["rows"] == 120
    checked = verify(cache, catalog, rows)
    assert checked.checked == 120 and not checked.stale
