"""Writers, readers and the pipeline at once on the real emulators and Redis, checked against
a ledger of every commit and every read."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from redis_spanner.consumers.pubsub import PullSubscription
from redis_spanner.consumers.readthrough import ReadThrough
from redis_spanner.consumers.redis_cache import RedisCache
from redis_spanner.consumers.spanner_rows import SpannerRows
from redis_spanner.consumers.verify import Verdict, compare
from redis_spanner.consumers.worker import Consumer, PullWorker
from redis_spanner.producers.runner import build_relay
from redis_spanner.schemas.errors import PermanentError
from redis_spanner.schemas.keys import CacheKey, Catalog
from redis_spanner.schemas.settings import Settings

from tests.integration.race_support import (
    Ledger,
    Running,
    account_value,
    guarded,
    members_value,
    outbox_count,
    reader_step,
    write_account,
    write_team,
    writer_step,
)
from tests.waiting import wait_until

WRITERS = 3
READERS_PLAIN = 2
READERS_VERIFIED = 3
ACCOUNTS_PER_WRITER = 3
RUN_SECONDS = 8.0


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
        accounts, team = owned[w]
        return writer_step(database, catalog, ledger, accounts, team, models[team], seed=w)

    def reader(r: int, verify: bool) -> Callable[[], None]:
        return reader_step(database, catalog, cache, ledger, keys, seed=1000 + r, verify=verify)

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
    for read_key, floor, verify, _lost, read in ledger.reads:
        history = ledger.history[read_key]
        assert read.value in [value for _, value in history], f"{read_key}: never written"
        if not verify:
            continue
        newer = history[floor:]
        versioned = read_key.startswith(f"{catalog.namespace}:account:")
        if read.value not in [value for _, value in newer] or (
            versioned and read.version < newer[0][0]
        ):
            too_old.append((read_key, floor, read))
    assert not too_old, too_old[:5]
