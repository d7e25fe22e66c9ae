"""The coherence races, provoked on purpose on the real emulators and Redis.

Most tests hold one side of a race at a chosen point (a reader between its Spanner read and its
fill, a consumer between its rewarm read and its write), let the other side win, then let the
first one finish, and check that the version guard refused the loser. The others replay real
events duplicated and shuffled through the consumer core, and run writers, readers and the
pipeline at once before checking every key against Spanner.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import pytest
from google.api_core import exceptions as gexc
from google.cloud import spanner

from consumers.core import Processor
from consumers.messages import Disposition, Inbound, Outcome
from consumers.pubsub import PullSubscription
from consumers.readthrough import LeasingCache, Read, ReadThrough
from consumers.redis_cache import RedisCache
from consumers.spanner_rows import SpannerRows
from consumers.verify import Verdict, compare
from consumers.worker import Consumer, PullWorker
from producers.outbox import record
from producers.outbox_store import SpannerOutbox
from producers.runner import build_relay
from producers.spanner import run_transaction
from schemas import versions
from schemas.cache import CacheOp, Entry
from schemas.envelope import Event
from schemas.errors import PermanentError, RedisSpannerError
from schemas.events import EventType
from schemas.keys import CacheKey, Catalog
from schemas.settings import Settings
from tests.fakes import MemoryDeadLetters
from tests.waiting import wait_until

Loop = Callable[[threading.Event], None]
Running = Callable[[Loop], None]

ACCOUNT_COLUMNS = ("AccountId", "Owner", "Balance", "UpdatedAt")


# --- writers: a business write and its outbox event in one transaction -------------------


def account_value(account: str, balance: int) -> dict[str, Any]:
    return {"Owner": f"owner-{account}", "Balance": balance}


def write_account(database: Any, account: str, balance: int) -> tuple[str, int]:
    """Set the account's balance; returns the event id and the commit version."""
    def work(tx: Any) -> str:
        tx.insert_or_update("Accounts", ACCOUNT_COLUMNS,
                            [[account, f"owner-{account}", balance, spanner.COMMIT_TIMESTAMP]])
        return record(tx, EventType.ROW_CHANGED, "Accounts", (account,))

    event_id, committed = run_transaction(database, work)
    return event_id, versions.from_datetime(committed)


def write_team(
    database: Any,
    team: int,
    upsert: Mapping[str, str] | None = None,
    delete: Sequence[str] = (),
    *,
    create: bool = False,
) -> tuple[list[str], int]:
    """Create the team and/or change its members; returns the event ids and the commit
    version. A removed member is a ``row.deleted`` event, which invalidates the member list."""
    def work(tx: Any) -> list[str]:
        ids = []
        if create:
            tx.insert_or_update("Teams", ("TeamId", "Name"), [[team, f"team-{team}"]])
            ids.append(record(tx, EventType.ROW_CHANGED, "Teams", (team,)))
        if upsert:
            tx.insert_or_update("Members", ("TeamId", "MemberId", "Role"),
                                [[team, m, r] for m, r in upsert.items()])
            ids += [record(tx, EventType.ROW_CHANGED, "Members", (team, m)) for m in upsert]
        if delete:
            tx.delete("Members", spanner.KeySet(keys=[[team, m] for m in delete]))
            ids += [record(tx, EventType.ROW_DELETED, "Members", (team, m)) for m in delete]
        return ids

    event_ids, committed = run_transaction(database, work)
    return event_ids, versions.from_datetime(committed)


def members_value(members: Mapping[str, str]) -> list[dict[str, str]]:
    """The team-members value as its query returns it."""
    return [{"MemberId": m, "Role": members[m]} for m in sorted(members)]


def outbox_count(database: Any) -> int:
    with database.snapshot() as snapshot:
        return int(next(iter(snapshot.execute_sql("SELECT COUNT(*) FROM Outbox")))[0])


# --- holding one side of a race ------------------------------------------------------------


class HeldRows:
    """A row reader whose first ``read`` reads Spanner, then holds its result until released:
    a slow reader, paused between its snapshot and its write to Redis."""

    def __init__(self, inner: SpannerRows) -> None:
        self._inner = inner
        self.has_read = threading.Event()
        self.release = threading.Event()
        self.read_version: int | None = None

    def read(self, keys: Sequence[CacheKey]) -> tuple[dict[str, Any], int]:
        values, version = self._inner.read(keys)
        if not self.has_read.is_set():
            self.read_version = version
            self.has_read.set()
            if not self.release.wait(30):
                raise AssertionError("the held reader was never released")
        return values, version

    def read_versions(self, keys: Sequence[CacheKey]) -> tuple[dict[str, int | None], int]:
        return self._inner.read_versions(keys)


