"""Dead-letter tools: story and reason inference, filters, the superseded decision, replay
attributes, and scan/replay/purge over an in-memory hold subscription that behaves like Pub/Sub
(leases, release, redelivery)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest
from redis_spanner.consumers.dead_letter_replay import (
    Pacer,
    ReplayOptions,
    ReplayReport,
    Verdict,
    replay,
    replay_attributes,
    superseded,
)
from redis_spanner.consumers.dead_letter_scan import Scan, collect, purge
from redis_spanner.consumers.dead_letters import FORWARDED_REASON, DeadLetter, Filter, render_data
from redis_spanner.consumers.messages import Inbound
from redis_spanner.schemas.cache import Entry
from redis_spanner.schemas.catalog import DEMO
from redis_spanner.schemas.envelope import Event
from redis_spanner.schemas.errors import TransientError
from redis_spanner.schemas.events import EventType
from redis_spanner.schemas.keys import Catalog

from tests.fakes import MemoryCache

CATALOG = Catalog("rsc", DEMO)
STORY = {
    "dl_reason": "retries-exhausted",
    "dl_error_class": "RetriesExhausted",
    "dl_error": "still failing after 5 deliveries: redis unavailable",
    "dl_source_subscription": "projects/p/subscriptions/consumer",
    "dl_delivery_attempts": "5",
    "dl_first_failure_time": "2030-01-01T00:00:00.000+00:00",
    "dl_consumer_version": "0.1.0",
    "dl_original_message_id": "41",
}
FORWARDING = {
    "CloudPubSubDeadLetterSourceDeliveryCount": "5",
    "CloudPubSubDeadLetterSourceSubscription": "consumer",
    "CloudPubSubDeadLetterSourceSubscriptionProject": "p",
    "CloudPubSubDeadLetterSourceTopicPublishTime": "2030-01-01T00:00:00.000Z",
}


def event(n: int, version: int = 1_000, table: str = "Accounts",
          key: tuple[object, ...] = ("a",)) -> Event:
    return Event(f"0f8e2c1a-{n:04d}", EventType.ROW_CHANGED, table, key, version)  # type: ignore[arg-type]


def letter(message_id: str, ev: Event | None = None, story: Mapping[str, str] = STORY,
           data: bytes | None = None) -> Inbound:
    attributes = {**(ev.attributes() if ev else {}), **story}
    body = data if data is not None else (ev.encode() if ev else b"{not json")
    return Inbound(message_id, body, attributes, publish_time=1_000.0)


class MemoryHold:
    """A subscription as Pub/Sub runs it: each delivery has its own ack id, a released message
    goes to the back of the queue, and ``expire_on_pull`` makes every lease run out before each
    pull (the worst case for a pass that must see each message once)."""

    def __init__(self, messages: Sequence[Inbound], *, expire_on_pull: bool = False) -> None:
        self.available = list(messages)
        self.leased: dict[str, Inbound] = {}
        self.expire_on_pull = expire_on_pull
        self.pulls = 0
        self._ids = itertools.count()

    def pull(self, max_messages: int) -> list[tuple[str, Inbound]]:
        self.pulls += 1
        if self.expire_on_pull:
            self.available += self.leased.values()
            self.leased.clear()
        taken, self.available = self.available[:max_messages], self.available[max_messages:]
        out = [(f"{m.message_id}#{next(self._ids)}", m) for m in taken]
        self.leased.update(out)
        return out

    def ack(self, ack_ids: Sequence[str]) -> None:
        for ack_id in ack_ids:
            self.leased.pop(ack_id, None)  # a stale ack id is ignored, as on Pub/Sub

    def release(self, ack_ids: Sequence[str]) -> None:
        for ack_id in ack_ids:
            message = self.leased.pop(ack_id, None)
            if message is not None:
                self.available.append(message)

    @property
    def stored(self) -> list[str]:
        return sorted(m.message_id for m in [*self.available, *self.leased.values()])


class MemoryTopic:
    def __init__(self, fail_at: int = 0,
                 on_publish: Callable[[bytes, Mapping[str, str]], None] | None = None) -> None:
        self.published: list[tuple[bytes, dict[str, str]]] = []
        self.fail_at = fail_at
        self.on_publish = on_publish

    def publish(self, data: bytes, attributes: Mapping[str, str]) -> str:
        if len(self.published) + 1 == self.fail_at:
            raise TransientError("pubsub unavailable: publish gave up")
        self.published.append((data, dict(attributes)))
        if self.on_publish:
            self.on_publish(data, attributes)
        return str(len(self.published))


def test_reason_is_the_story_told_or_delivery_attempts_exceeded_when_pubsub_forwarded() -> None:
    """A dead letter the consumer published carries its reason and story; one Pub/Sub forwarded
    by itself has none and is read as delivery-attempts-exceeded, with its attempts, source and
    first failure taken from Pub/Sub's own attributes."""
    told = DeadLetter.of(letter("1", event(1)))
    assert (told.reason, told.forwarded, told.attempts) == ("retries-exhausted", False, 5)
    assert told.first_failure_time == STORY["dl_first_failure_time"]
    assert told.error == STORY["dl_error"]

    forwarded = DeadLetter.of(letter("2", event(2), story=FORWARDING))
    assert (forwarded.reason, forwarded.forwarded, forwarded.attempts) == (FORWARDED_REASON,
                                                                           True, 5)
    assert forwarded.source_subscription == "consumer"
    assert forwarded.first_failure_time == "2030-01-01T00:00:00.000Z"
    assert "after 5 delivery attempts" in forwarded.error

    bare = DeadLetter.of(letter("3", event(3), story={}))
    assert bare.reason == FORWARDED_REASON and bare.attempts is None


