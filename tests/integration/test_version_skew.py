"""A forged far-future event can't pin a key: pull, push and replay all refuse it at decode.

The emulators and redis-server are real; events are published as a writer in another
language could publish them."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from google.cloud import pubsub_v1  # type: ignore[attr-defined]
from redis_spanner.consumers.dead_letter_scan import collect
from redis_spanner.consumers.dead_letters import DeadLetter
from redis_spanner.consumers.pubsub import HoldSubscription
from redis_spanner.consumers.push import create_app
from redis_spanner.consumers.worker import Consumer, PullWorker
from redis_spanner.infra.cli.dlq import dlq_app
from redis_spanner.schemas.envelope import Event
from redis_spanner.schemas.events import EventType
from redis_spanner.schemas.keys import Catalog
from redis_spanner.schemas.settings import Settings
from typer.testing import CliRunner

from tests.waiting import wait_until

HOUR = 3_600_000_000_000
LAST_TIMESTAMP = 253_402_300_799_999_999_999  # 9999-12-31T23:59:59.999999999Z


def _event(account: str, version: int) -> Event:
    return Event(str(uuid.uuid4()), EventType.ROW_CHANGED, "Accounts", (account,), version)


def _publish(settings: Settings, *events: Event) -> None:
    publisher = pubsub_v1.PublisherClient()
    for e in events:
        publisher.publish(settings.topic_path, e.encode(), **e.attributes()).result(timeout=30)
    publisher.stop()


def _held(settings: Settings, count: int) -> dict[str, str]:
    """Event id -> dead-letter reason, once the hold subscription has ``count`` letters."""
    hold = HoldSubscription(settings.dead_letter_subscription_path, wait=0.5)

    def enough() -> list[DeadLetter] | None:
        found = collect(hold)
        return found if len(found) >= count else None

    try:
        letters = wait_until(enough, timeout=60)
        return {str(letter.event_id): letter.reason for letter in letters}
    finally:
        hold.close()


def _refused_then_honoured(settings: Settings, cache: Any, catalog: Catalog) -> None:
    """Far-future events on one key, a genuine one before and one after: the forged ones are
    dead-lettered as version-ahead, and the key follows the genuine events."""
    key = catalog.key(catalog.template("account"), ["skew-1"]).key
    now = time.time_ns()
    forged = [_event("skew-1", version)  # two hours ahead, a day ahead, the last instant
              for version in (now + 2 * HOUR, now + 24 * HOUR, LAST_TIMESTAMP)]
    before = _event("skew-1", now - HOUR)
    _publish(settings, before, *forged)
    held = _held(settings, len(forged))
    assert held == {e.event_id: "version-ahead" for e in forged}
    wait_until(lambda: (e := cache.get([key])[0]) is not None and e.version == before.version)
    after = _event("skew-1", time.time_ns())
    _publish(settings, after)
    entry = wait_until(lambda: (e := cache.get([key])[0]) is not None
                       and e.version == after.version and e, timeout=30)
    assert entry.tombstone


def test_pull_worker_refuses_far_future_versions_and_keeps_caching_the_key(
    provisioned: Settings, cache: Any, catalog: Catalog, running: Any, worker: PullWorker,
) -> None:
    """Through the pull worker, events beyond the skew are dead-lettered with their reason
    and the key keeps taking genuine writes; replay holds the forged letters back."""
    running(worker.run)
    _refused_then_honoured(provisioned, cache, catalog)
    replayed = CliRunner().invoke(dlq_app, ["--wait", "0.5", "replay", "--json"])
    assert replayed.exit_code == 0, replayed.stdout
    assert '"held_back": 3' in replayed.stdout and '"replayed": 0' in replayed.stdout
    assert replayed.stderr.count("held back") == 4  # three letters and the summary
    assert replayed.stderr.count("VersionAhead: commit_ts") == 3


@pytest.fixture
def endpoint(consumer: Consumer) -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = create_app(consumer.processor, verifier=None)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started)
    yield f"http://127.0.0.1:{port}/push"
    server.should_exit = True
    thread.join(timeout=10)


def test_push_endpoint_refuses_far_future_versions_and_keeps_caching_the_key(
    provisioned: Settings, endpoint: str, cache: Any, catalog: Catalog,
) -> None:
    """Through the push endpoint, the same: forged versions dead-lettered, the key alive."""
    subscriber = pubsub_v1.SubscriberClient()
    push_path = subscriber.subscription_path(provisioned.project, f"push-{provisioned.topic}")
    subscriber.create_subscription(name=push_path, topic=provisioned.topic_path,
                                   push_config={"push_endpoint": endpoint})
    try:
        _refused_then_honoured(provisioned, cache, catalog)
    finally:
        subscriber.delete_subscription(subscription=push_path)
        subscriber.close()
