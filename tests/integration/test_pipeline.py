"""The whole path on the real emulators and Redis: outbox -> relay -> Pub/Sub -> worker -> Redis."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from typing import Any

import pytest
from google.cloud import pubsub_v1  # type: ignore[attr-defined]
from redis_spanner.consumers.worker import PullWorker
from redis_spanner.infra.demo.workload import bump, seed_accounts
from redis_spanner.producers.outbox import record
from redis_spanner.producers.outbox_store import OutboxRow, SpannerOutbox
from redis_spanner.producers.runner import build_relay
from redis_spanner.producers.spanner import run_transaction
from redis_spanner.schemas import versions
from redis_spanner.schemas.cache import CacheOp
from redis_spanner.schemas.envelope import Event
from redis_spanner.schemas.events import EventType
from redis_spanner.schemas.keys import Catalog
from redis_spanner.schemas.settings import Settings

from tests.waiting import wait_until


def outbox_count(database: Any) -> int:
    with database.snapshot() as snapshot:
        return int(next(iter(snapshot.execute_sql("SELECT COUNT(*) FROM Outbox")))[0])


def entry(cache: Any, catalog: Catalog, account: str) -> Any:
    return cache.get([catalog.key(catalog.template("account"), [account]).key])[0]


def test_committed_event_reaches_redis_as_a_tombstone_at_its_commit_version(
    provisioned: Settings, database: Any, cache: Any, catalog: Catalog, running: Any,
    worker: PullWorker,
) -> None:
    """A write committed with its outbox row invalidates the cached value, and the tombstone
    carries the transaction's commit timestamp."""
    seed_accounts(database, ["a-1"])
    key = catalog.key(catalog.template("account"), ["a-1"]).key
    cache.apply([CacheOp.set(key, 1, {"Owner": "old", "Balance": 0})])
    relay, _ = build_relay(provisioned)
    running(relay.run)
    running(worker.run)

    def write(tx: Any) -> str:
        tx.update("Accounts", ("AccountId", "Balance"), [["a-1", 5]])
        return record(tx, EventType.ROW_CHANGED, "Accounts", ("a-1",))

    _, committed = run_transaction(database, write)
    version = versions.from_datetime(committed)
    found = wait_until(lambda: (e := entry(cache, catalog, "a-1")) and e.version >= version and e)
    assert found.tombstone and found.version == version
    wait_until(lambda: outbox_count(database) == 0)


def test_rolled_back_transaction_publishes_nothing(
    provisioned: Settings, database: Any, running: Any
) -> None:
    """An outbox row in a transaction that fails is never written, so nothing is published."""
    published: list[OutboxRow] = []
    relay, _ = build_relay(provisioned, on_published=published.extend)
    running(relay.run)
    seed_accounts(database, ["a-2"])
    wait_until(lambda: len(published) == 1)

    class Boom(Exception):
        pass

    def write(tx: Any) -> None:
        tx.update("Accounts", ("AccountId", "Balance"), [["a-2", 99]])
        record(tx, EventType.ROW_CHANGED, "Accounts", ("a-2",))
        raise Boom

    with pytest.raises(Boom):
        run_transaction(database, write)
    bump(database, "a-2", 1)  # a later commit proves the relay is still publishing
    wait_until(lambda: len(published) == 2)
    wait_until(lambda: outbox_count(database) == 0)
    assert len(published) == 2
    with database.snapshot() as snapshot:
        [[balance]] = list(snapshot.execute_sql(
            "SELECT Balance FROM Accounts WHERE AccountId = 'a-2'"))
    assert balance == 1001


