"""The consumer core's ack policy and batching, with in-memory adapters."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import REGISTRY
from redis_spanner.consumers import core
from redis_spanner.consumers.core import Processor
from redis_spanner.consumers.messages import Disposition, Inbound, Outcome
from redis_spanner.schemas.cache import Applied, CacheOp
from redis_spanner.schemas.catalog import DEMO
from redis_spanner.schemas.envelope import Event
from redis_spanner.schemas.errors import TransientError
from redis_spanner.schemas.events import EventType
from redis_spanner.schemas.keys import CacheKey, Catalog, KeyTarget
from redis_spanner.schemas.retrying import retrying

from tests.core_property import ANY_DELIVERY, check_delivery, events
from tests.fakes import MemoryCache, MemoryDeadLetters, MemoryRows

CATALOG = Catalog("rsc", DEMO)


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETRY_BACKOFF", "0")


def message(table: str, key: tuple[object, ...], version: int, n: int = 0,
            kind: EventType = EventType.ROW_CHANGED) -> Inbound:
    event = Event(f"0f8e2c1a-{n:04d}", kind, table, key, version)  # type: ignore[arg-type]
    return Inbound(f"m{n}", event.encode(), event.attributes())


def processor(cache: MemoryCache, rows: MemoryRows | None = None,
              dead: MemoryDeadLetters | None = None) -> Processor:
    return Processor(CATALOG, cache, rows or MemoryRows(), dead or MemoryDeadLetters(),
                     retry_attempts=3, retry_seconds=5)


def test_batch_is_one_round_trip_and_outcomes_keep_order() -> None:
    """A batch of events costs one cache round trip; outcomes line up with the batch."""
    cache = MemoryCache()
    batch = [message("Accounts", (f"a{i}",), 100 + i, i) for i in range(20)]
    outcomes = processor(cache).process(batch)
    assert cache.round_trips == 1
    assert [o.message for o in outcomes] == batch
    assert all(o.disposition is Disposition.ACK and o.changed for o in outcomes)


def test_superseded_event_is_acked_without_change() -> None:
    """An older event after a newer one is acked as a no-op (not retried)."""
    cache = MemoryCache()
    p = processor(cache)
    p.process([message("Accounts", ("a",), 200, 1)])
    [outcome] = p.process([message("Accounts", ("a",), 100, 2)])
    assert outcome.disposition is Disposition.ACK and not outcome.changed
    assert cache.entries["rsc:account:{Accounts:a}"].version == 200


def test_poison_messages_are_dead_lettered_and_acked_beside_good_ones() -> None:
    """Permanent errors go to the dead-letter sink at once; the good ones still apply."""
    cache, dead = MemoryCache(), MemoryDeadLetters()
    good = message("Accounts", ("a",), 100, 1)
    batch = [Inbound("bad1", b"{"), good, message("Secrets", ("x",), 5, 2)]
    outcomes = processor(cache, dead=dead).process(batch)
    assert [o.disposition for o in outcomes] == [Disposition.ACK] * 3
    assert [o.dead_letter_reason for o in outcomes] == ["undecodable", None, "key-refused"]
    assert [m.message_id for m, _ in dead.sent] == ["bad1", "m2"]
    assert "rsc:account:{Accounts:a}" in cache.entries


def test_dead_letter_publish_failure_nacks() -> None:
    """If the dead-letter topic can't take the message, it is nacked, never dropped."""
    dead = MemoryDeadLetters()
    dead.fail = True
    bad = Inbound("bad", b"nope")
    [outcome] = processor(MemoryCache(), dead=dead).process([bad])
    assert outcome.disposition is Disposition.NACK and outcome.message is bad
    assert isinstance(outcome.error, TransientError)
    assert str(outcome.error) == "dead-letter topic unavailable"


def test_transient_failure_is_retried_in_process_then_nacked() -> None:
    """A cache outage is retried within bounds; past them the batch is nacked, not acked."""
    cache = MemoryCache()
    cache.fail_next = 2
    [ok] = processor(cache).process([message("Accounts", ("a",), 100)])
    assert ok.disposition is Disposition.ACK and cache.round_trips == 3
    cache.fail_next = 10
    [failed] = processor(cache).process([message("Accounts", ("b",), 100)])
    assert failed.disposition is Disposition.NACK
    assert "rsc:account:{Accounts:b}" not in cache.entries


