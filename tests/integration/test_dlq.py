"""``redis-spanner dlq`` on the real emulators and Redis: dead letters put there the way the
system does it (the worker dead-letters poison, the consumer's publisher tells a story,
Pub/Sub forwards), then listed, shown, replayed and purged."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from google.cloud import pubsub_v1  # type: ignore[attr-defined]
from redis_spanner.consumers.dead_letter_replay import ReplayOptions, replay
from redis_spanner.consumers.dead_letter_scan import collect
from redis_spanner.consumers.dead_letters import DeadLetter
from redis_spanner.consumers.messages import Inbound
from redis_spanner.consumers.pubsub import (
    DeadLetterPublisher,
    EventsTopic,
    HoldSubscription,
    PullSubscription,
)
from redis_spanner.consumers.redis_cache import RedisCache
from redis_spanner.consumers.worker import PullWorker
from redis_spanner.infra.cli.dlq import dlq_app
from redis_spanner.schemas.cache import CacheOp
from redis_spanner.schemas.envelope import Event
from redis_spanner.schemas.errors import (
    DecodeError,
    PermanentError,
    RetriesExhausted,
    TransientError,
)
from redis_spanner.schemas.events import EventType
from redis_spanner.schemas.keys import Catalog
from redis_spanner.schemas.settings import Settings, get_settings
from typer.testing import CliRunner, Result

from tests.waiting import wait_until

VERSION = 1_700_000_000_000_000_000


def event(n: int, version: int = VERSION) -> Event:
    return Event(f"5d1c9e2b-{n:04d}", EventType.ROW_CHANGED, "Accounts", (f"d-{n}",), version)


@pytest.fixture
def hold(provisioned: Settings) -> Iterator[HoldSubscription]:
    subscription = HoldSubscription(provisioned.dead_letter_subscription_path, wait=0.5)
    yield subscription
    subscription.close()


@pytest.fixture
def dead_letter(provisioned: Settings) -> Iterator[Callable[..., None]]:
    """Dead-letter a message as the consumer does, with its story."""
    publisher = DeadLetterPublisher(provisioned.dead_letter_topic_path,
                                    provisioned.subscription_path)

    def send(data: bytes, attributes: Mapping[str, str], error: PermanentError) -> None:
        publisher.send(Inbound(f"orig-{abs(hash(data))}", data, attributes), error)

    yield send
    publisher.close()


def listed(hold: HoldSubscription) -> dict[str, DeadLetter]:
    return {letter.message_id: letter for letter in collect(hold)}


def cli(*args: str) -> Result:
    return CliRunner().invoke(dlq_app, ["--wait", "0.5", *args])


def last_json(result: Result) -> Any:
    assert result.exit_code == 0, result.stderr + result.stdout
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_list_shows_every_dead_letter_leaves_them_in_place_and_show_finds_one(
    provisioned: Settings, hold: HoldSubscription, dead_letter: Callable[..., None],
    running: Any, worker: PullWorker,
) -> None:
    """Poison the worker dead-lettered, an event the consumer gave up on and one Pub/Sub
    forwarded are all listed with their reasons; listing twice shows the same, since a listing
    consumes nothing; show finds one by event id, shows the decode error of another, and exits
    1 for an unknown id."""
    publisher = pubsub_v1.PublisherClient()
    publisher.publish(provisioned.topic_path, b"{not json", event_id="poison-0001").result()
    running(worker.run)
    gave_up = event(1)
    dead_letter(gave_up.encode(), gave_up.attributes(), RetriesExhausted("redis unavailable"))
    forwarded = event(2)
    publisher.publish(provisioned.dead_letter_topic_path, forwarded.encode(),
                      **forwarded.attributes(), CloudPubSubDeadLetterSourceDeliveryCount="5",
                      CloudPubSubDeadLetterSourceSubscription=provisioned.subscription).result()
    wait_until(lambda: len(listed(hold)) == 3)

    first, second = last_json(cli("list", "--json")), last_json(cli("list", "--json"))
    assert sorted(d["message_id"] for d in first) == sorted(d["message_id"] for d in second)
    by_reason = {d["reason"]: d for d in first}
    assert set(by_reason) == {"undecodable", "retries-exhausted", "delivery-attempts-exceeded"}
    assert by_reason["retries-exhausted"]["event_id"] == gave_up.event_id
    assert by_reason["delivery-attempts-exceeded"]["attempts"] == 5
    assert by_reason["undecodable"]["source_subscription"] == provisioned.subscription_path
    assert len(listed(hold)) == 3

    shown = cli("show", gave_up.event_id)
    assert shown.exit_code == 0 and "dl_reason" in shown.stdout and '"d-1"' in shown.stdout
    unmatched = cli("list", "--reason", "no-such-reason", "--json")
    assert unmatched.exit_code == 0 and json.loads(unmatched.stdout) == []
    assert "no dead letter in" in unmatched.stderr and "--reason no-such-reason" in unmatched.stderr
    poison = cli("show", by_reason["undecodable"]["message_id"])
    assert "decode error: DecodeError" in poison.stdout and "'{not json'" in poison.stdout
    assert cli("show", "no-such-id").exit_code == 1


def test_replay_reaches_redis_empties_the_hold_and_a_second_replay_is_harmless(
    provisioned: Settings, hold: HoldSubscription, dead_letter: Callable[..., None],
    cache: RedisCache, catalog: Catalog, running: Any, worker: PullWorker,
) -> None:
    """Replayed events reach Redis at their versions and leave the hold subscription; poison is
    held back until named, then comes back to the dead-letter topic with its replay count; a
    second replay republishes nothing."""
    events = [event(n) for n in range(2)]
    for e in events:
        dead_letter(e.encode(), e.attributes(), RetriesExhausted("redis unavailable"))
    dead_letter(b"\xffjunk", {}, DecodeError("not a JSON envelope"))
    running(worker.run)

    summary = last_json(cli("replay", "--json"))
    assert (summary["replayed"], summary["held_back"], summary["failed"]) == (2, 1, 0)
    keys = [catalog.targets(e)[0].cache_key.key for e in events]

    def versions() -> list[int | None]:
        return [entry.version if entry else None for entry in cache.get(keys)]

    wait_until(lambda: versions() == [e.version for e in events])
    [poison] = listed(hold).values()
    assert poison.reason == "undecodable"

    again = last_json(cli("replay", "--json"))
    assert (again["replayed"], again["held_back"]) == (0, 1)

    named = last_json(cli("replay", "--reason", "undecodable", "--json"))
    assert (named["replayed"], named["poison_replayed"]) == (1, 1)
    back = wait_until(lambda: [d for d in listed(hold).values() if d.message_id !=
                               poison.message_id])
    assert back[0].replay_count == 1 and back[0].attributes["replayed_from"] == poison.message_id


def test_superseded_event_is_reported_and_acked_unpublished_only_with_drop_superseded(
    provisioned: Settings, hold: HoldSubscription, dead_letter: Callable[..., None],
    cache: RedisCache, catalog: Catalog,
) -> None:
    """An event older than what Redis holds is reported as superseded and left in place; with
    --drop-superseded it is acked and nothing is published to the events topic."""
    old = event(1, version=VERSION)
    key = catalog.targets(old)[0].cache_key.key
    cache.apply([CacheOp.invalidate(key, VERSION + 10)])
    dead_letter(old.encode(), old.attributes(), RetriesExhausted("redis unavailable"))

    kept = last_json(cli("replay", "--json"))
    assert (kept["superseded_kept"], kept["replayed"]) == (1, 0)
    assert len(wait_until(lambda: listed(hold))) == 1

    dropped = last_json(cli("replay", "--drop-superseded", "--json"))
    assert (dropped["superseded_dropped"], dropped["replayed"]) == (1, 0)
    assert listed(hold) == {}
    events = PullSubscription(provisioned.subscription_path)
    assert events.pull(timeout=1) == []
    events.close()
    assert cache.get([key])[0].version == VERSION + 10  # type: ignore[union-attr]


class FailingAt:
    """The events topic, except that the n-th publish fails as an outage would."""

    def __init__(self, topic: EventsTopic, n: int) -> None:
        self._topic, self._n, self.calls = topic, n, 0

    def publish(self, data: bytes, attributes: Mapping[str, str]) -> str:
        self.calls += 1
        if self.calls == self._n:
            raise TransientError("pubsub unavailable: publish gave up")
        return self._topic.publish(data, attributes)


def test_replay_failing_midway_loses_nothing(
    provisioned: Settings, hold: HoldSubscription, dead_letter: Callable[..., None],
    cache: RedisCache, catalog: Catalog, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """When the 2nd republish fails, only the 1st dead letter is gone (and it is on the events
    topic); the others are still in the hold subscription. A replay whose events topic does
    not exist fails with one line and exit 2, and everything stays."""
    events = [event(n) for n in range(3)]
    for e in events:
        dead_letter(e.encode(), e.attributes(), RetriesExhausted("redis unavailable"))
    wait_until(lambda: len(listed(hold)) == 3)
    topic = EventsTopic(provisioned.topic_path)
    report = replay(hold, FailingAt(topic, 2), cache, catalog, ReplayOptions())
    topic.close()
    assert (report.as_dict()["replayed"], report.as_dict()["failed"]) == (1, 1)
    remaining = {d.event_id for d in listed(hold).values()}
    assert len(remaining) == 2
    events_sub = PullSubscription(provisioned.subscription_path)
    [(_, republished)] = events_sub.pull(timeout=5)
    events_sub.close()
    assert republished.attributes["event_id"] not in remaining

    monkeypatch.setenv("REDIS_SPANNER_TOPIC", "no-such-topic")
    get_settings.cache_clear()
    failed = cli("replay")
    assert failed.exit_code == 2 and "does not exist" in failed.stderr
    assert "Traceback" not in failed.output
    assert {d.event_id for d in listed(hold).values()} == remaining


def test_purge_refuses_without_yes_and_then_removes_only_matching_ones(
    provisioned: Settings, hold: HoldSubscription, dead_letter: Callable[..., None],
) -> None:
    """Without --yes purge deletes nothing and exits 2; with it, only the matching dead
    letters go."""
    for n in range(2):
        dead_letter(b"junk %d" % n, {}, DecodeError("not a JSON envelope"))
    keep = event(1)
    dead_letter(keep.encode(), keep.attributes(), RetriesExhausted("redis unavailable"))
    wait_until(lambda: len(listed(hold)) == 3)

    refused = cli("purge", "--reason", "undecodable")
    assert refused.exit_code == 2 and "--yes" in refused.stderr
    assert len(listed(hold)) == 3
    done = cli("purge", "--reason", "undecodable", "--yes")
    assert done.exit_code == 0 and "purged 2" in done.stdout
    assert [d.event_id for d in listed(hold).values()] == [keep.event_id]


def test_pubsub_outage_is_one_line_on_stderr_and_exit_1(monkeypatch: pytest.MonkeyPatch) -> None:
    """With Pub/Sub unreachable, list fails within its timeout with one line naming the
    address, no traceback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", f"127.0.0.1:{port}")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(dlq_app, ["--timeout", "1", "list"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1
    assert result.stderr.startswith("error: cannot reach the Pub/Sub emulator")
    assert f"127.0.0.1:{port}" in result.stderr and result.stderr.count("\n") == 1
    assert "Traceback" not in result.output


