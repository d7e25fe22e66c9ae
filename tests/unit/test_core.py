"""The consumer core's ack policy and batching, with in-memory adapters."""

from __future__ import annotations

import threading

import pytest
from redis_spanner.consumers.core import Processor
from redis_spanner.consumers.messages import Disposition, Inbound
from redis_spanner.schemas.catalog import DEMO
from redis_spanner.schemas.envelope import Event
from redis_spanner.schemas.events import EventType
from redis_spanner.schemas.keys import Catalog

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
    [outcome] = processor(MemoryCache(), dead=dead).process([Inbound("bad", b"nope")])
    assert outcome.disposition is Disposition.NACK


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
