"""The consumer core's ack policy and batching, with in-memory adapters."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis_spanner.consumers.core import Processor
from redis_spanner.consumers.messages import Disposition, Inbound
from redis_spanner.schemas.catalog import DEMO
from redis_spanner.schemas.envelope import Event
from redis_spanner.schemas.events import EventType
from redis_spanner.schemas.keys import Catalog

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


def test_last_delivery_attempt_dead_letters_with_the_cause() -> None:
    """A transient failure on the final delivery attempt is dead-lettered with its story and
    acked, instead of being nacked into Pub/Sub's own forwarding without one."""
    cache, dead = MemoryCache(), MemoryDeadLetters()
    cache.fail_next = 100
    p = Processor(CATALOG, cache, MemoryRows(), dead, retry_attempts=2, retry_seconds=5,
                  max_delivery_attempts=5)
    early = message("Accounts", ("a",), 100, 1)
    last = message("Accounts", ("a",), 100, 2)
    early = type(early)(early.message_id, early.data, early.attributes, delivery_attempt=4)
    last = type(last)(last.message_id, last.data, last.attributes, delivery_attempt=5)
    outcomes = p.process([early, last])
    assert [o.disposition for o in outcomes] == [Disposition.NACK, Disposition.ACK]
    assert outcomes[1].dead_letter_reason == "retries-exhausted"
    [(sent, error)] = dead.sent
    assert sent.message_id == "m2" and "memory cache told to fail" in str(error)


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