def test_undecodable_data_keeps_what_can_be_read_and_the_decode_error() -> None:
    """A body that is JSON but breaks the contract still shows its key; one that isn't JSON has
    no key; both keep the decode error."""
    invalid = DeadLetter.of(letter("1", data=b'{"key": ["x", 2], "type": "nope"}'))
    assert invalid.event is None and invalid.key == ["x", 2] and invalid.problem is not None
    garbage = DeadLetter.of(letter("2", data=b"\xff\x00"))
    assert garbage.key is None and garbage.event_id is None
    assert "DecodeError" in garbage.as_dict(now=1_010.0)["decode_error"]
    assert garbage.as_dict(now=1_010.0)["age_seconds"] == 10.0


def test_filter_matches_reason_type_and_message_or_event_id() -> None:
    """Empty filters match everything; --id matches the dead-letter message id or the event id;
    only reasons and ids count as naming dead letters explicitly."""
    a = DeadLetter.of(letter("m1", event(1)))
    b = DeadLetter.of(letter("m2", data=b"junk", story={**STORY, "dl_reason": "undecodable"}))
    assert Filter()(a) and Filter()(b) and not Filter().explicit
    assert [Filter(reasons=frozenset({"undecodable"}))(x) for x in (a, b)] == [False, True]
    assert [Filter(types=frozenset({"row.changed"}))(x) for x in (a, b)] == [True, False]
    assert Filter(ids=frozenset({"0f8e2c1a-0001"}))(a) and Filter(ids=frozenset({"m2"}))(b)
    assert not Filter(ids=frozenset({"m2"}))(a)
    assert Filter(ids=frozenset({"m2"})).explicit and not Filter(types=frozenset({"x"})).explicit


def test_replay_attributes_drop_the_story_and_pubsubs_own_and_count_replays() -> None:
    """A replay carries the original attributes only, plus replayed_from and an incremented
    replay_count; Pub/Sub's forwarding attributes and reserved goog* keys are dropped."""
    ev = event(1)
    attrs = {**ev.attributes(), **STORY, **FORWARDING, "googclient_x": "1", "replay_count": "2"}
    out = replay_attributes(DeadLetter.of(Inbound("77", ev.encode(), attrs)))
    assert out == {**ev.attributes(), "replayed_from": "77", "replay_count": "3"}
    first = replay_attributes(DeadLetter.of(Inbound("78", ev.encode(), {"replay_count": "x"})))
    assert first == {"replayed_from": "78", "replay_count": "1"}


