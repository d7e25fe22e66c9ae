"""The consumer's throughput: the worker draining a backlog, against a naive consumer; and its
two floors here: the core's own CPU per event, and Spanner's batched reads for rewarms."""

from __future__ import annotations

import threading
import time

from google.cloud import pubsub_v1  # type: ignore[attr-defined]
from redis_spanner.consumers.messages import Inbound, Outcome
from redis_spanner.consumers.pubsub import PullSubscription
from redis_spanner.consumers.worker import Consumer, PullWorker
from redis_spanner.infra.bench.stack import (
    Counter,
    Rate,
    account_id,
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


PULLED = 100
"""Messages the Pub/Sub emulator returns per synchronous pull, whatever is asked."""


def core(settings: Settings, events: int) -> Rate:
    """The core alone (decode, route, the guarded Redis writes, metrics) on one thread, over
    ``events`` messages pulled up front, in batches as the emulator's pulls bring them: its
    CPU per event is what one interpreter spends beyond the pull and the ack."""
    publish_events(settings, events)
    subscription = PullSubscription(settings.subscription_path, max_messages=1000)
    pulled: list[Inbound] = []
    while len(pulled) < events:
        pulled += [message for _, message in subscription.pull(timeout=5.0)]
    subscription.close()
    consumer = Consumer.from_settings(settings)
    settle_heap()
    began, cpu = time.monotonic(), time.process_time()
    for start in range(0, len(pulled), PULLED):
        consumer.processor.process(pulled[start:start + PULLED])
    elapsed, cpu = time.monotonic() - began, time.process_time() - cpu
    consumer.close()
    return Rate(len(pulled) / elapsed, cpu / len(pulled) * 1e6)


def rewarm_read(settings: Settings, events: int) -> float:
    """Rows per second the rewarm's batched Spanner reads alone go through, ``PULLED`` keys
    to a read as in a rewarm batch: the Spanner side's limit on rewarming."""
    seed_accounts(settings, events)
    consumer = Consumer.from_settings(settings)
    template = consumer.catalog.template("account")
    keys = [consumer.catalog.key(template, [account_id(i)]) for i in range(events)]
    began = time.monotonic()
    for start in range(0, events, PULLED):
        consumer.rows.read(keys[start:start + PULLED])
    elapsed = time.monotonic() - began
    consumer.close()
    return events / elapsed


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
