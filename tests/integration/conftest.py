"""Fixtures for the pipeline's integration tests: provisioned resources and real adapters."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from google.cloud import pubsub_v1  # type: ignore[attr-defined]
from redis_spanner.consumers.pubsub import PullSubscription
from redis_spanner.consumers.redis_cache import RedisCache
from redis_spanner.consumers.worker import Consumer, PullWorker
from redis_spanner.infra.provision.run import provision, teardown
from redis_spanner.infra.spanner.ddl import DEMO_SCHEMA_PATH
from redis_spanner.producers.spanner import open_database
from redis_spanner.schemas.catalog import load_catalog
from redis_spanner.schemas.keys import Catalog
from redis_spanner.schemas.settings import Settings


@pytest.fixture
def provisioned(settings: Settings) -> Iterator[Settings]:
    """This test's topics, subscriptions and database (with the demo's tables), deleted
    afterwards."""
    provision(settings, ddl=[DEMO_SCHEMA_PATH])
    yield settings
    teardown(settings)


@pytest.fixture
def database(provisioned: Settings) -> Any:
    return open_database(provisioned)


@pytest.fixture
def catalog(settings: Settings) -> Catalog:
    return load_catalog(settings.catalog, settings.namespace)


@pytest.fixture
def redis_client(settings: Settings) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(settings.require_redis_url(), decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def cache(settings: Settings) -> RedisCache:
    return RedisCache.from_settings(settings)


@pytest.fixture
def running(provisioned: Settings) -> Iterator[Callable[[Callable[[threading.Event], None]],
                                                        None]]:
    """Start loops (relay, worker) in threads; all are stopped and joined after the test."""
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def start(loop: Callable[[threading.Event], None]) -> None:
        thread = threading.Thread(target=loop, args=(stop,), daemon=True)
        thread.start()
        threads.append(thread)

    yield start
    stop.set()
    for thread in threads:
        thread.join(timeout=30)


@pytest.fixture
def consumer(provisioned: Settings) -> Iterator[Consumer]:
    built = Consumer.from_settings(provisioned)
    yield built
    built.close()


@pytest.fixture
def worker(provisioned: Settings, consumer: Consumer) -> PullWorker:
    return PullWorker(
        PullSubscription(provisioned.subscription_path), consumer.processor, streams=2
    )


@pytest.fixture
def received(provisioned: Settings) -> Iterator[Callable[[], set[str]]]:
    """Event ids of the messages on the test's subscription so far (pulled and acked)."""
    subscriber = pubsub_v1.SubscriberClient()
    seen: set[str] = set()

    def pull() -> set[str]:
        response = subscriber.pull(request={"subscription": provisioned.subscription_path,
                                            "max_messages": 100}, timeout=10)
        if response.received_messages:
            subscriber.acknowledge(subscription=provisioned.subscription_path,
                                   ack_ids=[m.ack_id for m in response.received_messages])
        seen.update(m.message.attributes["event_id"] for m in response.received_messages)
        return seen

    yield pull
    subscriber.close()
