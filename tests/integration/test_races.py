"""The coherence races, provoked on purpose on the real emulators and Redis.

Most tests hold one side of a race at a chosen point (a reader between its Spanner read and its
fill, a consumer between its rewarm read and its write), let the other side win, then let the
first one finish, and check that the version guard refused the loser. Another replays real
events duplicated and shuffled through the consumer core. Writers, readers and the pipeline
running at once are in test_concurrency; the read-through clients' own races are in
test_read_through, which runs them against both clients.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from redis_spanner.consumers.core import Processor
from redis_spanner.consumers.messages import Disposition, Inbound
from redis_spanner.consumers.readthrough import ReadThrough
from redis_spanner.consumers.redis_cache import RedisCache
from redis_spanner.consumers.spanner_rows import SpannerRows
from redis_spanner.consumers.verify import Verdict, compare
from redis_spanner.consumers.worker import PullWorker
from redis_spanner.producers.outbox_store import SpannerOutbox
from redis_spanner.schemas.cache import CacheOp
from redis_spanner.schemas.envelope import Event
from redis_spanner.schemas.events import EventType
from redis_spanner.schemas.keys import Catalog
from redis_spanner.schemas.settings import Settings

from tests.fakes import MemoryDeadLetters
from tests.integration.race_support import (
    ContendedDatabase,
    HeldRows,
    InThread,
    Running,
    account_value,
    entry_of,
    members_value,
    start_pipeline,
    wait_for_version,
    write_account,
    write_team,
)

# --- 1. a slow fill against an invalidation ------------------------------------------------


def test_fill_read_before_a_commit_is_refused_once_the_commit_is_invalidated(
    provisioned: Settings, database: Any, catalog: Catalog, cache: RedisCache,
    worker: PullWorker, running: Running,
) -> None:
    """A reader that read at R, before a commit at C > R, arrives with its fill after the
    invalidation at C landed: the guard refuses it, and the next read-through serves the new
    value. Property: a fill can never bring back a value older than a landed tombstone."""
    key = catalog.key(catalog.template("account"), ["slow-1"])
    _, seeded = write_account(database, "slow-1", 1)
    start_pipeline(running, provisioned, worker)
    wait_for_version(cache, key, seeded)

    values, read_at = SpannerRows(database).read([key])
    assert values[key.key] == account_value("slow-1", 1)
    _, committed = write_account(database, "slow-1", 2)
    assert committed > read_at
    landed = wait_for_version(cache, key, committed)
    assert landed.tombstone and landed.version == committed

    [late] = cache.apply([CacheOp.set(key.key, read_at, values[key.key])])
    assert not late.applied and late.previous == committed
    [read] = ReadThrough(catalog, cache, SpannerRows(database)).get_many([key])
    assert read.value == account_value("slow-1", 2) and read.filled
    assert read.version > committed


# --- 2. a rewarm against a newer invalidation ----------------------------------------------


def test_rewarm_read_before_a_newer_commit_is_refused_by_its_tombstone(
    provisioned: Settings, database: Any, catalog: Catalog, cache: RedisCache,
    worker: PullWorker, running: Running,
) -> None:
    """A consumer rewarming the derived team-members key reads at R1 and stalls; a member is
    removed at C2 > R1 and that invalidation lands; the stalled rewarm's write is then refused
    and its event acked as superseded. Property: a rewarm of a derived key never overwrites a
    newer tombstone with the list it read before the commit."""
    team = 7
    key = catalog.key(catalog.template("team-members"), [team])
    _, created = write_team(database, team, {"m1": "owner"}, create=True)
    start_pipeline(running, provisioned, worker)
    assert not wait_for_version(cache, key, created).tombstone

    [added_id], added = write_team(database, team, {"m2": "member"})
    warmed = wait_for_version(cache, key, added)
    assert warmed.value() == members_value({"m1": "owner", "m2": "member"})

    # The same event, delivered again to a second consumer instance that stalls after its read.
    event = Event(added_id, EventType.ROW_CHANGED, "Members", (team, "m2"), added)
    redelivered = Inbound("redelivered", event.encode(), event.attributes(), delivery_attempt=2)
    held = HeldRows(SpannerRows(database))
    dead = MemoryDeadLetters()
    second = Processor(catalog, cache, held, dead, retry_attempts=1)
    stalled = InThread(lambda: second.process([redelivered]))
    try:
        assert held.has_read.wait(20), "the rewarm never reached Spanner"
        assert held.read_version is not None and held.read_version >= added
        _, removed = write_team(database, team, delete=["m1"])
        assert removed > held.read_version
        wait_for_version(cache, key, removed)
    finally:
        held.release.set()
    [outcome] = stalled.result()

    assert outcome.disposition is Disposition.ACK and not outcome.changed and not dead.sent
    found = entry_of(cache, key)
    assert found is not None and found.tombstone and found.version == removed
    [checked] = compare([key], cache, SpannerRows(database))
    assert checked.verdict is Verdict.TOMBSTONE
    [read] = ReadThrough(catalog, cache, SpannerRows(database)).get_many([key])
    assert read.value == members_value({"m2": "member"}) and read.filled


# --- 3. duplicates and reordering through the real Processor -------------------------------


def test_duplicated_and_shuffled_events_leave_exactly_the_newest_version(
    provisioned: Settings, database: Any, catalog: Catalog, cache: RedisCache,
) -> None:
    """Real outbox events for an invalidated row and a rewarmed derived key, each delivered
    three times, shuffled across batches of random size while more commits arrive. After
    every batch no version went back; after each round the row's tombstone is exactly its
    newest commit and the member list is at least as new as its newest commit (a tombstone,
    or the current list). Property: delivery order and duplicates don't matter."""
    rng = random.Random(20240611)
    account = catalog.key(catalog.template("account"), ["dup-1"])
    team = catalog.key(catalog.template("team-members"), [5])
    dead = MemoryDeadLetters()
    processor = Processor(catalog, cache, SpannerRows(database), dead, retry_attempts=2)
    store = SpannerOutbox(database)
    delivered: dict[str, Inbound] = {}
    members: dict[str, str] = {}
    newest = {account.key: 0, team.key: 0}
    seen = {account.key: 0, team.key: 0}
    changes: list[tuple[dict[str, str], list[str]]] = [
        ({"m0": "owner", "m1": "member"}, []),
        ({"m2": "member"}, []),
        ({"m1": "admin"}, ["m0"]),
        ({}, ["m2"]),
        ({"m0": "member", "m3": "admin"}, []),
    ]
    for round_, (upsert, delete) in enumerate(changes):
        _, newest[account.key] = write_account(database, "dup-1", round_)
        _, newest[team.key] = write_team(database, 5, upsert, delete, create=round_ == 0)
        members.update(upsert)
        for gone in delete:
            members.pop(gone)
        fresh = [
            Inbound(f"{row.event_id}-{n}", row.data, row.attributes, delivery_attempt=n + 1)
            for row in store.pending(set(range(16)), 1000)
            if row.event_id not in delivered
            for n in range(3)
        ]
        delivered.update((m.attributes["event_id"], m) for m in fresh)
        replays = rng.sample(list(delivered.values()), k=min(4, len(delivered)))
        stream = fresh + replays
        rng.shuffle(stream)
        while stream:
            size = rng.randint(1, 4)
            batch, stream = stream[:size], stream[size:]
            outcomes = processor.process(batch)
            assert [o.disposition for o in outcomes] == [Disposition.ACK] * len(batch)
            assert not dead.sent
            for key, found in zip((account, team), cache.get([account.key, team.key]),
                                  strict=True):
                if found is None:
                    assert not seen[key.key], f"{key.key} vanished"
                    continue
                assert found.version >= seen[key.key], f"{key.key} went back"
                seen[key.key] = found.version

        row, derived = cache.get([account.key, team.key])
        assert row is not None and row.tombstone and row.version == newest[account.key]
        assert derived is not None and derived.version >= newest[team.key]
        assert derived.tombstone or derived.value() == members_value(members)

    verdicts = {c.key: c.verdict for c in compare([account, team], cache, SpannerRows(database))}
    assert verdicts[account.key] is Verdict.TOMBSTONE
    assert verdicts[team.key] in (Verdict.TOMBSTONE, Verdict.FRESH)