def test_replay_killed_between_republish_and_ack_loses_nothing(
    provisioned: Settings, hold: HoldSubscription, dead_letter: Callable[..., None],
) -> None:
    """A replay SIGKILLed after Pub/Sub took a republish but before the ack leaves every dead
    letter in the hold subscription (they come back when their leases run out); the one in
    flight is on the events topic too, so the next replay publishes it at most once more."""
    subscriber = pubsub_v1.SubscriberClient()
    subscriber.update_subscription(request={
        "subscription": {"name": provisioned.dead_letter_subscription_path,
                         "ack_deadline_seconds": 10},
        "update_mask": {"paths": ["ack_deadline_seconds"]},
    })
    subscriber.close()
    events = [event(n) for n in range(3)]
    for e in events:
        dead_letter(e.encode(), e.attributes(), RetriesExhausted("redis unavailable"))
    env = {**os.environ, "REDIS_SPANNER_FAILPOINTS": "dlq.after_republish=kill"}
    crashed = subprocess.run(
        [sys.executable, "-c",
         "from redis_spanner.infra.cli.dlq import dlq_app; dlq_app()", "replay"],
        env=env, timeout=60, capture_output=True, text=True,
    )
    assert crashed.returncode == -9, crashed.stderr[-2000:]

    def all_back() -> set[str | None]:
        ids = {d.event_id for d in listed(hold).values()}
        return ids if len(ids) == 3 else set()

    assert wait_until(all_back, timeout=30, interval=1) == {e.event_id for e in events}
    events_sub = PullSubscription(provisioned.subscription_path)
    assert len(events_sub.pull(timeout=5)) == 1
    events_sub.close()


