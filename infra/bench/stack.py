"""What every bench stage shares: a fresh topic, subscription, database and namespace per run,
events published up front, accounts seeded in Spanner, and a loop timed until it is done."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from google.cloud import pubsub_v1, spanner  # type: ignore[attr-defined]
from redis_spanner.infra.provision.run import provision, teardown
from redis_spanner.infra.spanner.ddl import DEMO_SCHEMA_PATH
from redis_spanner.producers.spanner import open_database, run_transaction
from redis_spanner.schemas.envelope import Event
from redis_spanner.schemas.events import EventType
from redis_spanner.schemas.settings import ENV_PREFIX, Settings

REWARM_CATALOG = "redis_spanner.schemas.catalog:DEMO_REWARM"
CHUNK = 500


@contextmanager
def fresh(base: Settings, tag: str, *, catalog: str | None = None) -> Iterator[Settings]:
    """Settings naming resources of this run alone, provisioned, and torn down after."""
    suffix = f"{tag}-{uuid.uuid4().hex[:6]}"
    settings = base.model_copy(update={
        "database": f"bench-{uuid.uuid4().hex[:8]}",
        "topic": f"bench-events-{suffix}",
        "subscription": f"bench-consumer-{suffix}",
        "dead_letter_topic": f"bench-dead-{suffix}",
        "dead_letter_subscription": f"bench-dead-hold-{suffix}",
        "namespace": f"bench{uuid.uuid4().hex[:6]}",
        **({"catalog": catalog} if catalog else {}),
    })
    provision(settings, ddl=[DEMO_SCHEMA_PATH])
    try:
        yield settings
    finally:
        teardown(settings)


def child_env(settings: Settings) -> dict[str, str]:
    """This process's environment with the run's resources set, for a worker in a child
    process (which loads its settings from the environment)."""
    names = ("database", "topic", "subscription", "dead_letter_topic",
             "dead_letter_subscription", "namespace", "catalog")
    return {**os.environ, **{ENV_PREFIX + n.upper(): str(getattr(settings, n)) for n in names}}


def account_id(i: int) -> str:
    return f"b-{i:07d}"


def publish_events(settings: Settings, events: int, hot_keys: int | None = None) -> None:
    """``events`` account-change events on the topic, confirmed: each its own account, or
    cycling over ``hot_keys`` accounts."""
    publisher = pubsub_v1.PublisherClient()
    base = time.time_ns() - 10**9
    futures = []
    for i in range(events):
        key = account_id(i if hot_keys is None else i % hot_keys)
        event = Event(str(uuid.uuid4()), EventType.ROW_CHANGED, "Accounts", (key,), base + i)
        futures.append(publisher.publish(settings.topic_path, event.encode(),
                                         **event.attributes()))
    for future in futures:
        future.result()
    publisher.stop()


def seed_accounts(settings: Settings, count: int) -> None:
    """``count`` rows in Accounts, so rewarms and reads find values."""
    database = open_database(settings)
    columns = ("AccountId", "Owner", "Balance", "UpdatedAt")
    for start in range(0, count, CHUNK):
        rows = [[account_id(i), f"owner-{i}", i, spanner.COMMIT_TIMESTAMP]
                for i in range(start, min(count, start + CHUNK))]
        def upsert(tx: Any, rows: list[list[Any]] = rows) -> None:
            tx.insert_or_update("Accounts", columns=columns, values=rows)

        run_transaction(database, upsert)


class Counter:
    """Counts up to ``target`` from several threads; ``done`` is set when it is reached."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.count = 0
        self.done = threading.Event()
        self._lock = threading.Lock()

    def add(self, n: int) -> None:
        with self._lock:
            self.count += n
            if self.count >= self.target:
                self.done.set()


@dataclass(frozen=True)
class Rate:
    """Items per second, and the CPU this process spent per item (µs) while doing them: every
    thread of it, gRPC's and redis-py's included."""

    per_second: float
    cpu_us: float


def timed(loop: Callable[[threading.Event], Any], done: Counter,
          limit: float = 300.0) -> Rate:
    """Run ``loop(stop)`` in a thread until ``done`` reaches its target (or ``limit`` seconds
    pass): the rate it went at, and this process's CPU per item."""
    stop = threading.Event()
    began, cpu = time.monotonic(), time.process_time()
    thread = threading.Thread(target=loop, args=(stop,), daemon=True)
    thread.start()
    done.done.wait(limit)
    elapsed, cpu = time.monotonic() - began, time.process_time() - cpu
    stop.set()
    thread.join(30)
    return Rate(done.count / elapsed, cpu / max(done.count, 1) * 1e6)
