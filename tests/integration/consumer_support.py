"""Run relay and worker for a test against a Redis of its choosing, record every outcome, and
keep a steady stream of events flowing."""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from redis_spanner.consumers.messages import Disposition, Outcome
from redis_spanner.consumers.pubsub import PullSubscription
from redis_spanner.consumers.readthrough import ReadThrough
from redis_spanner.consumers.redis_cache import RedisCache
from redis_spanner.consumers.spanner_rows import SpannerRows
from redis_spanner.consumers.worker import Consumer, PullWorker
from redis_spanner.infra.demo.workload import bump, seed_accounts
from redis_spanner.producers.runner import build_relay
from redis_spanner.schemas.errors import TransientError
from redis_spanner.schemas.keys import Catalog
from redis_spanner.schemas.settings import Settings

from tests.waiting import wait_until


class Ledger:
    """Every outcome the worker decided."""

    def __init__(self) -> None:
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()

    def observe(self, outcomes: list[Outcome]) -> None:
        with self._lock:
            self.outcomes.extend(outcomes)

    def counts(self) -> Counter[str]:
        """Outcomes by kind: applied (acked), dead-lettered (acked with a reason), nacked."""
        with self._lock:
            return Counter("nacked" if o.disposition is Disposition.NACK
                           else "dead-lettered" if o.dead_letter_reason else "applied"
                           for o in self.outcomes)

    def events(self) -> set[str]:
        """The distinct events applied."""
        with self._lock:
            return {o.event.event_id for o in self.outcomes
                    if o.event and o.disposition is Disposition.ACK and not o.dead_letter_reason}


def start_pipeline(settings: Settings, running: Callable[[Any], None], ledger: Ledger
                   ) -> Consumer:
    """A relay and a two-stream pull worker in the ``running`` fixture's threads; the worker's
    outcomes go to ``ledger``. The caller closes the returned consumer."""
    relay, _ = build_relay(settings)
    running(relay.run)
    consumer = Consumer.from_settings(settings, observer=ledger.observe)
    worker = PullWorker(PullSubscription(settings.subscription_path), consumer.processor,
                        streams=2)
    running(lambda stop: worker.run(stop, pull_timeout=1.0))
    return consumer


class SteadyRun:
    """A relay and a worker apply a steady stream of events: a writer thread commits changes to
    ``ids`` round-robin, with read-through fills racing the invalidations, until ``finish``."""

    def __init__(self, settings: Settings, database: Any, catalog: Catalog,
                 running: Callable[[Any], None], ids: list[str]) -> None:
        self.ids = ids
        self.cache = RedisCache.from_settings(settings)
        seed_accounts(database, ids)
        self.rows = SpannerRows(database)
        self.reader = ReadThrough(catalog, self.cache, self.rows)
        self.reader.get_many([self.reader.key("account", i) for i in ids])
        self.ledger = Ledger()
        self.consumer = start_pipeline(settings, running, self.ledger)
        self.written: list[str] = []
        self._database = database
        self._stop = threading.Event()
        running(self._write)

    def _write(self, ended: threading.Event) -> None:
        n = 0
        while not (self._stop.is_set() or ended.is_set()):
            self.written.append(bump(self._database, self.ids[n % len(self.ids)], 1))
            if n % 4 == 0:
                with contextlib.suppress(TransientError):  # a node may be down for a moment
                    self.reader.get("account", self.ids[(n * 7) % len(self.ids)])
            n += 1

    def applied(self) -> int:
        return len(self.ledger.events())

    def finish(self, timeout: float = 120) -> None:
        """Stop writing and wait until every committed event was applied."""
        self._stop.set()
        wait_until(lambda: self.applied() == len(set(self.written)) + len(self.ids),
                   timeout=timeout)

    def close(self) -> None:
        self._stop.set()
        self.consumer.close()
        self.cache.client.close()
