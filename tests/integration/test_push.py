"""The push endpoint behind a real Pub/Sub emulator push subscription."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from google.cloud import pubsub_v1  # type: ignore[attr-defined]
from redis_spanner.consumers.push import create_app
from redis_spanner.consumers.worker import Consumer
from redis_spanner.schemas.envelope import Event
from redis_spanner.schemas.events import EventType
from redis_spanner.schemas.keys import Catalog
from redis_spanner.schemas.settings import Settings

from tests.waiting import wait_until


@pytest.fixture
def endpoint(consumer: Consumer) -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = create_app(consumer.processor, verifier=None)  # the emulator sends no token
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started)
    yield f"http://127.0.0.1:{port}/push"
    server.should_exit = True
    thread.join(timeout=10)


def test_pushed_events_reach_redis_and_poison_is_dead_lettered(
    provisioned: Settings, endpoint: str, consumer: Consumer, catalog: Catalog, cache: Any,
) -> None:
    """Pub/Sub pushes each message to the endpoint: good events are applied and acked (204),
    a malformed one is published to the dead-letter topic and acked, not retried forever."""
    subscriber = pubsub_v1.SubscriberClient()
    push_path = subscriber.subscription_path(provisioned.project, f"push-{provisioned.topic}")
    subscriber.create_subscription(name=push_path, topic=provisioned.topic_path,
                                   push_config={"push_endpoint": endpoint})
    publisher = pubsub_v1.PublisherClient()
    events = [Event(f"0f8e2c1a-9{n:03d}", EventType.ROW_CHANGED, "Accounts", (f"p-{n}",),
                    1_700_000_000_000_000_000 + n) for n in range(20)]
    for event in events:
        publisher.publish(provisioned.topic_path, event.encode(), **event.attributes())
    publisher.publish(provisioned.topic_path, b"\x00 not an envelope").result()
    keys = [catalog.key(catalog.template("account"), [f"p-{n}"]).key for n in range(20)]
    entries = wait_until(lambda: all(e := cache.get(keys)) and e, timeout=30)
    assert [e.version for e in entries] == [e.version for e in events]

    def dead_letters() -> list[Any]:
        response = subscriber.pull(subscription=provisioned.dead_letter_subscription_path,
                                   max_messages=10, timeout=5)
        return list(response.received_messages)

    [dead] = wait_until(dead_letters, timeout=30)
    assert dead.message.data == b"\x00 not an envelope"
    assert dead.message.attributes["dl_reason"] == "undecodable"
    subscriber.delete_subscription(subscription=push_path)