class InThread:
    """Run a call in a thread; ``result()`` joins it and returns its value or raises."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self._out: list[Any] = []
        self._error: list[BaseException] = []

        def target() -> None:
            try:
                self._out.append(fn())
            except BaseException as e:
                self._error.append(e)

        self._thread = threading.Thread(target=target, daemon=True)
        self._thread.start()

    def result(self, timeout: float = 30) -> Any:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the held call never finished"
        if self._error:
            raise self._error[0]
        return self._out[0]


def entry_of(cache: RedisCache, key: CacheKey) -> Entry | None:
    return cache.get([key.key])[0]


def wait_for_version(cache: RedisCache, key: CacheKey, version: int) -> Entry:
    """The key's entry once it carries ``version`` or newer."""
    def reached() -> Entry | None:
        found = entry_of(cache, key)
        return found if found is not None and found.version >= version else None

    return wait_until(reached)


def start_pipeline(running: Running, settings: Settings, worker: PullWorker) -> None:
    relay, _ = build_relay(settings)
    running(relay.run)
    running(lambda stop: worker.run(stop, pull_timeout=0.5))


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


def test_slow_read_through_cannot_cache_what_a_newer_commit_invalidated(
    provisioned: Settings, database: Any, catalog: Catalog, cache: RedisCache,
    worker: PullWorker, running: Running,
) -> None:
    """ReadThrough misses, reads Spanner at R and stalls; meanwhile a commit at C > R lands as a
    tombstone. When the stalled reader resumes, it returns the value it read but its fill is
    refused, so Redis holds the tombstone and no stale value. Property: a read-through fill
    is only as good as its snapshot, never better than a landed invalidation."""
    key = catalog.key(catalog.template("account"), ["slow-2"])
    _, seeded = write_account(database, "slow-2", 10)
    start_pipeline(running, provisioned, worker)
    wait_for_version(cache, key, seeded)

    held = HeldRows(SpannerRows(database))
    slow = InThread(lambda: ReadThrough(catalog, cache, held).get_many([key])[0])
    try:
        assert held.has_read.wait(20), "the reader never reached Spanner"
        _, committed = write_account(database, "slow-2", 11)
        assert held.read_version is not None and committed > held.read_version
        wait_for_version(cache, key, committed)
    finally:
        held.release.set()
    read: Read = slow.result()

    assert read.value == account_value("slow-2", 10) and not read.hit and not read.filled
    found = entry_of(cache, key)
    assert found is not None and found.tombstone and found.version == committed
    [fresh] = ReadThrough(catalog, cache, SpannerRows(database)).get_many([key])
    assert fresh.value == account_value("slow-2", 11)


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


# --- the read-through's verify=True against another caller's fill --------------------------


def test_verified_read_waiting_on_another_fill_sees_every_finished_commit(
    provisioned: Settings, database: Any, catalog: Catalog, cache: RedisCache,
) -> None:
    """Two verified readers of a hot key right after a commit whose invalidation has not landed
    yet: the first finds the cached value stale, takes the fill lease and reads Spanner; the
    second finds it stale too, loses the lease race and waits. Property: a verify=True read
    never returns a value older than a commit that finished before the read started."""
    key = catalog.key(catalog.template("account"), ["hot-1"])
    write_account(database, "hot-1", 1)
    [warm] = ReadThrough(catalog, cache, SpannerRows(database)).get_many([key])
    assert warm.filled
    _, committed = write_account(database, "hot-1", 2)  # no consumer runs: not invalidated yet

    held = HeldRows(SpannerRows(database))
    first = InThread(lambda: ReadThrough(catalog, cache, held).get_many([key], verify=True))
    try:
        assert held.has_read.wait(20), "the first reader never reached Spanner"
        [second] = ReadThrough(catalog, cache, SpannerRows(database)).get_many(
            [key], verify=True)
    finally:
        held.release.set()
    [first_read] = first.result()

    assert first_read.value == account_value("hot-1", 2)
    assert second.version >= committed, "verify=True served a value older than a commit"
    assert second.value == account_value("hot-1", 2)


# --- a transient Spanner failure during a consumer's rewarm read ----------------------------


