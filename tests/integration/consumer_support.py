"""Run relay and worker for a test against a Redis of its choosing, and record every outcome."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from redis_spanner.consumers.messages import Disposition, Outcome
from redis_spanner.consumers.pubsub import PullSubscription
from redis_spanner.consumers.worker import Consumer, PullWorker
from redis_spanner.producers.runner import build_relay
from redis_spanner.schemas.settings import Settings


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
