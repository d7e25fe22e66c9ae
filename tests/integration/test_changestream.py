"""Change stream as the event source, on the real emulators and Redis: writes without any outbox
row -> change stream -> changestream relay -> Pub/Sub -> worker -> Redis."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from google.cloud import spanner
from redis_spanner.consumers.pubsub import PullSubscription
from redis_spanner.consumers.spanner_rows import SpannerRows
from redis_spanner.consumers.verify import Verdict, compare
from redis_spanner.consumers.worker import Consumer, PullWorker
from redis_spanner.infra.demo.tally import Tally
from redis_spanner.infra.provision.run import provision, teardown
from redis_spanner.infra.spanner.ddl import DEMO_SCHEMA_PATH
from redis_spanner.producers.changestream import ChildPartition, event_id_for
from redis_spanner.producers.partition_store import ROOT, SpannerPartitions
from redis_spanner.producers.runner import build_changestream_relay
from redis_spanner.producers.spanner import open_database, run_transaction
from redis_spanner.schemas import versions
from redis_spanner.schemas.cache import CacheOp
from redis_spanner.schemas.catalog import load_catalog
from redis_spanner.schemas.keys import Catalog
from redis_spanner.schemas.settings import Settings, get_settings

from tests.waiting import wait_until

Start = Callable[[Callable[[threading.Event], None]], None]


@pytest.fixture
def streamed(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """This test's resources provisioned for the change-stream source (short leases)."""
    monkeypatch.setenv("REDIS_SPANNER_SOURCE", "changestream")
    monkeypatch.setenv("REDIS_SPANNER_RELAY_LEASE_SECONDS", "3")
    get_settings.cache_clear()
    configured = get_settings()
    provision(configured, ddl=[DEMO_SCHEMA_PATH])
    yield configured
    teardown(configured)


@pytest.fixture
def loops() -> Iterator[tuple[Start, threading.Event]]:
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def start(loop: Callable[[threading.Event], None]) -> None:
        thread = threading.Thread(target=loop, args=(stop,), daemon=True)
        thread.start()
        threads.append(thread)

    yield start, stop
    stop.set()
    for thread in threads:
        thread.join(timeout=30)


def start_worker(settings: Settings, tally: Tally, start: Start) -> Consumer:
    consumer = Consumer.from_settings(settings, observer=tally.on_outcomes)
    subscription = PullSubscription(settings.subscription_path)
    worker = PullWorker(subscription, consumer.processor, streams=2)
    start(lambda stop: worker.run(stop, pull_timeout=1.0))
    return consumer


def write(database: Any, work: Callable[[Any], Any]) -> int:
    _, committed = run_transaction(database, work)
    return versions.from_datetime(committed)


