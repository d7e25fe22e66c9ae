"""The heal loop on the real emulators and Redis: what Pub/Sub forwards to the heal topic is
applied, a forwarded letter that is poison ends in the dead-letter hold with its reason, and so
does one that keeps failing on its own, after ``REDIS_SPANNER_HEAL_MAX_ATTEMPTS``."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from google.cloud import pubsub_v1  # type: ignore[attr-defined]
from prometheus_client import REGISTRY
from pydantic import SecretStr
from redis_spanner.consumers.dead_letters import HEAL_ATTEMPTS, DeadLetter
from redis_spanner.consumers.pubsub import DEAD_LETTER_PREFIX, HoldSubscription, PullSubscription
from redis_spanner.consumers.worker import Consumer, PullWorker, healer
from redis_spanner.infra.cli.dlq import dlq_app
from redis_spanner.schemas.envelope import Event
from redis_spanner.schemas.events import EventType
from redis_spanner.schemas.keys import Catalog
from redis_spanner.schemas.settings import Settings
from typer.testing import CliRunner, Result

from tests.redis_servers import worker_acl
from tests.waiting import wait_until


def last_json(result: Result) -> Any:
    assert result.exit_code == 0, result.stderr + result.stdout
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_forwarded_events_are_applied_and_forwarded_poison_is_dead_lettered(
    provisioned: Settings, consumer: Consumer, cache: Any, catalog: Catalog, running: Any,
) -> None:
    """Letters on the heal topic, as Pub/Sub's dead-letter policy forwards them: an event is
    applied at its version and acked (it does not come back), and undecodable bytes go to the
    dead-letter hold as ``undecodable`` with their story, nothing else does."""
    heal = healer(provisioned, consumer)
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


# --- the bound ---------------------------------------------------------------------------

CONFINED = "heal-confined"
CONFINED_PASSWORD = "heal-confined-3f9a"


@dataclass
class Confined:
    """A heal loop whose Redis user may write the namespace's own keys and the accounts named
    ``fine-*``, and no other: every other account's write is refused with NOPERM, a transient
    failure to the core, while Redis answers everything else."""

    settings: Settings
    consumer: Consumer
    admin: redis.Redis

    def allow_every_key(self) -> None:
        self.admin.execute_command("ACL", "SETUSER", CONFINED, f"~{self.settings.namespace}:*")


@pytest.fixture
def confined(provisioned: Settings, redis_client: redis.Redis
             ) -> Iterator[Callable[[int], Confined]]:
    made: list[Consumer] = []

    def make(max_attempts: int) -> Confined:
        namespace = provisioned.namespace
        commands = [rule for rule in worker_acl(namespace) if not rule.startswith("~")]
        redis_client.execute_command("ACL", "SETUSER", CONFINED, "reset", "on",
                                     f">{CONFINED_PASSWORD}", f"~{namespace}:_*",
                                     f"~{namespace}:*{{Accounts:fine-*}}", *commands)
        url = provisioned.require_redis_url().replace(
            "redis://", f"redis://{CONFINED}:{CONFINED_PASSWORD}@", 1)
        settings = provisioned.model_copy(update={
            "redis_url": SecretStr(url), "heal_max_attempts": max_attempts,
            "retry_attempts": 1})
        consumer = Consumer.from_settings(settings)
        made.append(consumer)
        return Confined(settings, consumer, redis_client)

    yield make
    for consumer in made:
        consumer.close()
    redis_client.execute_command("ACL", "DELUSER", CONFINED)


def forwarded(provisioned: Settings, *accounts: str) -> list[Event]:
    """Events on the heal topic as Pub/Sub's dead-letter policy forwards them."""
    events = [Event(f"7d1c0b9e-0000-4000-8000-{n:012d}", EventType.ROW_CHANGED, "Accounts",
                    (account,), time.time_ns()) for n, account in enumerate(accounts, 100)]
    with pubsub_v1.PublisherClient() as publisher:
        for event in events:
            publisher.publish(provisioned.heal_topic_path, event.encode(), **event.attributes(),
                              CloudPubSubDeadLetterSourceDeliveryCount="5").result(timeout=30)
    return events


def heal_count(result: str) -> float:
    return REGISTRY.get_sample_value("redis_spanner_consumer_heal_attempts_total",
                                     {"result": result}) or 0.0


