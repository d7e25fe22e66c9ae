"""The consumer's throughput: the worker draining a backlog, against a naive consumer."""

from __future__ import annotations

import threading
import time

from google.cloud import pubsub_v1  # type: ignore[attr-defined]
from redis_spanner.consumers.messages import Outcome
from redis_spanner.consumers.pubsub import PullSubscription
from redis_spanner.consumers.worker import Consumer, PullWorker
from redis_spanner.infra.bench.stack import (
    Counter,
    Rate,
    publish_events,
    seed_accounts,
    timed,
)
from redis_spanner.infra.cli.runtime import settle_heap
from redis_spanner.schemas.cache import CacheOp
from redis_spanner.schemas.envelope import decode
from redis_spanner.schemas.settings import Settings


def drain(settings: Settings, events: int, hot_keys: int | None = None,
          rewarm: bool = False) -> Rate:
    """Events per second the pull worker (as ``redis-spanner worker`` runs it) acks, from a
    backlog of ``events`` published up front; for ``rewarm``, every account exists in
    Spanner first."""
    if rewarm:
        seed_accounts(settings, events if hot_keys is None else hot_keys)
    publish_events(settings, events, hot_keys)
    acked = Counter(events)

    def observe(outcomes: list[Outcome]) -> None:
        acked.add(sum(1 for o in outcomes if o.disposition == "ack"))

    consumer = Consumer.from_settings(settings, observer=observe)
    subscription = PullSubscription(settings.subscription_path,
                                    max_messages=settings.worker_batch)
    worker = PullWorker(subscription, consumer.processor, streams=settings.worker_streams)
    settle_heap()  # as `redis-spanner worker` does before its loops start
    rate = timed(lambda stop: worker.run(stop, 1.0), acked)
    subscription.close()
    consumer.close()
    return rate


def naive(settings: Settings, seconds: float) -> float:
    """Events per second of the obvious consumer: per message, pull 1, decode, one guarded
    Redis write, ack."""
    publish_events(settings, int(seconds * 2000))
    consumer = Consumer.from_settings(settings)
    client = pubsub_v1.SubscriberClient()
    path = settings.subscription_path
    done = 0
    began = time.monotonic()
    while time.monotonic() - began < seconds:
        response = client.pull(subscription=path, max_messages=1, timeout=5.0)
        for r in response.received_messages:
            event = decode(r.message.data)
            for target in consumer.catalog.targets(event):
                consumer.cache.apply([CacheOp.invalidate(target.cache_key.key,
                                                          target.version)])
            client.acknowledge(subscription=path, ack_ids=[r.ack_id])
            done += 1
    elapsed = time.monotonic() - began
    client.close()
    consumer.close()
    return done / elapsed


__all__ = ["drain", "naive", "threading"]