def test_letters_without_attributes_nested_or_over_4_mib_are_listed_and_found(
    provisioned: Settings, hold: HoldSubscription,
) -> None:
    """The hold subscription can hold anything: a letter that names its event only in its
    body, a dead letter of a dead letter (Pub/Sub forwarded a letter the tools print), and
    letters whose pull is over gRPC's default 4 MiB receive limit on the emulator. All are
    listed in one pass and found by event id; nothing wedges the tool."""
    publisher = pubsub_v1.PublisherClient()
    bare_id, inner_id = "0a0b0c0d-1111-4000-8000-000000000001", "0a0b0c0d-2222-4000-8000-0002"
    bare = json.dumps({"event_id": bare_id, "type": "row.changed", "table": "Accounts",
                       "key": ["d-9"], "commit_ts": "yesterday"}).encode()
    nested = json.dumps({"message_id": "7", "event_id": inner_id, "reason": "undecodable",
                         "data": {"format": "text", "text": "'{broken'"}}).encode()
    big = [json.dumps({"event_id": f"0a0b0c0d-{n:04d}-big", "pad": "x" * size}).encode()
           for n, size in enumerate((3 << 20, 3 << 20, 5 << 20))]
    futures = [publisher.publish(provisioned.dead_letter_topic_path, bare),
               publisher.publish(provisioned.dead_letter_topic_path, nested,
                                 CloudPubSubDeadLetterSourceDeliveryCount="5",
                                 dl_reason="retries-exhausted")]
    futures += [publisher.publish(provisioned.dead_letter_topic_path, data) for data in big]
    for future in futures:
        future.result(timeout=60)

    def all_five() -> dict[str, DeadLetter] | None:
        letters = listed(hold)
        return letters if len(letters) == 5 else None

    found = wait_until(all_five, timeout=60, interval=0.5)
    assert {d.event_id for d in found.values()} >= {bare_id, inner_id, "0a0b0c0d-0002-big"}
    assert max(len(d.data) for d in found.values()) > 5 << 20
    for ident, reason in ((bare_id, "delivery-attempts-exceeded"),
                          (inner_id, "retries-exhausted")):
        shown = cli("show", ident, "--json")
        assert shown.exit_code == 0, shown.stderr
        [letter] = json.loads(shown.stdout)
        assert (letter["event_id"], letter["reason"]) == (ident, reason)
    listing = cli("list", "--json")
    assert listing.exit_code == 0, listing.stderr
    assert len(json.loads(listing.stdout)) == 5