def test_rewarm_writes_the_snapshot_value_at_its_read_version() -> None:
    """Rewarm keys are read in one call and written with the snapshot's version."""
    cache, rows = MemoryCache(), MemoryRows(version=500)
    rows.values["rsc:team-members:{Teams:7}"] = [{"MemberId": "bob"}]
    batch = [message("Members", (7, "bob"), 300, 1), message("Members", (7, "amy"), 310, 2),
             message("Members", (8, "cy"), 320, 3)]
    processor(cache, rows).process(batch)
    assert len(rows.reads) == 1 and sorted(rows.reads[0]) == [
        "rsc:team-members:{Teams:7}", "rsc:team-members:{Teams:8}"]
    entry = cache.entries["rsc:team-members:{Teams:7}"]
    assert entry.version == 500 and entry.value() == [{"MemberId": "bob"}]


def test_rewarm_never_lowers_a_version() -> None:
    """A rewarm whose snapshot is older than the entry is refused by the guard."""
    cache, rows = MemoryCache(), MemoryRows(version=400)
    processor(cache, rows).process([message("Teams", (7,), 450, 1, EventType.ROW_DELETED)])
    processor(cache, rows).process([message("Members", (7, "x"), 300, 2)])
    assert cache.entries["rsc:team-members:{Teams:7}"].version == 450


def test_transient_failure_is_nacked_on_every_delivery_never_dead_lettered() -> None:
    """A transient failure is nacked on any delivery attempt, the last one included: it is
    never dead-lettered, so Pub/Sub forwards it to the heal topic and it is applied later."""
    cache, dead = MemoryCache(), MemoryDeadLetters()
    cache.fail_next = 100
    p = Processor(CATALOG, cache, MemoryRows(), dead, retry_attempts=2, retry_seconds=5)
    batch = [Inbound(m.message_id, m.data, m.attributes, delivery_attempt=attempt)
             for attempt, m in ((1, message("Accounts", ("a",), 100, 1)),
                                (5, message("Accounts", ("b",), 100, 2)),
                                (99, message("Accounts", ("c",), 100, 3)))]
    outcomes = p.process(batch)
    assert [o.disposition for o in outcomes] == [Disposition.NACK] * 3
    assert not dead.sent and not any(o.dead_letter_reason for o in outcomes)


def test_stop_ends_in_process_retries_at_once() -> None:
    """Once the stop event is set, a failing batch is not retried however large the retry
    budget: it is nacked after its one attempt."""
    cache = MemoryCache()
    cache.fail_next = 1000
    stop = threading.Event()
    stop.set()
    p = Processor(CATALOG, cache, MemoryRows(), MemoryDeadLetters(), retry_attempts=1000,
                  retry_seconds=3600, stop=stop)
    [outcome] = p.process([message("Accounts", ("a",), 100, 1)])
    assert outcome.disposition is Disposition.NACK
    assert cache.fail_next == 999


def test_a_value_with_no_cached_form_dead_letters_its_event_alone() -> None:
    """A rewarm whose Spanner value has no cached form tombstones that key and dead-letters
    the events that asked for it with ``uncacheable-value``; the rest of the batch applies."""
    import datetime as dt

    from redis_spanner.schemas.catalog import DEMO_REWARM

    cache, rows, dead = MemoryCache(), MemoryRows(version=500), MemoryDeadLetters()
    catalog = Catalog("rsc", DEMO_REWARM)
    bad, good = "rsc:account:{Accounts:bad}", "rsc:account:{Accounts:good}"
    rows.values = {bad: {"Owner": dt.timedelta(days=1)}, good: {"Owner": "o", "Balance": 1}}
    batch = [message("Accounts", ("bad",), 100, 1), message("Accounts", ("good",), 100, 2),
             message("Accounts", ("bad",), 90, 3)]
    outcomes = Processor(catalog, cache, rows, dead).process(batch)
    assert [o.dead_letter_reason for o in outcomes] == ["uncacheable-value", None,
                                                        "uncacheable-value"]
    assert all(o.disposition is Disposition.ACK for o in outcomes)
    assert [m.message_id for m, _ in dead.sent] == ["m1", "m3"]
    assert cache.entries[bad].tombstone and cache.entries[bad].version == 100
    assert cache.entries[good].value() == {"Owner": "o", "Balance": 1}


