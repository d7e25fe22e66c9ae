"""The pull worker: several synchronous-pull loops feeding the core, acking what it decided."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis_spanner.consumers.core import Processor
from redis_spanner.consumers.messages import BatchProcessor, Disposition, Inbound, Outcome
from redis_spanner.consumers.pubsub import DeadLetterPublisher, PullSubscription
from redis_spanner.consumers.redis_cache import RedisCache
from redis_spanner.consumers.spanner_rows import SpannerRows, open_database
from redis_spanner.schemas.catalog import load_catalog
from redis_spanner.schemas.errors import TransientError
from redis_spanner.schemas.keys import Catalog
from redis_spanner.schemas.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Consumer:
    """Everything a worker, push endpoint or cache tool needs, built once from settings."""

    processor: Processor
    cache: RedisCache
    dead_letters: DeadLetterPublisher
    catalog: Catalog
    database: Any
    rows: SpannerRows

    @classmethod
    def from_settings(
        cls, settings: Settings, observer: Callable[[list[Outcome]], None] | None = None
    ) -> Consumer:
        cache = RedisCache.from_settings(settings)
        dead_letters = DeadLetterPublisher(
            settings.dead_letter_topic_path, settings.subscription_path
        )
        catalog = load_catalog(settings.catalog, settings.namespace)
        database = open_database(settings)
        rows = SpannerRows(database)
        processor = Processor(
            catalog,
            cache,
            rows,
            dead_letters,
            retry_attempts=settings.retry_attempts,
            retry_seconds=settings.retry_seconds,
            max_delivery_attempts=settings.max_delivery_attempts,
            observer=observer,
        )
        return cls(processor, cache, dead_letters, catalog, database, rows)

    def close(self) -> None:
        self.dead_letters.close()
        self.cache.client.close()


class PullWorker:
    def __init__(
        self, subscription: PullSubscription, processor: BatchProcessor, *, streams: int = 2
    ) -> None:
        self._subscription = subscription
        self._processor = processor
        self._streams = streams

    def run(self, stop: threading.Event, pull_timeout: float = 2.0) -> None:
        """Run ``streams`` pull loops until ``stop`` is set."""
        threads = [
            threading.Thread(
                target=self._loop, args=(stop, pull_timeout), name=f"pull-{n}", daemon=True
            )
            for n in range(self._streams)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _loop(self, stop: threading.Event, pull_timeout: float) -> None:
        failures = 0
        while not stop.is_set():
            try:
                received = self._subscription.pull(timeout=pull_timeout)
                failures = 0
            except TransientError as e:
                failures += 1
                log.warning("pull failed (%s); retrying", e)
                stop.wait(min(0.1 * 2**failures, 10.0))
                continue
            if received:
                self.handle(received)

    def handle(self, received: list[tuple[str, Inbound]]) -> list[Outcome]:
        """Process one pulled batch and settle it: outcomes come back in the batch's order."""
        outcomes = self._processor.process([message for _, message in received])
        acks: list[str] = []
        nacks: list[str] = []
        for (ack_id, _), outcome in zip(received, outcomes, strict=True):
            (acks if outcome.disposition is Disposition.ACK else nacks).append(ack_id)
        for send, ids in ((self._subscription.ack, acks), (self._subscription.nack, nacks)):
            try:
                send(ids)
            except TransientError as e:  # unacked messages come back after their deadline
                log.warning("could not settle %d message(s): %s", len(ids), e)
        return outcomes
