"""A Spanner emulator that aborts commits at random, under concurrent writers, relay and worker."""

from __future__ import annotations

import threading
from collections import Counter
from typing import TYPE_CHECKING, Any

import pytest
from google.cloud.spanner_v1 import param_types
from redis_spanner.infra.local import faults
from redis_spanner.producers.outbox import record
from redis_spanner.producers.spanner import run_transaction
from redis_spanner.schemas.events import EventType

from tests.waiting import wait_until

if TYPE_CHECKING:
    from tests.faults.harness import Pipeline

pytestmark = pytest.mark.integration

START_BALANCE = 1000
_INCREMENT = "UPDATE Accounts SET Balance = Balance + 1 WHERE AccountId = @id"


@pytest.mark.timeout(240)
def test_aborted_commits_are_retried_without_losing_or_doubling_a_write(
    open_pipeline: Any, aborting_spanner: faults.OwnProcess
) -> None:
    """Commits aborted by the emulator are retried, by writers, by the relay's lease and delete
    transactions alike. A business write and its outbox row commit together or not at all:
    each account's counter rose exactly once per event of that account that reached Redis,
    and the cache ends coherent."""
    pipe: Pipeline = open_pipeline(
        environ={"SPANNER_EMULATOR_HOST": aborting_spanner.address}
    )
    ids = pipe.accounts(5, balance=START_BALANCE)
    pipe.fill(ids)
    pipe.start_relay()
    pipe.start_worker()

    attempts = Counter[str]()
    committed = Counter[str]()
    retried = Counter[str]()
    """Writes whose transaction function ran more than once: a commit was aborted (or turned
    away by the emulator's one-transaction-at-a-time rule) and retried."""
    lock = threading.Lock()
    stop = threading.Event()

    def increment(account: str) -> None:
        tries = 0

        def work(tx: Any) -> str:
            nonlocal tries
            tries += 1
            with lock:
                attempts[account] += 1
            tx.execute_update(_INCREMENT, params={"id": account},
                              param_types={"id": param_types.STRING})
            return record(tx, EventType.ROW_CHANGED, "Accounts", (account,))

        event_id, _ = run_transaction(pipe.database, work)
        with lock:
            committed[account] += 1
            retried[account] += tries > 1
            pipe.event_keys[event_id] = account
        pipe.tally.on_commit(event_id)

    def writer(n: int) -> None:
        i = n
        while not stop.is_set():
            increment(ids[i % len(ids)])
            i += 1

    def enough() -> bool:
        """A few retried commits among enough writes, however slow the machine."""
        with lock:
            return sum(retried.values()) >= 3 and sum(committed.values()) >= 30

    writers = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
    for thread in writers:
        thread.start()
    try:
        wait_until(enough, timeout=90, interval=0.1)
    finally:
        stop.set()
        for thread in writers:
            thread.join(timeout=60)

    pipe.check(ids)
    assert sum(attempts.values()) > sum(committed.values()), "no commit was aborted"
    applied = Counter(pipe.event_keys[e] for e in pipe.tally.applied)
    assert pipe.tally.applied == pipe.tally.committed, "an event nobody committed was applied"
    with pipe.database.snapshot() as snapshot:
        balances = dict(snapshot.execute_sql("SELECT AccountId, Balance FROM Accounts"))
    assert {a: b - START_BALANCE for a, b in balances.items()} == dict(committed) == dict(applied)
