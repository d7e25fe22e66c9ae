"""The worker's acks go out together, and all of them before ``run`` returns: a message it
decided never comes back, even when its ack was still waiting for others to go with it."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence

from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1  # type: ignore[attr-defined]
from redis_spanner.consumers.messages import Inbound, Outcome
from redis_spanner.consumers.pubsub import PullSubscription
from redis_spanner.consumers.worker import Consumer, PullWorker
from redis_spanner.infra.bench.stack import publish_events
from redis_spanner.schemas.settings import Settings

from tests.waiting import wait_until

EVENTS = 300


class Recording(PullSubscription):
    """Remembers the ack id of every message it pulled, and the ack calls it made."""

    def __init__(self, path: str) -> None:
        super().__init__(path, max_messages=1000)
        self.pulled: list[str] = []
        self.ack_calls: list[int] = []

    def pull(self, timeout: float | None = None,
             max_messages: int | None = None) -> list[tuple[str, Inbound]]:
        received = super().pull(timeout, max_messages)
        self.pulled += [ack_id for ack_id, _ in received]
        return received

    def ack(self, ack_ids: Sequence[str]) -> None:
        self.ack_calls.append(len(ack_ids))
        super().ack(ack_ids)


def test_acks_waiting_for_company_are_sent_when_the_worker_stops(
        provisioned: Settings) -> None:
    publish_events(provisioned, EVENTS)
    decided: list[Outcome] = []
    consumer = Consumer.from_settings(provisioned, observer=decided.extend)
    subscription = Recording(provisioned.subscription_path)
    # Acks wait 60 s for company and 300 never fill a request: only the stop sends them.
    worker = PullWorker(subscription, consumer.processor, streams=2, ack_delay=60.0)
    stop = threading.Event()
    loop = threading.Thread(target=worker.run, args=(stop, 1.0), daemon=True)
    loop.start()
    try:
        wait_until(lambda: len(decided) >= EVENTS, timeout=60)
        assert subscription.ack_calls == [], "acks went out before the stop"
    finally:
        stop.set()
        loop.join(30)
        consumer.close()
    assert not loop.is_alive()
    assert all(o.disposition == "ack" for o in decided)
    assert sum(subscription.ack_calls) == len(subscription.pulled)

    # Release every message the worker pulled: one whose ack did not reach Pub/Sub would be
    # delivered again at once.
    client = pubsub_v1.SubscriberClient()
    try:
        for start in range(0, len(subscription.pulled), 1000):
            with contextlib.suppress(gexc.InvalidArgument):  # ids of acked messages
                client.modify_ack_deadline(subscription=provisioned.subscription_path,
                                           ack_ids=subscription.pulled[start:start + 1000],
                                           ack_deadline_seconds=0)
        again = client.pull(subscription=provisioned.subscription_path, max_messages=100,
                            timeout=5.0, return_immediately=True).received_messages
    finally:
        client.close()
    assert list(again) == []