def test_writes_without_outbox_rows_reach_redis_with_their_commit_versions(
    streamed: Settings, loops: tuple[Start, threading.Event]
) -> None:
    """Inserts, updates and deletes of catalog tables, committed without any outbox row,
    become the outbox's events at each record's commit timestamp: changed rows invalidate,
    deleted rows leave a tombstone, a child row's change rewarms its parent's derived key; the
    cache ends matching Spanner."""
    start, _ = loops
    database = open_database(streamed)
    catalog: Catalog = load_catalog(streamed.catalog, streamed.namespace)
    tally = Tally()
    relay, publisher = build_changestream_relay(streamed, on_published=tally.on_published)
    start(relay.run)
    consumer = start_worker(streamed, tally, start)
    try:
        assert relay.ready.wait(30)
        account = catalog.template("account")
        keys = {a: catalog.key(account, [a]).key for a in ("a-1", "a-2", "a-3")}
        consumer.cache.apply([CacheOp.set(k, 1, {"Owner": "old", "Balance": 0})
                              for k in keys.values()])
        columns = ("AccountId", "Owner", "Balance", "UpdatedAt")
        expected: dict[str, int] = {}

        created = write(database, lambda tx: tx.insert("Accounts", columns, [
            [a, "o", 10, spanner.COMMIT_TIMESTAMP] for a in keys]))
        expected.update({event_id_for("Accounts", [a], created): created for a in keys})
        updated = write(database, lambda tx: tx.update("Accounts", columns, [
            ["a-1", "o", 11, spanner.COMMIT_TIMESTAMP]]))
        expected[event_id_for("Accounts", ["a-1"], updated)] = updated
        deleted = write(database, lambda tx: tx.delete("Accounts", spanner.KeySet(
            keys=[["a-2"]])))
        expected[event_id_for("Accounts", ["a-2"], deleted)] = deleted

        def team(tx: Any) -> None:
            tx.insert("Teams", ("TeamId", "Name"), [[7, "seven"]])
            tx.insert("Members", ("TeamId", "MemberId", "Role"), [[7, "m-1", "lead"]])

        teamed = write(database, team)
        expected[event_id_for("Teams", [7], teamed)] = teamed
        expected[event_id_for("Members", [7, "m-1"], teamed)] = teamed
        for event_id in expected:
            tally.on_commit(event_id)

        wait_until(lambda: not tally.unaccounted(), timeout=60, interval=0.1)
        assert not tally.dead_lettered_ids
        entries = dict(zip(keys, consumer.cache.get(list(keys.values())), strict=True))
        assert entries["a-1"] is not None and entries["a-1"].tombstone
        assert entries["a-1"].version == updated
        assert entries["a-2"] is not None and entries["a-2"].tombstone
        assert entries["a-2"].version == deleted
        assert entries["a-3"] is not None and entries["a-3"].version == created
        members = catalog.key(catalog.template("team-members"), [7])
        rewarmed = consumer.cache.get([members.key])[0]
        assert rewarmed is not None and not rewarmed.tombstone
        assert rewarmed.version >= teamed  # a rewarm is versioned by its read
        checked = compare([catalog.key(account, [a]) for a in keys] + [members],
                          consumer.cache, SpannerRows(database))
        assert not [c for c in checked if c.verdict is Verdict.STALE]
    finally:
        consumer.close()
        publisher.close()


def test_two_relays_share_the_partitions_and_every_change_is_applied(
    streamed: Settings, loops: tuple[Start, threading.Event]
) -> None:
    """Two change-stream relays at once: each leases a share of the partitions, and every
    committed change is applied (a partition read twice around a lease hand-over only
    duplicates events, which keep their ids and are guarded)."""
    start, _ = loops
    database = open_database(streamed)
    tally = Tally()
    built = [build_changestream_relay(streamed, on_published=tally.on_published)
             for _ in range(2)]
    for relay, _ in built:
        start(relay.run)
    consumer = start_worker(streamed, tally, start)
    try:
        assert all(relay.ready.wait(30) for relay, _ in built)
        wait_until(lambda: all(relay.partitions for relay, _ in built), timeout=30)
        held = [relay.partitions for relay, _ in built]
        assert not held[0] & held[1]
        columns = ("AccountId", "Owner", "Balance", "UpdatedAt")
        for n in range(40):
            account = f"acct-{n % 13}"

            def upsert(tx: Any, a: str = account, n: int = n) -> None:
                tx.insert_or_update("Accounts", columns, [[a, "o", n, spanner.COMMIT_TIMESTAMP]])

            version = write(database, upsert)
            tally.on_commit(event_id_for("Accounts", [account], version))
        wait_until(lambda: not tally.unaccounted(), timeout=60, interval=0.1)
        assert not tally.dead_lettered_ids
        assert len(tally.committed) == 40
    finally:
        consumer.close()
        for _, publisher in built:
            publisher.close()


def test_a_merged_partition_waits_for_all_its_parents_and_relays_share_fairly(
    streamed: Settings,
) -> None:
    """Leases and lineage in Spanner: a child of a merge is leased to no one until every
    parent finished; ready partitions are split fairly between live relays; a checkpoint
    written by a relay that no longer holds the lease is refused."""
    partitions = SpannerPartitions(open_database(streamed), streamed.change_stream)
    partitions.ensure_root()
    (root,) = partitions.claim("relay-a", 3)
    t0 = root.checkpoint
    partitions.add_children([ChildPartition("p1", ()), ChildPartition("p2", ())], t0)
    assert partitions.checkpoint("relay-a", ROOT, t0, finished=True)
    at = t0 + dt.timedelta(seconds=1)
    partitions.add_children([ChildPartition("merged", ("p1", "p2"))], at)
    partitions.add_children([ChildPartition("merged", ("p1", "p2"))], at)  # each parent says it

    assert {p.token for p in partitions.claim("relay-a", 3)} == {"p1", "p2"}
    assert not partitions.claim("relay-b", 3)  # both leased; relay-a sheds one next time
    a = {p.token for p in partitions.claim("relay-a", 3)}
    b = {p.token for p in partitions.claim("relay-b", 3)}
    assert a | b == {"p1", "p2"} and len(a) == len(b) == 1
    other = "relay-b" if "p1" in b else "relay-a"
    assert not partitions.checkpoint("relay-x", "p1", at)
    assert partitions.checkpoint(other, "p1", at, finished=True)
    claimed = {p.token for r in ("relay-a", "relay-b") for p in partitions.claim(r, 3)}
    assert "merged" not in claimed
    owner = "relay-b" if "p2" in b else "relay-a"
    assert partitions.checkpoint(owner, "p2", at, finished=True)
    merged = [p for r in ("relay-a", "relay-b") for p in partitions.claim(r, 3)]
    assert [(p.token, p.checkpoint) for p in merged] == [("merged", at)]


