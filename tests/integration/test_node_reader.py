"""The Node reader (infra/examples/node-reader), written from the published contract only, reads
and fills the real Redis that the Python pipeline filled, and agrees with it on every rule:
tombstones are misses, versions only go up, foreign entries are misses."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import redis
from redis_spanner.consumers.readthrough import CacheClient
from redis_spanner.consumers.worker import PullWorker
from redis_spanner.infra.demo.workload import bump, seed_accounts
from redis_spanner.schemas import cache, versions
from redis_spanner.schemas.keys import Catalog
from redis_spanner.schemas.settings import Settings

from tests.redis_text import text_hash
from tests.waiting import wait_until

READER = Path(__file__).parents[2] / "infra" / "examples" / "node-reader"


@pytest.fixture(scope="session")
def node() -> str:
    """Node 20+ with the example's locked dependencies (installed once with `npm ci` when
    node_modules is missing, as `make node-reader` does)."""
    found = shutil.which("node")
    if found is None:
        pytest.fail("node not found: the Node reader test needs Node 20+ and npm "
                    "(apt-get install nodejs npm)", pytrace=False)
    version = subprocess.run([found, "--version"], capture_output=True, text=True).stdout
    major = re.match(r"v(\d+)", version)
    if major is None or int(major[1]) < 20:
        pytest.fail(f"node {version.strip()} is too old: the Node reader needs Node 20+",
                    pytrace=False)
    if not (READER / "node_modules" / "redis").is_dir():
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail("npm not found: install it (apt-get install npm), or run "
                        "`make node-reader` where npm is available", pytrace=False)
        done = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=READER,
                              capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            pytest.fail(f"npm ci in {READER} failed: {done.stderr[-500:]}", pytrace=False)
    return found


def reader(node: str, settings: Settings, *args: str) -> Any:
    done = subprocess.run(
        [node, "reader.js", *args], cwd=READER, capture_output=True, text=True, timeout=60,
        env={"REDIS_URL": settings.require_redis_url(), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_node_reader_honours_the_pipelines_tombstones_and_versions(
    node: str, provisioned: Settings, database: Any, catalog: Catalog, running: Any,
    worker: PullWorker,
) -> None:
    """A tombstone the worker wrote is a miss to Node; Node's fills below it are refused; a
    value Python filled is a hit with the same JSON and version; a fill from a snapshot older
    than a newer invalidation is refused and the key stays a tombstone; a newer fill lands and
    Python reads it as an entry the guard wrote."""
    from redis_spanner.producers.runner import build_relay

    relay, _ = build_relay(provisioned)
    running(relay.run)
    running(worker.run)
    store = redis.Redis.from_url(provisioned.require_redis_url(), decode_responses=True)
    key = catalog.key(catalog.template("account"), ["node-1"]).key
    seed_accounts(database, ["node-1"])
    first = wait_until(lambda: store.hgetall(key), timeout=60)
    assert first["s"] == cache.STATE_TOMBSTONE

    assert reader(node, provisioned, "get", key) == {"state": "tombstone", "version": first["v"]}
    below = str(int(first["v"]) - 1)
    refused = reader(node, provisioned, "fill", key, below, '{"Owner": "x", "Balance": 1}')
    assert refused == {"applied": False, "previous": first["v"], "foreign": None}

    client = CacheClient.from_env(provisioned)
    try:
        value = client.get("account", "node-1")
    finally:
        client.close()
    filled = text_hash(store, key)
    assert reader(node, provisioned, "get", key) == {
        "state": "hit", "version": filled["v"], "value": value}
    assert not reader(node, provisioned, "fill", key, filled["v"], '{"Owner": "y"}')["applied"]

    bump(database, "node-1", 5)

    def tombstoned() -> dict[str, str] | None:
        entry = text_hash(store, key)
        return entry if entry.get("s") == "t" else None

    newer = wait_until(tombstoned, timeout=60)
    stale = reader(node, provisioned, "through", key, filled["v"], '{"Owner": "old"}')
    assert stale == {"hit": False, "value": {"Owner": "old"}, "version": filled["v"],
                     "filled": False}
    assert text_hash(store, key) == newer

    fresh = str(int(newer["v"]) + 1)
    through = reader(node, provisioned, "through", key, fresh, '{"Owner": "n", "Balance": 2}')
    assert through["filled"] is True
    entry = cache.parse_entry(text_hash(store, key))
    assert entry is not None and not entry.tombstone
    assert entry.version == int(fresh) and entry.value() == {"Owner": "n", "Balance": 2}
    assert reader(node, provisioned, "through", key, fresh, "{}")["hit"] is True
    store.close()


FOREIGN: dict[str, Any] = {
    "wrong-type": "a string",
    "unversioned": {"s": "v", "d": "1"},
    "bad-version": {"v": "12", "s": "v", "d": "1"},
    "future-version": {"v": versions.encode(versions.ceiling(7200)), "s": "t"},
    "bad-state": {"v": versions.encode(1), "s": "v"},
}


@pytest.mark.parametrize("kind", sorted(FOREIGN))
def test_node_reader_treats_each_foreign_kind_as_the_guard_does(
    kind: str, node: str, settings: Settings, redis_client: redis.Redis
) -> None:
    """Every kind of foreign entry is a miss to Node, named as Python names it, and Node's fill
    overwrites it through the guard, reporting the same kind."""
    key = f"{settings.namespace}:account:{{Accounts:f-{kind}}}"
    planted = FOREIGN[kind]
    if isinstance(planted, str):
        redis_client.set(key, planted)
        fields: dict[str, str] | str = "string"
    else:
        redis_client.hset(key, mapping=planted)
        fields = planted
    assert cache.foreign_kind(fields, versions.ceiling(3600)) == kind
    assert reader(node, settings, "get", key) == {"state": "foreign", "kind": kind}
    written = reader(node, settings, "fill", key, str(versions.ceiling(0)), '{"Owner": "z"}')
    assert written["applied"] is True and written["foreign"] == kind
    assert reader(node, settings, "get", key)["state"] == "hit"
    redis_client.delete(key)