def test_superseded_needs_every_key_at_the_events_version_or_newer() -> None:
    """An event on Teams maps to two keys: it is superseded only when Redis holds both at its
    version or a newer one; a missing or older entry on either means replay."""
    targets = CATALOG.targets(event(1, version=100, table="Teams", key=(7,)))
    team, members = (t.cache_key.key for t in targets)

    def at(t: int | None, m: int | None) -> dict[str, Entry | None]:
        return {team: Entry(t, True, None) if t else None,
                members: Entry(m, False, "[]") if m else None}

    assert superseded(targets, at(100, 250))
    assert not superseded(targets, at(100, None))
    assert not superseded(targets, at(99, 250))
    assert not superseded([], {})


def test_scan_yields_each_message_once_even_when_leases_run_out_and_releases_all() -> None:
    """Messages that come back within the pass (their lease ran out) are not yielded again, the
    pass ends when a pull brings nothing new, and every message is released at the end."""
    hold = MemoryHold([letter(str(n), event(n)) for n in range(5)], expire_on_pull=True)
    with Scan(hold, batch=3) as scan:
        seen = [dl.message_id for batch in scan for dl in batch]
    assert sorted(seen) == ["0", "1", "2", "3", "4"]
    assert not hold.leased and hold.stored == ["0", "1", "2", "3", "4"]


def test_collect_leaves_everything_in_place_and_stops_at_the_limit() -> None:
    """Listing consumes nothing, twice in a row gives the same answer, and a limit stops it."""
    hold = MemoryHold([letter(str(n), event(n)) for n in range(5)])
    first = [dl.message_id for dl in collect(hold, batch=2)]
    assert first == [dl.message_id for dl in collect(hold, batch=2)]
    assert sorted(first) == hold.stored == ["0", "1", "2", "3", "4"] and not hold.leased
    assert len(collect(hold, limit=2, batch=10)) == 2 and hold.stored == sorted(first)


def test_purge_acks_only_the_matching_ones() -> None:
    """Purge deletes what its filter names and releases the rest."""
    junk = {**STORY, "dl_reason": "undecodable"}
    hold = MemoryHold([letter("a", data=b"x", story=junk), letter("b", event(1)),
                       letter("c", data=b"y", story=junk)])
    report = purge(hold, Filter(reasons=frozenset({"undecodable"})))
    assert (report.purged, report.kept, report.error) == (2, 1, None)
    assert hold.stored == ["b"] and not hold.leased


def run(hold: MemoryHold, topic: MemoryTopic, cache: MemoryCache | None = None,
        **options: Any) -> ReplayReport:
    return replay(hold, topic, cache or MemoryCache(), CATALOG, ReplayOptions(**options),
                  batch=10)


def test_replay_republishes_then_acks_and_a_second_run_finds_nothing() -> None:
    """Each dead letter is republished with its original data and then acked; a second replay
    has nothing left to do."""
    hold = MemoryHold([letter(str(n), event(n, key=(f"a{n}",))) for n in range(3)])
    topic = MemoryTopic()
    report = run(hold, topic)
    assert report.counts[Verdict.REPLAYED] == 3 and hold.stored == []
    assert [data for data, _ in topic.published] == [event(n, key=(f"a{n}",)).encode()
                                                     for n in range(3)]
    again = run(hold, topic)
    assert again.as_dict()["replayed"] == 0 and len(topic.published) == 3


def test_a_failed_republish_stops_the_run_and_loses_nothing() -> None:
    """When the 2nd republish fails, the 1st dead letter is gone (it was republished), the 2nd
    and 3rd are still held for the next run, and the report says what failed."""
    hold = MemoryHold([letter(str(n), event(n, key=(f"a{n}",))) for n in range(3)])
    topic = MemoryTopic(fail_at=2)
    report = run(hold, topic)
    summary = report.as_dict()
    assert (summary["replayed"], summary["failed"]) == (1, 1) and "unavailable" in summary["error"]
    assert len(topic.published) == 1 and hold.stored == ["1", "2"] and not hold.leased


def test_superseded_events_are_kept_unless_dropping_is_asked() -> None:
    """An event whose key Redis holds at a newer version is reported and left in place; with
    drop_superseded it is acked without being republished."""
    cache = MemoryCache()
    [target] = CATALOG.targets(event(1, version=100))
    cache.entries[target.cache_key.key] = Entry(200, True, None)
    hold = MemoryHold([letter("old", event(1, version=100))])
    topic = MemoryTopic()
    kept = run(hold, topic, cache)
    assert kept.counts[Verdict.SUPERSEDED_KEPT] == 1 and hold.stored == ["old"]
    dropped = run(hold, topic, cache, drop_superseded=True)
    assert dropped.counts[Verdict.SUPERSEDED_DROPPED] == 1 and hold.stored == []
    assert topic.published == []


