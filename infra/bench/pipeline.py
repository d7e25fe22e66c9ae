"""The relay's throughput, the whole pipeline's lag at a steady write rate, and the read path."""

from __future__ import annotations

import random
import statistics
import threading
import time
from functools import partial
from typing import Any

from redis_spanner.consumers.messages import Outcome
from redis_spanner.consumers.pubsub import PullSubscription
from redis_spanner.consumers.readthrough import ReadThrough
from redis_spanner.consumers.worker import Consumer, PullWorker
from redis_spanner.infra.bench.stack import (
    CHUNK,
    Counter,
    Rate,
    account_id,
    seed_accounts,
    timed,
)
from redis_spanner.infra.demo.workload import bump, paced
from redis_spanner.producers.outbox import (
    OUTBOX_COLUMNS,
    OUTBOX_SHARDS,
    OUTBOX_TABLE,
    outbox_values,
)
from redis_spanner.producers.outbox_rows import OutboxRow
from redis_spanner.producers.outbox_store import SpannerOutbox
from redis_spanner.producers.runner import build_relay
from redis_spanner.producers.spanner import open_database, run_transaction
from redis_spanner.schemas.events import EventType
from redis_spanner.schemas.settings import Settings


def _fill_outbox(settings: Settings, events: int) -> Any:
    database = open_database(settings)
    for start in range(0, events, CHUNK):
        rows = [outbox_values(EventType.ROW_CHANGED, "Accounts", (account_id(i),))
                for i in range(start, min(events, start + CHUNK))]
        def insert(tx: Any, rows: list[Any] = rows) -> None:
            tx.insert(OUTBOX_TABLE, columns=OUTBOX_COLUMNS, values=rows)

        run_transaction(database, insert)
    return database


def relay(settings: Settings, events: int) -> Rate:
    """Outbox rows per second one relay publishes, from ``events`` rows committed up front."""
    _fill_outbox(settings, events)
    published = Counter(events)

    def count(rows: list[OutboxRow]) -> None:
        published.add(len(rows))

    runner, publisher = build_relay(settings, on_published=count)
    rate = timed(runner.run, published)
    publisher.close()
    return rate


def outbox_read(settings: Settings, events: int) -> float:
    """Outbox rows per second the relay's reads alone go through (rounds of the relay's
    size, each from the last one's last row, every row decoded into its message): the
    Spanner side's limit on the relay."""
    store = SpannerOutbox(_fill_outbox(settings, events))
    shards = set(range(OUTBOX_SHARDS))
    read, after = 0, None
    began = time.monotonic()
    while read < events:
        found = store.read(shards, settings.relay_batch, after=after)
        read += len(found.rows)
        after = found.last
        if not found.full:
            break
    return read / (time.monotonic() - began)


def end_to_end_lags(settings: Settings, rate: float, seconds: float) -> list[float]:
    """Milliseconds from each commit (its commit timestamp) to its event applied in Redis,
    with writers committing ``rate`` account changes per second through the relay and the
    worker."""
    accounts = 100
    seed_accounts(settings, accounts)
    database = open_database(settings)
    lags: list[float] = []
    lock = threading.Lock()
    writes = threading.Event()

    def observe(outcomes: list[Outcome]) -> None:
        now = time.time_ns()
        with lock:
            lags.extend((now - o.event.version) / 1e6 for o in outcomes
                        if o.event is not None and writes.is_set())

    consumer = Consumer.from_settings(settings, observer=observe)
    subscription = PullSubscription(settings.subscription_path,
                                    max_messages=settings.worker_batch)
    worker = PullWorker(subscription, consumer.processor, streams=settings.worker_streams)
    runner, publisher = build_relay(settings)
    stop = threading.Event()
    threads = [threading.Thread(target=runner.run, args=(stop,), daemon=True),
               threading.Thread(target=worker.run, args=(stop, 1.0), daemon=True)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)  # the relay takes its leases, the backlog of seeding drains
    rng = random.Random(7)
    load_stop = threading.Event()
    committed = [0]

    def write() -> None:
        bump(database, account_id(rng.randrange(accounts)), 1)
        committed[0] += 1

    writes.set()
    writer = threading.Thread(target=partial(paced, rate, load_stop, write), daemon=True)
    writer.start()
    load_stop.wait(seconds)
    load_stop.set()
    writer.join(10)
    deadline = time.monotonic() + 15
    while len(lags) < committed[0] and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    for thread in threads:
        thread.join(15)
    publisher.close()
    subscription.close()
    consumer.close()
    return lags


def read_path(settings: Settings, reads: int) -> dict[str, float]:
    """Median milliseconds of a cached read-through ``get`` and of a strong Spanner read of
    the same account."""
    seed_accounts(settings, 10)
    consumer = Consumer.from_settings(settings)
    client = ReadThrough(consumer.catalog, consumer.cache, consumer.rows)
    key = client.key("account", account_id(3))
    client.get("account", account_id(3))  # fills the cache

    def median_ms(call: Any) -> float:
        times = []
        for _ in range(reads):
            began = time.perf_counter()
            call()
            times.append((time.perf_counter() - began) * 1000)
        return statistics.median(times)

    cached = median_ms(lambda: client.get("account", account_id(3)))
    strong = median_ms(lambda: consumer.rows.read([key]))
    consumer.close()
    return {"cached_get_ms": cached, "spanner_read_ms": strong}