def test_provision_creates_the_stream_once_and_the_relay_refuses_a_database_without_it(
    streamed: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Provisioning in change-stream mode creates the stream over the catalog's tables and
    the relay's tables, and is idempotent; a relay pointed at a stream that does not exist
    exits 2 with one line naming the setting, no traceback."""
    again = provision(streamed, ddl=[DEMO_SCHEMA_PATH])
    database = next(r for r in again.resources if r.kind == "spanner database")
    assert database.action == "unchanged"
    handle = open_database(streamed)
    handle.reload()
    ddl = " ".join(" ".join(s.split()) for s in handle.ddl_statements)
    assert "CREATE CHANGE STREAM CacheChanges FOR Accounts, Members, Teams" in ddl
    assert "CREATE TABLE ChangeStreamPartition" in ddl
    monkeypatch.setenv("REDIS_SPANNER_CHANGE_STREAM", "NoSuchStream")
    result = subprocess.run(
        [sys.executable, "-m", "redis_spanner.infra.cli", "changestream-relay"],
        capture_output=True, timeout=120, env=dict(os.environ))
    assert result.returncode == 2
    lines = result.stderr.decode().strip().splitlines()
    assert "Traceback" not in result.stderr.decode()
    assert "NoSuchStream" in lines[-1] and "REDIS_SPANNER_CHANGE_STREAM" in lines[-1]


def test_the_demo_with_the_change_stream_source_loses_nothing_and_leaves_no_stale_key(
    streamed: Settings,
) -> None:
    """`demo --source changestream` (short): writers write no outbox row, two change-stream
    relays publish, readers read through; every committed change is applied, no key is stale
    and no write ever touched the outbox."""
    from redis_spanner.infra.demo.run import DemoOptions, _run
    from rich.console import Console

    options = DemoOptions(duration=3, write_rate=20, read_rate=40, accounts=20,
                          source="changestream", quiesce_timeout=60)
    result = _run(options, streamed, Console(quiet=True))
    assert result["lost"] == 0 and result["stale_keys"] == 0
    assert result["dead_lettered"] == 0 and result["write_errors"] == 0
    assert result["committed"] > 20 and result["applied"] == result["committed"]
    with open_database(streamed).snapshot() as snapshot:
        assert list(snapshot.execute_sql("SELECT COUNT(*) FROM Outbox")) == [[0]]


def test_a_checkpoint_older_than_the_retention_stops_the_relay_with_one_line(
    streamed: Settings,
) -> None:
    """A partition whose checkpoint lies beyond the stream's retention (a relay down for two
    days) is reported by the command in one line naming the stream and the retention, exit 1,
    no traceback; nothing is read past the gap."""
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
    database = open_database(streamed)
    run_transaction(database, lambda tx: tx.insert(
        "ChangeStreamPartition",
        ("StreamName", "Token", "Parents", "StartTs", "Checkpoint", "Finished"),
        [[streamed.change_stream, ROOT, [], old, old, False]]))
    result = subprocess.run(
        [sys.executable, "-m", "redis_spanner.infra.cli", "changestream-relay"],
        capture_output=True, timeout=120, env=dict(os.environ))
    stderr = result.stderr.decode()
    assert result.returncode == 1, stderr[-2000:]
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("redis-spanner changestream-relay: change stream CacheChanges")
    assert "retention of 1 day" in last
    with database.snapshot() as snapshot:
        rows = list(snapshot.execute_sql("SELECT Checkpoint FROM ChangeStreamPartition"))
    assert rows == [[old]]
