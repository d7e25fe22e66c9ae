"""Change stream as the event source, on the real emulators and Redis: writes without any outbox
row -> change stream -> changestream relay -> Pub/Sub -> worker -> Redis."""

from __future__ import annotations

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
from redis_spanner.infra.provision import provision, teardown
from redis_spanner.producers.changestream import event_id_for
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
    provision(configured)
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
            version = write(database, lambda tx, a=account, n=n: tx.insert_or_update(
                "Accounts", columns, [[a, "o", n, spanner.COMMIT_TIMESTAMP]]))
            tally.on_commit(event_id_for("Accounts", [account], version))
        wait_until(lambda: not tally.unaccounted(), timeout=60, interval=0.1)
        assert not tally.dead_lettered_ids
        assert len(tally.committed) == 40
    finally:
        consumer.close()
        for _, publisher in built:
            publisher.close()