@ANY_DELIVERY
@given(data=st.data(), drawn=events)
def test_any_delivery_order_ends_at_the_newest_version(
    data: st.DataObject, drawn: list[tuple[tuple[str, tuple[object, ...]], EventType, int]]
) -> None:
    """Whatever the order, redelivery and batching of events: every message is acked, each
    key ends as a tombstone at its newest event's version, or as the snapshot's value when a
    rewarm was the newest word (ties between a rewarm and an invalidation of one version go
    to whichever landed first)."""
    check_delivery(MemoryCache(), data, drawn)


def test_an_unexpected_error_in_routing_dead_letters_that_message_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A message that trips a bug while being routed is dead-lettered with the error's type
    and text; the rest of its batch is applied as usual."""
    def broken(event: Event) -> list[KeyTarget]:
        if event.key == ("boom",):
            raise ZeroDivisionError("division by zero")
        return CATALOG.targets(event)

    cache, dead = MemoryCache(), MemoryDeadLetters()
    p = processor(cache, dead=dead)
    monkeypatch.setattr(p, "_catalog", type("C", (), {"targets": staticmethod(broken)})())
    bad, good = message("Accounts", ("boom",), 5, 1), message("Accounts", ("ok",), 5, 2)
    outcomes = p.process([bad, good])
    assert [(o.message, o.disposition, o.dead_letter_reason) for o in outcomes] == [
        (bad, Disposition.ACK, "permanent"), (good, Disposition.ACK, None)]
    [(sent, error)] = dead.sent
    assert sent is bad and str(error) == "unexpected ZeroDivisionError: division by zero"
    assert outcomes[0].error is error


def test_an_unexpected_error_in_the_write_nacks_the_batch_with_its_story() -> None:
    """A bug in the write path blames no message: each is nacked with a transient error
    naming the bug, and keeps its event."""
    class Broken(MemoryCache):
        def apply(self, ops: Sequence[CacheOp]) -> list[Applied]:
            raise KeyError("oops")

    batch = [message("Accounts", ("a",), 5, 1), message("Accounts", ("b",), 6, 2)]
    outcomes = processor(Broken()).process(batch)
    assert [(o.message, o.disposition) for o in outcomes] == [
        (m, Disposition.NACK) for m in batch]
    assert [o.event.key for o in outcomes if o.event] == [("a",), ("b",)]
    assert all(isinstance(o.error, TransientError)
               and str(o.error) == "unexpected KeyError: 'oops'" for o in outcomes)


def test_a_failed_batch_keeps_each_message_its_event_and_cause() -> None:
    """When the cache stays down, each nack carries its own message, its event and the
    cache's error."""
    cache = MemoryCache()
    cache.fail_next = 10
    batch = [message("Accounts", ("a",), 5, 1), message("Accounts", ("b",), 6, 2)]
    outcomes = processor(cache).process(batch)
    assert [o.message for o in outcomes] == batch
    assert [o.event.version for o in outcomes if o.event] == [5, 6]
    assert all(o.disposition is Disposition.NACK and o.dead_letter_reason is None
               and isinstance(o.error, TransientError)
               and str(o.error) == "memory cache told to fail" for o in outcomes)


def test_by_default_a_transient_failure_is_never_dead_lettered() -> None:
    """Without a max delivery attempts setting, even a first delivery that fails is nacked,
    and the default retry budget is four attempts."""
    cache, dead = MemoryCache(), MemoryDeadLetters()
    cache.fail_next = 100
    first = message("Accounts", ("a",), 5, 1)
    first = type(first)(first.message_id, first.data, first.attributes, delivery_attempt=1)
    [outcome] = Processor(CATALOG, cache, MemoryRows(), dead).process([first])
    assert outcome.disposition is Disposition.NACK and not dead.sent
    assert cache.round_trips == 4


