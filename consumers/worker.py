"""The pull worker: several synchronous-pull loops feeding the core, acking what it decided.

Healing. A transient failure is never dead-lettered by the core; once Pub/Sub has delivered a
message max_delivery_attempts times, its dead-letter policy forwards it to the **heal topic**
(not to the dead-letter topic, which holds only what can never succeed). Every worker also
drains the heal subscription (``healer``) with the same core: a letter that applies is acked, one
that still fails transiently is released and the heal loop backs off (up to ``HEAL_PAUSE_MAX``
seconds) before it pulls again, so it retries about that often while the outage lasts, and
applies everything within that long of recovery. A letter that turns out to be poison is
dead-lettered with its reason like any other, and one that keeps failing on its own while Redis
takes writes goes to the dead-letter hold after ``REDIS_SPANNER_HEAL_MAX_ATTEMPTS``
(``redis_spanner.consumers.heal``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis_spanner.consumers import field_crypto, metrics
from redis_spanner.consumers.acks import ACK_DELAY, AckSender
from redis_spanner.consumers.core import Processor
from redis_spanner.consumers.heal import Healer, probe_writes
from redis_spanner.consumers.messages import BatchProcessor, Disposition, Inbound, Outcome
from redis_spanner.consumers.pubsub import (
    WORKER_CALL_SECONDS,
    DeadLetterPublisher,
    EventsTopic,
    PullSubscription,
)
from redis_spanner.consumers.redis_cache import RedisCache
from redis_spanner.consumers.spanner_rows import SpannerRows, open_database
from redis_spanner.schemas.catalog import load_catalog
from redis_spanner.schemas.errors import TransientError
from redis_spanner.schemas.keys import Catalog
from redis_spanner.schemas.settings import Settings

log = logging.getLogger(__name__)

HEAL_PAUSE_MAX = 10.0
SAFE_EVICTION = frozenset({"allkeys-lru", "allkeys-lfu", "noeviction"})
"""Policies that never prefer tombstones: ``volatile-*`` policies pick among keys with a TTL,
and every tombstone has a short one (``volatile-ttl`` evicts them first); ``allkeys-random``
evicts a fresh tombstone as readily as a cold value."""


@dataclass
class Consumer:
    """Everything a worker, push endpoint or cache tool needs, built once from settings."""

    processor: Processor
    cache: RedisCache
    dead_letters: DeadLetterPublisher
    catalog: Catalog
    database: Any
    rows: SpannerRows
    heal_topic: EventsTopic

    @classmethod
    def from_settings(
        cls, settings: Settings, observer: Callable[[list[Outcome]], None] | None = None,
        stop: threading.Event | None = None,
    ) -> Consumer:
        """``stop``, when given, ends the core's retries as soon as it is set."""
        catalog = load_catalog(settings.catalog, settings.namespace)
        cache = RedisCache.from_settings(settings, field_crypto.from_settings(settings, catalog))
        dead_letters = DeadLetterPublisher(
            settings.dead_letter_topic_path, settings.subscription_path,
            redact=catalog.sensitive_columns,
        )
        database = open_database(settings)
        rows = SpannerRows(database)
        processor = Processor(
            catalog,
            cache,
            rows,
            dead_letters,
            retry_attempts=settings.retry_attempts,
            retry_seconds=settings.retry_seconds,
            max_version_skew_seconds=settings.max_version_skew_seconds,
            observer=observer,
            stop=stop,
        )
        return cls(processor, cache, dead_letters, catalog, database, rows,
                   EventsTopic(settings.heal_topic_path))

    def close(self) -> None:
        self.dead_letters.close()
        self.heal_topic.close()
        self.cache.client.close()


def warn_if_unsafe_eviction(cache: RedisCache) -> None:
    """One warning when Redis may evict tombstones before values (see ``SAFE_EVICTION``)."""
    try:
        policy = cache.eviction_policy()
    except TransientError as e:
        log.info("could not check maxmemory-policy: %s", e)
        return
    if policy is None:
        log.info("could not read maxmemory-policy from %r (CONFIG GET refused): make sure it "
                 "is allkeys-lru, allkeys-lfu or noeviction", cache)
    elif policy not in SAFE_EVICTION:
        log.warning("redis maxmemory-policy is %s on %r: it can evict tombstones before values, "
                    "so a slow fill may cache a stale value; use allkeys-lru (or allkeys-lfu, "
                    "noeviction)", policy, cache)