def test_duplicate_and_out_of_order_delivery_leave_the_newest_version(
    provisioned: Settings, cache: Any, catalog: Catalog, running: Any, worker: PullWorker,
) -> None:
    """Events published newest first, each twice, end with the newest version in Redis."""
    publisher = pubsub_v1.PublisherClient()
    events = [Event(f"0f8e2c1a-{n:04d}", EventType.ROW_CHANGED, "Accounts", ("a-3",),
                    1_700_000_000_000_000_000 + n) for n in range(5)]
    for event in [*reversed(events), *events]:
        publisher.publish(provisioned.topic_path, event.encode(), **event.attributes()).result()
    outcomes: list[Any] = []
    processor = worker._processor
    original = processor.process

    def spy(batch: Any) -> Any:
        out = original(batch)
        outcomes.extend(out)
        return out

    processor.process = spy  # type: ignore[method-assign]
    running(worker.run)
    wait_until(lambda: len(outcomes) >= 10)
    found = entry(cache, catalog, "a-3")
    assert found.tombstone and found.version == events[-1].version
    assert all(o.disposition == "ack" for o in outcomes)


def test_relay_killed_between_publish_and_delete_loses_nothing(
    provisioned: Settings, database: Any, running: Any
) -> None:
    """A relay SIGKILLed after Pub/Sub took its batch but before the delete leaves the rows in
    the outbox; the next relay publishes them again, so every event is delivered."""
    event_ids = seed_accounts(database, [f"k-{n}" for n in range(30)])
    env = {**os.environ, "REDIS_SPANNER_FAILPOINTS": "relay.after_publish=kill"}
    crashed = subprocess.run(
        [sys.executable, "-m", "redis_spanner.infra.cli", "relay"], env=env, timeout=60,
        capture_output=True, text=True,
    )
    assert crashed.returncode == -9, crashed.stderr[-2000:]
    assert outbox_count(database) == 30, "the killed relay deleted rows it should have kept"

    subscriber = pubsub_v1.SubscriberClient()
    delivered: set[str] = set()

    def drain() -> bool:
        response = subscriber.pull(subscription=provisioned.subscription_path,
                                   max_messages=100, timeout=5)
        delivered.update(m.message.attributes["event_id"] for m in response.received_messages)
        if response.received_messages:
            subscriber.acknowledge(subscription=provisioned.subscription_path,
                                   ack_ids=[m.ack_id for m in response.received_messages])
        return set(event_ids) <= delivered

    relay, _ = build_relay(provisioned)
    running(relay.run)
    wait_until(drain, timeout=30)
    wait_until(lambda: outbox_count(database) == 0)


def test_two_relays_never_publish_the_same_shard_while_leases_hold(
    provisioned: Settings, database: Any, running: Any
) -> None:
    """Two relays split the shards between them and each event is published exactly once."""
    lock = threading.Lock()
    by_relay: dict[str, list[OutboxRow]] = {}

    def recorder(name: str) -> Any:
        def on_published(rows: list[OutboxRow]) -> None:
            with lock:
                by_relay.setdefault(name, []).extend(rows)
        return on_published

    relays = [build_relay(provisioned, on_published=recorder(n))[0] for n in ("one", "two")]
    for relay in relays:
        running(relay.run)
    wait_until(lambda: len(relays[0].shards) == len(relays[1].shards) == 8, timeout=30)
    event_ids: list[str] = []
    for n in range(10):
        event_ids += seed_accounts(database, [f"r-{n}-{m}" for m in range(20)])
    wait_until(lambda: sum(len(v) for v in by_relay.values()) >= len(event_ids))
    published = [r.event_id for rows in by_relay.values() for r in rows]
    assert sorted(published) == sorted(event_ids), "an event was published twice or never"
    shards = {name: {r.shard for r in rows} for name, rows in by_relay.items()}
    assert not shards["one"] & shards["two"]
    assert not relays[0].shards & relays[1].shards


def test_leases_are_renewed_and_released(provisioned: Settings, database: Any) -> None:
    """A relay keeps its shards on renewal and a released shard is free for the next one."""
    store = SpannerOutbox(database)
    assert store.claim("relay-a", 30).shards == set(range(16))
    assert store.claim("relay-a", 30).shards == set(range(16))
    b = store.claim("relay-b", 30)  # all held; b announces itself and aims for half
    assert b.shards == set() and b.share == 8
    assert store.live_relays() == 2
    assert len(store.claim("relay-a", 30).shards) == 8  # a sheds down to its fair share
    assert len(store.claim("relay-b", 30).shards) == 8
    store.release("relay-a")
    assert store.claim("relay-b", 30).shards == set(range(16))
