"""Throughput benchmark of the relay and the consumer on the local stack.

Each stage runs alone, several times, and the medians are reported:

- relay: outbox rows committed up front (500 per transaction), then timed from the relay's
  start until every row is published and deleted;
- consumer: events published straight to the topic up front, then timed from the worker's start
  until every one is acked; once with distinct keys and once with hot keys (coalescing).
"""

from __future__ import annotations

import functools
import os
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from google.cloud import pubsub_v1  # type: ignore[attr-defined]
from redis_spanner.consumers.messages import Outcome
from redis_spanner.consumers.pubsub import PullSubscription
from redis_spanner.consumers.worker import Consumer, PullWorker
from redis_spanner.infra.local import started
from redis_spanner.infra.provision import provision, teardown
from redis_spanner.infra.spanner.ddl import DEMO_SCHEMA_PATH
from redis_spanner.producers.outbox import OUTBOX_COLUMNS, OUTBOX_TABLE, outbox_values
from redis_spanner.producers.runner import build_relay
from redis_spanner.producers.spanner import open_database, run_transaction
from redis_spanner.schemas.envelope import Event
from redis_spanner.schemas.events import EventType
from redis_spanner.schemas.settings import Settings

Progress = Callable[[str], None]


def run_bench(events: int, repeats: int, progress: Progress) -> dict[str, Any]:
    with started() as env:
        os.environ.update(env.exports())
        results: dict[str, list[float]] = {"relay": [], "consumer": [], "consumer_hot": []}
        for n in range(repeats):
            for stage, measure in (("relay", _relay), ("consumer", _consumer(1)),
                                   ("consumer_hot", _consumer(50))):
                settings = _fresh_settings(f"{stage}-{n}")
                provision(settings, ddl=[DEMO_SCHEMA_PATH])
                try:
                    rate = measure(settings, events)
                finally:
                    teardown(settings)
                results[stage].append(rate)
                progress(f"{stage} run {n + 1}/{repeats}: {rate:.0f} events/s")
    return {
        "events_per_run": events,
        "repeats": repeats,
        **{f"{stage}_events_per_s": round(statistics.median(rates))
           for stage, rates in results.items()},
        "runs": {stage: [round(r) for r in rates] for stage, rates in results.items()},
    }


def _fresh_settings(tag: str) -> Settings:
    suffix = f"{tag}-{uuid.uuid4().hex[:6]}"
    return Settings(
        database=f"bench-{uuid.uuid4().hex[:8]}",
        topic=f"bench-events-{suffix}",
        subscription=f"bench-consumer-{suffix}",
        dead_letter_topic=f"bench-dead-{suffix}",
        dead_letter_subscription=f"bench-dead-hold-{suffix}",
        namespace=f"bench{uuid.uuid4().hex[:6]}",
    )


def _insert_outbox(tx: Any, rows: list[Any]) -> None:
    tx.insert(OUTBOX_TABLE, columns=OUTBOX_COLUMNS, values=rows)


def _relay(settings: Settings, events: int) -> float:
    database = open_database(settings)
    for start in range(0, events, 500):
        rows = [outbox_values(EventType.ROW_CHANGED, "Accounts", (f"b-{i}",))
                for i in range(start, min(events, start + 500))]
        run_transaction(database, functools.partial(_insert_outbox, rows=rows))
    published = 0
    done = threading.Event()

    def count(rows: list[Any]) -> None:
        nonlocal published
        published += len(rows)
        if published >= events:
            done.set()

    relay, publisher = build_relay(settings, on_published=count)
    elapsed = _timed(relay.run, done)
    publisher.close()
    return published / elapsed


def _consumer(keys: int | None) -> Callable[[Settings, int], float]:
    """``keys`` distinct keys per 50 events: 1 means every event its own key."""
    def measure(settings: Settings, events: int) -> float:
        publisher = pubsub_v1.PublisherClient()
        base = time.time_ns()
        futures = []
        for i in range(events):
            key = f"c-{i}" if keys == 1 else f"hot-{i % (keys or 1)}"
            event = Event(str(uuid.uuid4()), EventType.ROW_CHANGED, "Accounts", (key,), base + i)
            futures.append(publisher.publish(settings.topic_path, event.encode(),
                                             **event.attributes()))
        for future in futures:
            future.result()
        acked = 0
        done = threading.Event()

        def observe(outcomes: list[Outcome]) -> None:
            nonlocal acked
            acked += sum(1 for o in outcomes if o.disposition == "ack")
            if acked >= events:
                done.set()

        consumer = Consumer.from_settings(settings, observer=observe)
        worker = PullWorker(PullSubscription(settings.subscription_path, max_messages=500),
                            consumer.processor, streams=settings.worker_streams)
        elapsed = _timed(lambda stop: worker.run(stop, 1.0), done)
        consumer.close()
        return acked / elapsed

    return measure


def _timed(loop: Callable[[threading.Event], None], done: threading.Event) -> float:
    """Run ``loop`` in a thread until ``done`` is set; the seconds that took."""
    stop = threading.Event()
    began = time.monotonic()
    thread = threading.Thread(target=loop, args=(stop,), daemon=True)
    thread.start()
    done.wait(300)
    elapsed = time.monotonic() - began
    stop.set()
    thread.join(30)
    return elapsed