class ContendedDatabase:
    """A database whose next ``failures`` snapshots fail as the Spanner emulator fails a read
    that meets a concurrent read-write transaction (seen in the concurrent test below)."""

    def __init__(self, inner: Any, failures: int) -> None:
        self._inner = inner
        self.failures = failures

    def snapshot(self, **kwargs: Any) -> Any:
        if self.failures > 0:
            self.failures -= 1
            raise gexc.NotFound("Transaction not found: 660")
        return self._inner.snapshot(**kwargs)


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


# --- 4. writers, readers and the pipeline at once ------------------------------------------

WRITERS = 3
READERS_PLAIN = 2
READERS_VERIFIED = 3
ACCOUNTS_PER_WRITER = 3
MEMBERS = ("m0", "m1", "m2", "m3")
ROLES = ("owner", "admin", "member")
RUN_SECONDS = 8.0


class LeaseWatch:
    """A cache wrapper that notes whether a read lost a fill-lease race (and so took the
    read-through's wait-for-the-holder path)."""

    def __init__(self, inner: LeasingCache) -> None:
        self._inner = inner
        self.lost = False

    def acquire_leases(self, lease_keys: Sequence[str], token: str, ttl_ms: int) -> list[bool]:
        taken = self._inner.acquire_leases(lease_keys, token, ttl_ms)
        self.lost = self.lost or not all(taken)
        return taken

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class Ledger:
    """Every commit of every key, in commit order (one writer owns each key), with the event
    ids it recorded; and every read with the last commit that had finished when it began."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.history: dict[str, list[tuple[int, Any]]] = {}
        self.event_ids: set[str] = set()
        self.acked: set[str] = set()
        self.dead_lettered: dict[str, str] = {}
        self.reads: list[tuple[str, int, bool, bool, Read]] = []
        self.errors: list[BaseException] = []
        self.read_errors: list[RedisSpannerError] = []

    def committed(self, key: str, version: int, value: Any, event_ids: Sequence[str]) -> None:
        with self.lock:
            self.history.setdefault(key, []).append((version, value))
            self.event_ids.update(event_ids)

    def last_index(self, key: str) -> int:
        with self.lock:
            return len(self.history[key]) - 1

    def observe(self, outcomes: list[Outcome]) -> None:
        with self.lock:
            for o in outcomes:
                if o.disposition is not Disposition.ACK:
                    continue
                if o.dead_letter_reason is not None:
                    event_id = o.message.attributes.get("event_id", o.message.message_id)
                    self.dead_lettered[event_id] = f"{o.dead_letter_reason}: {o.error}"
                elif o.event is not None:
                    self.acked.add(o.event.event_id)

    def unsettled(self) -> set[str]:
        """Committed events neither applied nor dead-lettered yet."""
        with self.lock:
            return self.event_ids - self.acked - set(self.dead_lettered)


@pytest.fixture
def ledger() -> Ledger:
    return Ledger()


@pytest.fixture
def observed_worker(provisioned: Settings, ledger: Ledger) -> Iterator[PullWorker]:
    """A pull worker whose processor reports every outcome to the ledger."""
    built = Consumer.from_settings(provisioned, observer=ledger.observe)
    subscription = PullSubscription(provisioned.subscription_path)
    yield PullWorker(subscription, built.processor, streams=2)
    subscription.close()
    built.close()


def guarded(ledger: Ledger, stop: threading.Event, step: Callable[[], None]) -> Loop:
    def loop(_: threading.Event) -> None:
        try:
            while not stop.is_set():
                step()
        except BaseException as e:
            ledger.errors.append(e)
            stop.set()
    return loop


def test_concurrent_writers_readers_and_consumer_leave_no_stale_entry(
    provisioned: Settings, database: Any, catalog: Catalog, cache: RedisCache,
    ledger: Ledger, observed_worker: PullWorker, running: Running,
) -> None:
    """Writers bump accounts and change team members, readers read through the cache with and
    without verify, and the relay and a worker run, for several seconds. Properties: after
    quiescence (every committed event acked) the oracle finds no stale entry and every key
    reads as its last commit; every read returns a value some commit wrote; every verify=True
    read returns a value at least as new as the last commit finished before it began."""
    account_t = catalog.template("account")
    members_t = catalog.template("team-members")
    owned = {
        w: ([f"c-{w}-{n}" for n in range(ACCOUNTS_PER_WRITER)], 100 + w) for w in range(WRITERS)
    }
    keys: list[CacheKey] = []
    models: dict[int, dict[str, str]] = {}
    for accounts, team in owned.values():
        for account in accounts:
            key = catalog.key(account_t, [account])
            event_id, version = write_account(database, account, 0)
            ledger.committed(key.key, version, account_value(account, 0), [event_id])
            keys.append(key)
        models[team] = {"m0": "owner"}
        key = catalog.key(members_t, [team])
        event_ids, version = write_team(database, team, models[team], create=True)
        ledger.committed(key.key, version, members_value(models[team]), event_ids)
        keys.append(key)
    team_keys = [catalog.key(catalog.template("team"), [team]) for _, team in owned.values()]

    relay, _ = build_relay(provisioned)
    running(relay.run)
    running(lambda stop: observed_worker.run(stop, pull_timeout=0.5))

    stop = threading.Event()

    def writer(w: int) -> Callable[[], None]:
        rng = random.Random(w)
        accounts, team = owned[w]
        balance = iter(range(1, 1_000_000))
        members = models[team]

        def step() -> None:
            if rng.random() < 0.6:
                account = rng.choice(accounts)
                value = account_value(account, next(balance))
                event_id, version = write_account(database, account, value["Balance"])
                ledger.committed(catalog.key(account_t, [account]).key, version, value,
                                 [event_id])
            else:
                member = rng.choice(MEMBERS)
                if member in members and rng.random() < 0.4:
                    event_ids, version = write_team(database, team, delete=[member])
                    del members[member]
                else:
                    role = rng.choice(ROLES)
                    event_ids, version = write_team(database, team, {member: role})
                    members[member] = role
                ledger.committed(catalog.key(members_t, [team]).key, version,
                                 members_value(members), event_ids)
            time.sleep(rng.uniform(0, 0.02))
        return step

    def reader(r: int, verify: bool) -> Callable[[], None]:
        rng = random.Random(1000 + r)
        watch = LeaseWatch(cache)
        client = ReadThrough(catalog, watch, SpannerRows(database))

        def step() -> None:
            key = rng.choice(keys)
            floor = ledger.last_index(key.key)
            watch.lost = False
            try:
                [read] = client.get_many([key], verify=verify)
            except RedisSpannerError as e:  # a failed read serves nothing, stale or not
                with ledger.lock:
                    ledger.read_errors.append(e)
                return
            with ledger.lock:
                ledger.reads.append((key.key, floor, verify, watch.lost, read))
            time.sleep(rng.uniform(0, 0.005))
        return step

    workers = [writer(w) for w in range(WRITERS)]
    workers += [reader(r, verify=False) for r in range(READERS_PLAIN)]
    workers += [reader(READERS_PLAIN + r, verify=True) for r in range(READERS_VERIFIED)]
    threads = [threading.Thread(target=guarded(ledger, stop, step), args=(stop,), daemon=True)
               for step in workers]
    for thread in threads:
        thread.start()
    stop.wait(RUN_SECONDS)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    assert not ledger.errors, ledger.errors

    try:
        wait_until(lambda: not ledger.unsettled(), timeout=30)
    except AssertionError:
        pytest.fail(f"{len(ledger.unsettled())} of {len(ledger.event_ids)} committed events "
                    f"never settled; the outbox holds {outbox_count(database)} row(s)")
    wait_until(lambda: outbox_count(database) == 0)

    assert not ledger.dead_lettered, ledger.dead_lettered
    assert not ledger.read_errors or all(
        not isinstance(e, PermanentError) for e in ledger.read_errors), ledger.read_errors[:3]

    checked = compare(keys + team_keys, cache, SpannerRows(database))
    stale = [c for c in checked if c.verdict is Verdict.STALE]
    final = ReadThrough(catalog, cache, SpannerRows(database)).get_many(keys)
    wrong = [(r.key, r.value) for r, k in zip(final, keys, strict=True)
             if r.value != ledger.history[k.key][-1][1]]
    assert not stale, stale
    assert not wrong, wrong

    commits = sum(len(h) for h in ledger.history.values())
    verified = [r for r in ledger.reads if r[2]]
    assert commits > 30 and len(verified) > 30, (commits, len(verified))
    too_old = []
    for key, floor, verify, _lost, read in ledger.reads:
        history = ledger.history[key]
        assert read.value in [value for _, value in history], f"{key}: a value never written"
        if not verify:
            continue
        newer = history[floor:]
        versioned = key.startswith(f"{catalog.namespace}:account:")
        if read.value not in [value for _, value in newer] or (
            versioned and read.version < newer[0][0]
        ):
            too_old.append((key, floor, read))
    assert not too_old, too_old[:5]