def test_acked_outcomes_carry_their_event_and_whether_they_changed_the_cache() -> None:
    """An applied event's outcome names its event and ``changed``; a superseded one in the
    same batch reports no change of its own key."""
    cache = MemoryCache()
    cache.apply([CacheOp.invalidate("rsc:account:{Accounts:old}", 50)])
    batch = [message("Accounts", ("new",), 5, 1), message("Accounts", ("old",), 6, 2)]
    outcomes = processor(cache).process(batch)
    assert [(o.event.event_id if o.event else None, o.changed) for o in outcomes] == [
        ("0f8e2c1a-0001", True), ("0f8e2c1a-0002", False)]


def test_the_observer_sees_every_outcome_and_coalescing_is_counted() -> None:
    """The observer gets the batch's outcomes; folded writes add up across batches."""
    seen: list[list[Outcome]] = []
    p = Processor(CATALOG, MemoryCache(), MemoryRows(), MemoryDeadLetters(),
                  observer=seen.append)
    assert p.coalesced == 0
    first = p.process([message("Accounts", ("a",), 5, 1), message("Accounts", ("a",), 6, 2)])
    p.process([message("Accounts", ("a",), 7, 3), message("Accounts", ("a",), 8, 4)])
    assert seen[0] == first and len(seen) == 2
    assert p.coalesced == 2


def test_crash_points_surround_the_cache_write(monkeypatch: pytest.MonkeyPatch) -> None:
    """The failpoints a fault test kills the worker at come just before and just after the
    cache write."""
    calls: list[str] = []

    class Recording(MemoryCache):
        def apply(self, ops: Sequence[CacheOp]) -> list[Applied]:
            calls.append("apply")
            return super().apply(ops)

    monkeypatch.setattr(core, "failpoint", calls.append)
    processor(Recording()).process([message("Accounts", ("a",), 5)])
    assert calls == ["consumer.before_apply", "apply", "consumer.after_apply"]


def test_an_unreadable_snapshot_turns_rewarms_into_invalidations() -> None:
    """When Spanner can't be read, each rewarm key is invalidated at its event's version and
    counted as a fallback; the batch is still acked."""
    class Down(MemoryRows):
        def read(self, keys: Sequence[CacheKey]) -> tuple[dict[str, Any], int]:
            raise TransientError("spanner down")

    cache = MemoryCache()
    before = REGISTRY.get_sample_value("redis_spanner_consumer_rewarm_fallbacks_total") or 0.0
    outcomes = processor(cache, Down()).process([message("Members", (7, "x"), 300, 1)])
    assert outcomes[0].disposition is Disposition.ACK and outcomes[0].changed
    entry = cache.entries["rsc:team-members:{Teams:7}"]
    assert entry.tombstone and entry.version == 300
    after = REGISTRY.get_sample_value("redis_spanner_consumer_rewarm_fallbacks_total")
    assert after == before + 1


def test_a_snapshot_at_exactly_the_events_version_is_written() -> None:
    """A rewarm whose snapshot is read at the event's own version writes the value."""
    cache, rows = MemoryCache(), MemoryRows(version=300)
    rows.values["rsc:team-members:{Teams:7}"] = [{"MemberId": "x"}]
    processor(cache, rows).process([message("Members", (7, "x"), 300, 1)])
    entry = cache.entries["rsc:team-members:{Teams:7}"]
    assert not entry.tombstone and entry.version == 300


def test_retry_budgets_of_the_write_and_of_the_rewarm_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Cache writes are retried within the processor's budget (by default 4 attempts in
    5 s); the Spanner read of a rewarm within 3 attempts in 1 s; both end when the
    processor's stop event is set."""
    budgets: list[tuple[int, float, threading.Event | None]] = []
    real = retrying

    def recording(attempts: int, seconds: float, *,
                  until: threading.Event | None = None, **hooks: Any) -> Any:
        budgets.append((attempts, seconds, until))
        return real(attempts, seconds, until=until, **hooks)

    monkeypatch.setattr(core, "retrying", recording)
    stop = threading.Event()
    p = Processor(CATALOG, MemoryCache(), MemoryRows(version=400), MemoryDeadLetters(),
                  stop=stop)
    p.process([message("Members", (7, "x"), 300, 1)])
    assert budgets == [(4, 5.0, stop), (3, 1.0, stop)]