def healer(settings: Settings, consumer: Consumer,
           processor: BatchProcessor | None = None) -> PullWorker:
    """The heal loop: one pull loop on the heal subscription that backs off while the letters
    it pulls still fail, feeding ``processor`` (the consumer's own when not given) through a
    ``Healer``."""
    subscription = PullSubscription(settings.heal_subscription_path,
                                    max_messages=settings.worker_batch)
    heal = Healer(processor or consumer.processor, consumer.catalog, consumer.heal_topic,
                  consumer.dead_letters, probe_writes(consumer.cache, settings.namespace),
                  max_attempts=settings.heal_max_attempts,
                  source=settings.heal_subscription_path)
    return PullWorker(subscription, heal, streams=1, nack_pause=HEAL_PAUSE_MAX)


class PullWorker:
    """``streams`` pull loops on one subscription. With ``nack_pause``, a loop whose batch did
    not all apply (some nacked, or requeued by the heal loop) waits before its next pull: 1 s,
    doubling up to ``nack_pause`` seconds. While ``run`` runs, the loops' acks go out together
    (``redis_spanner.consumers.acks``), at most ``ack_delay`` seconds after their batch was
    decided, and all of them before ``run`` returns; with ``ack_delay`` 0 each loop acks its
    own batch before pulling again."""

    def __init__(
        self, subscription: PullSubscription, processor: BatchProcessor, *, streams: int = 2,
        nack_pause: float = 0.0, ack_delay: float = ACK_DELAY,
    ) -> None:
        self._subscription = subscription
        self._processor = processor
        self._streams = streams
        self._nack_pause = nack_pause
        self._ack_delay = ack_delay
        self._acks: AckSender | None = None
        self._threads: list[threading.Thread] = []
        self._stop: threading.Event | None = None

    @property
    def subscription(self) -> PullSubscription:
        return self._subscription

    def dead_loops(self) -> list[str]:
        """Pull loops that ended without being asked to stop (for the health check)."""
        stopping = self._stop is not None and self._stop.is_set()
        return [] if stopping else [t.name for t in self._threads if not t.is_alive()]

    def run(self, stop: threading.Event, pull_timeout: float = 2.0) -> None:
        """Run ``streams`` pull loops until ``stop`` is set."""
        log.info("pulling %s with %d loop(s)", self._subscription.path, self._streams)
        threads = [
            threading.Thread(
                target=self._loop, args=(stop, pull_timeout), name=f"pull-{n}", daemon=True
            )
            for n in range(self._streams)
        ]
        self._threads, self._stop = threads, stop
        if self._ack_delay > 0:
            self._acks = AckSender(self._subscription.ack, delay=self._ack_delay).start()
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        finally:
            acks, self._acks = self._acks, None
            if acks is not None:
                acks.close(WORKER_CALL_SECONDS)

    def _loop(self, stop: threading.Event, pull_timeout: float) -> None:
        failures = 0
        pause = 0.0
        while not stop.is_set():
            try:
                with metrics.timed("pubsub", "pull"):
                    received = self._subscription.pull(timeout=pull_timeout)
                failures = 0
            except TransientError as e:
                failures += 1
                metrics.retried(e)
                log.warning("pull failed (%s); retrying", e)
                stop.wait(min(0.1 * 2**failures, 10.0))
                continue
            if not received:
                continue
            outcomes = self.handle(received)
            if self._nack_pause and any(_not_applied(o) for o in outcomes):
                pause = min(max(1.0, pause * 2), self._nack_pause)
                stop.wait(pause)
            else:
                pause = 0.0

    def handle(self, received: list[tuple[str, Inbound]]) -> list[Outcome]:
        """Process one pulled batch and settle it (while ``run`` runs, its acks go to the ack
        sender): outcomes come back in the batch's order."""
        outcomes = self._processor.process([message for _, message in received])
        acks: list[str] = []
        nacks: list[str] = []
        for (ack_id, _), outcome in zip(received, outcomes, strict=True):
            (acks if outcome.disposition is Disposition.ACK else nacks).append(ack_id)
        sender = self._acks
        if sender is not None:
            sender.add(acks)
            acks = []
        for send, ids, name in ((self._subscription.ack, acks, "ack"),
                                (self._subscription.nack, nacks, "nack")):
            if not ids:
                continue
            try:
                with metrics.timed("pubsub", name):
                    send(ids)
            except TransientError as e:  # unacked messages come back after their deadline
                log.warning("could not settle %d message(s): %s", len(ids), e)
        return outcomes


def _not_applied(outcome: Outcome) -> bool:
    return (outcome.disposition is Disposition.NACK
            or isinstance(outcome.error, TransientError))