def test_undecodable_events_are_held_back_unless_named() -> None:
    """A dead letter that would fail again is not replayed by a plain run; named by reason it
    is replayed, and the report counts it as one that will come back."""
    junk = {**STORY, "dl_reason": "undecodable"}
    refused = event(2, table="Secrets", key=("x",))
    hold = MemoryHold([letter("bad", data=b"{", story=junk), letter("refused", refused)])
    topic = MemoryTopic()
    plain = run(hold, topic)
    assert plain.counts[Verdict.HELD_BACK] == 2 and hold.stored == ["bad", "refused"]
    named = run(hold, topic, where=Filter(reasons=frozenset({"undecodable"})))
    assert named.counts[Verdict.REPLAYED] == 1 and named.poison_replayed == 1
    assert named.counts[Verdict.SKIPPED] == 1 and hold.stored == ["refused"]
    assert topic.published == [(b"{", {"replayed_from": "bad", "replay_count": "1"})]


def test_dry_run_changes_nothing() -> None:
    """A dry run publishes nothing and acks nothing, whatever it would do."""
    cache = MemoryCache()
    [target] = CATALOG.targets(event(1, version=100))
    cache.entries[target.cache_key.key] = Entry(200, True, None)
    hold = MemoryHold([letter("old", event(1, version=100)), letter("new", event(2, key=("b",)))])
    topic = MemoryTopic()
    report = run(hold, topic, cache, dry_run=True, drop_superseded=True)
    summary = report.as_dict()
    assert (summary["replayed"], summary["superseded_dropped"], summary["dry_run"]) == (1, 1, True)
    assert topic.published == [] and hold.stored == ["new", "old"] and not hold.leased


def test_what_comes_back_during_a_replay_is_left_for_the_next_run() -> None:
    """A replayed poison message that the worker dead-letters again while the replay runs is
    not replayed a second time: the run ends instead of looping."""
    junk = {**STORY, "dl_reason": "undecodable"}
    hold = MemoryHold([letter("bad", data=b"{", story=junk)])
    back = itertools.count(1)

    def worker_dead_letters_it(data: bytes, attributes: Mapping[str, str]) -> None:
        hold.available.append(Inbound(f"back{next(back)}", data, {**attributes, **junk}))

    topic = MemoryTopic(on_publish=worker_dead_letters_it)
    report = run(hold, topic, where=Filter(reasons=frozenset({"undecodable"})))
    assert report.counts[Verdict.REPLAYED] == 1 and len(topic.published) == 1
    assert hold.stored == ["back1"]


def test_limit_caps_how_many_are_acted_on() -> None:
    """With a limit of 2, two dead letters are replayed and the rest stay."""
    hold = MemoryHold([letter(str(n), event(n, key=(f"a{n}",))) for n in range(5)])
    report = run(hold, MemoryTopic(), limit=2)
    assert report.counts[Verdict.REPLAYED] == 2 and len(hold.stored) == 3


def test_pacer_spaces_calls_at_the_rate() -> None:
    """At 4 per second, five calls take a second: the first goes at once."""
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    pacer = Pacer(4, clock=lambda: now[0], sleep=sleep)
    for _ in range(5):
        pacer.wait()
    assert now[0] == pytest.approx(1.0) and len(slept) == 4
    unlimited = Pacer(None, clock=lambda: 0.0, sleep=sleep)
    unlimited.wait()
    assert len(slept) == 4


def test_render_data_is_safe_for_any_bytes() -> None:
    """JSON is pretty-printed, other text is shown as a repr, binary as base64."""
    assert render_data(b'{"b":1,"a":[2]}') == ("json", '{\n  "a": [\n    2\n  ],\n  "b": 1\n}')
    assert render_data(b"\x1b[31mred") == ("text", "'\\x1b[31mred'")
    assert render_data(b"\xff\xfe") == ("base64", "//4=")