def tombstoned_at(cache: Any, catalog: Catalog, event: Event) -> bool:
    [entry] = cache.get([catalog.key(catalog.template("account"), list(event.key)).key])
    return entry is not None and entry.tombstone and entry.version == event.version


def settled(subscription: PullSubscription) -> bool:
    """Nothing left to deliver: what the heal loop holds leased is not delivered here, and it
    acks a delivery right after deciding it."""
    return not subscription.pull(timeout=2.0)


def test_a_letter_failing_on_its_own_is_held_after_the_bound_and_replays(
    provisioned: Settings, confined: Callable[[int], Confined], cache: Any, catalog: Catalog,
    running: Any, worker: PullWorker,
) -> None:
    """A forwarded event whose key Redis refuses (NOPERM, a transient failure to the core)
    while it takes every other write fails three heal attempts on its own, then lands in the
    dead-letter hold as ``heal-exhausted`` with the last error, its count, the heal
    subscription as its source and the deliveries before; counted once as exhausted and twice
    as requeued. The event forwarded beside it applies. Once the key is allowed, ``dlq replay``
    republishes it and the worker applies it: the hold ends empty and nothing cycles in the
    heal loop."""
    loop = confined(3)
    heal = healer(loop.settings, loop.consumer)
    requeued, exhausted = heal_count("requeued"), heal_count("exhausted")
    running(lambda stop: heal.run(stop, pull_timeout=1.0))
    stuck, fine = forwarded(provisioned, "stuck-1", "fine-1")

    hold = HoldSubscription(provisioned.dead_letter_subscription_path)
    try:
        [(ack_id, held)] = wait_until(lambda: hold.pull(max_messages=10), timeout=60)
        hold.release([ack_id])
    finally:
        hold.close()
    letter = DeadLetter.of(held)
    assert letter.reason == "heal-exhausted" and letter.event_id == stuck.event_id
    assert letter.error.startswith("gave up after 3 heal attempts: redis refused a write: ")
    assert "no permissions to access one of the keys" in letter.error  # NOPERM
    assert held.attributes[HEAL_ATTEMPTS] == "3"
    assert letter.source_subscription == provisioned.heal_subscription_path
    assert letter.attempts == 5 + 3
    # The heal loop counts the letter just after the hold has it: give it that moment.
    wait_until(lambda: heal_count("exhausted") > exhausted, timeout=10)
    assert (heal_count("requeued") - requeued, heal_count("exhausted") - exhausted) == (2, 1)
    assert tombstoned_at(cache, catalog, fine) and not tombstoned_at(cache, catalog, stuck)
    assert settled(heal.subscription)

    loop.allow_every_key()
    running(worker.run)
    summary = last_json(CliRunner().invoke(dlq_app, ["--wait", "0.5", "replay", "--json"]))
    assert (summary["replayed"], summary["failed"]) == (1, 0)
    wait_until(lambda: tombstoned_at(cache, catalog, stuck), timeout=60)
    hold = HoldSubscription(provisioned.dead_letter_subscription_path, wait=1.0)
    try:
        assert not hold.pull(max_messages=10)
    finally:
        hold.close()
    assert heal_count("exhausted") - exhausted == 1


def test_a_failure_that_recovers_before_the_bound_is_applied_and_nothing_is_held(
    provisioned: Settings, confined: Callable[[int], Confined], cache: Any, catalog: Catalog,
    running: Any,
) -> None:
    """The same refused key, allowed after two failed heal attempts of five: the event is
    applied by the heal loop, nothing reaches the dead-letter hold and nothing is left to heal."""
    loop = confined(5)
    heal = healer(loop.settings, loop.consumer)
    requeued, exhausted = heal_count("requeued"), heal_count("exhausted")
    running(lambda stop: heal.run(stop, pull_timeout=1.0))
    [stuck] = forwarded(provisioned, "stuck-2")
    wait_until(lambda: heal_count("requeued") - requeued >= 2, timeout=60)
    loop.allow_every_key()
    wait_until(lambda: tombstoned_at(cache, catalog, stuck), timeout=60)
    assert heal_count("requeued") - requeued < 5 and heal_count("exhausted") == exhausted
    assert settled(heal.subscription)
    hold = HoldSubscription(provisioned.dead_letter_subscription_path, wait=2.0)
    try:
        assert not hold.pull(max_messages=10)
    finally:
        hold.close()