# --- a transient Spanner failure during a consumer's rewarm read ----------------------------


def test_transient_spanner_read_failure_is_retried_not_dead_lettered(
    provisioned: Settings, database: Any, catalog: Catalog, cache: RedisCache,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A batch holding an invalidation and a rewarm whose Spanner read fails once with the
    emulator's contention error. Property: a transient failure is retried (in process, or by
    redelivery), never dead-lettered, so no invalidation is lost."""
    monkeypatch.setenv("RETRY_BACKOFF", "0")
    account = catalog.key(catalog.template("account"), ["busy-1"])
    team = catalog.key(catalog.template("team-members"), [9])
    _, account_version = write_account(database, "busy-1", 1)
    _, team_version = write_team(database, 9, {"m0": "owner"}, create=True)
    batch = [Inbound(row.event_id, row.data, row.attributes, delivery_attempt=1)
             for row in SpannerOutbox(database).pending(set(range(16)), 100)]
    dead = MemoryDeadLetters()
    processor = Processor(catalog, cache, SpannerRows(ContendedDatabase(database, 1)), dead,
                          retry_attempts=3)

    outcomes = processor.process(batch)

    assert not dead.sent, [(m.attributes["event_id"], str(e)) for m, e in dead.sent]
    assert all(o.dead_letter_reason is None for o in outcomes)
    row, derived = cache.get([account.key, team.key])
    assert row is not None and row.tombstone and row.version == account_version
    assert derived is not None and derived.version > team_version
    assert derived.value() == members_value({"m0": "owner"})
