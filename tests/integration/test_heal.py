"""The heal loop on the real emulators and Redis: what Pub/Sub forwards to the heal topic is
applied, and a forwarded letter that is poison ends in the dead-letter hold with its reason."""

from __future__ import annotations

import time
from typing import Any

from google.cloud import pubsub_v1  # type: ignore[attr-defined]
from redis_spanner.consumers.dead_letters import DeadLetter
from redis_spanner.consumers.pubsub import DEAD_LETTER_PREFIX, HoldSubscription
from redis_spanner.consumers.worker import Consumer, healer
from redis_spanner.schemas.envelope import Event
from redis_spanner.schemas.events import EventType
from redis_spanner.schemas.keys import Catalog
from redis_spanner.schemas.settings import Settings

from tests.waiting import wait_until


def test_forwarded_events_are_applied_and_forwarded_poison_is_dead_lettered(
    provisioned: Settings, consumer: Consumer, cache: Any, catalog: Catalog, running: Any,
) -> None:
    """Letters on the heal topic, as Pub/Sub's dead-letter policy forwards them: an event is
    applied at its version and acked (it does not come back), and undecodable bytes go to the
    dead-letter hold as ``undecodable`` with their story, nothing else does."""
    heal = healer(provisioned, consumer.processor)
    running(lambda stop: heal.run(stop, pull_timeout=1.0))
    event = Event("7d1c0b9e-0000-4000-8000-000000000001", EventType.ROW_CHANGED, "Accounts",
                  ("healed-1",), time.time_ns())
    forwarded = {"CloudPubSubDeadLetterSourceDeliveryCount": "5"}
    with pubsub_v1.PublisherClient() as publisher:
        for data, attributes in ((event.encode(), {**event.attributes(), **forwarded}),
                                 (b"\x00not an envelope", forwarded)):
            publisher.publish(provisioned.heal_topic_path, data, **attributes).result(timeout=30)

    key = catalog.key(catalog.template("account"), ["healed-1"]).key
    found = wait_until(lambda: cache.get([key])[0], timeout=30)
    assert found.tombstone and found.version == event.version

    hold = HoldSubscription(provisioned.dead_letter_subscription_path)
    try:
        held = wait_until(lambda: hold.pull(max_messages=10), timeout=30)
        [(ack_id, letter)] = held
        assert letter.data == b"\x00not an envelope"
        assert letter.attributes[DEAD_LETTER_PREFIX + "reason"] == "undecodable"
        assert DeadLetter.of(letter).reason == "undecodable"
        hold.ack([ack_id])
    finally:
        hold.close()
    time.sleep(2)  # nothing comes back to the heal loop: both letters were acked there
    again = heal.subscription.pull(timeout=1.0)
    assert not again, again
