"""Machinery for the race and concurrency tests: writes that record their outbox event in the
same transaction, readers and databases that hold or fail one side of a race, calls run in
threads, and the ledger that the concurrency test checks every read and commit against."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import spanner
from redis_spanner.consumers.messages import Disposition, Outcome
from redis_spanner.consumers.readthrough import LeasingCache, Read, ReadThrough
from redis_spanner.consumers.redis_cache import RedisCache
from redis_spanner.consumers.spanner_rows import SpannerRows
from redis_spanner.consumers.worker import PullWorker
from redis_spanner.producers.outbox import record
from redis_spanner.producers.runner import build_relay
from redis_spanner.producers.spanner import run_transaction
from redis_spanner.schemas import versions
from redis_spanner.schemas.cache import Entry
from redis_spanner.schemas.errors import RedisSpannerError
from redis_spanner.schemas.events import EventType
from redis_spanner.schemas.keys import CacheKey, Catalog
from redis_spanner.schemas.settings import Settings

from tests.waiting import wait_until

Loop = Callable[[threading.Event], None]
Running = Callable[[Loop], None]

ACCOUNT_COLUMNS = ("AccountId", "Owner", "Balance", "UpdatedAt")
MEMBERS = ("m0", "m1", "m2", "m3")
ROLES = ("owner", "admin", "member")


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


# --- holding or failing one side of a race -----------------------------------------------


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


class ContendedDatabase:
    """A database whose next ``failures`` snapshots fail as the Spanner emulator fails a read
    that meets a concurrent read-write transaction (seen in test_concurrency)."""

    def __init__(self, inner: Any, failures: int) -> None:
        self._inner = inner
        self.failures = failures

    def snapshot(self, **kwargs: Any) -> Any:
        if self.failures > 0:
            self.failures -= 1
            raise gexc.NotFound("Transaction not found: 660")
        return self._inner.snapshot(**kwargs)


# --- the concurrency test's ledger, readers and writers ----------------------------------


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


def writer_step(database: Any, catalog: Catalog, ledger: Ledger, accounts: Sequence[str],
                team: int, members: dict[str, str], seed: int) -> Callable[[], None]:
    """One write per call: bump one of ``accounts`` (60%) or add, change or remove a member of
    ``team`` (``members`` is kept as the team's current list); every commit goes to the ledger."""
    rng = random.Random(seed)
    account_t = catalog.template("account")
    members_t = catalog.template("team-members")
    balance = iter(range(1, 1_000_000))

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


def reader_step(database: Any, catalog: Catalog, cache: RedisCache, ledger: Ledger,
                keys: Sequence[CacheKey], seed: int, verify: bool) -> Callable[[], None]:
    """One read-through of a random key per call, noted in the ledger with the last commit
    that had finished when it began (or its error, when it failed)."""
    rng = random.Random(seed)
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


def guarded(ledger: Ledger, stop: threading.Event, step: Callable[[], None]) -> Loop:
    def loop(_: threading.Event) -> None:
        try:
            while not stop.is_set():
                step()
        except BaseException as e:
            ledger.errors.append(e)
            stop.set()
    return loop
