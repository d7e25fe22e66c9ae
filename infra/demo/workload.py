"""The demo's writers (Spanner + outbox in one transaction, or no outbox at all when a change
stream is the source) and readers (read-through)."""

from __future__ import annotations

import itertools
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.cloud import spanner
from google.cloud.spanner_v1 import param_types
from redis_spanner.consumers.readthrough import ReadThrough
from redis_spanner.infra.demo.tally import Tally
from redis_spanner.producers.changestream import event_id_for
from redis_spanner.producers.fast_path import FastPath
from redis_spanner.producers.outbox import record
from redis_spanner.producers.spanner import run_transaction
from redis_spanner.schemas import versions
from redis_spanner.schemas.errors import RedisSpannerError
from redis_spanner.schemas.events import EventType

log = logging.getLogger(__name__)

_BUMP = """
UPDATE Accounts SET Balance = Balance + @delta, UpdatedAt = PENDING_COMMIT_TIMESTAMP()
WHERE AccountId = @id
"""


def account_ids(count: int) -> list[str]:
    return [f"acct-{n:05d}" for n in range(count)]


def seed_accounts(database: Any, ids: list[str], *, outbox: bool = True) -> list[str]:
    """Create the accounts, or reset those a previous run left, each with its event (an
    outbox row, or with ``outbox=False`` the change stream's), so a value cached by an earlier
    run is invalidated too. Returns the event ids."""
    columns = ("AccountId", "Owner", "Balance", "UpdatedAt")
    event_ids: list[str] = []
    for start in range(0, len(ids), 100):
        chunk = ids[start:start + 100]

        def work(tx: Any, chunk: list[str] = chunk) -> list[str]:
            tx.insert_or_update("Accounts", columns, [
                [i, f"owner-{i[-3:]}", 1000, spanner.COMMIT_TIMESTAMP] for i in chunk
            ])
            if not outbox:
                return []
            return [record(tx, EventType.ROW_CHANGED, "Accounts", (i,)) for i in chunk]

        chunk_ids, committed = run_transaction(database, work)
        if not outbox:
            version = versions.from_datetime(committed)
            chunk_ids = [event_id_for("Accounts", [i], version) for i in chunk]
        event_ids.extend(chunk_ids)
    return event_ids


def zipf_picker(ids: list[str], skew: float, rng: random.Random) -> Callable[[], str]:
    """Hot keys: the n-th account is picked with weight 1 / n**skew."""
    weights = list(itertools.accumulate(1 / (n + 1) ** skew for n in range(len(ids))))
    return lambda: rng.choices(ids, cum_weights=weights, k=1)[0]


FAST_PATH = "fast_path"
OUTBOX_ONLY = "outbox_only"


@dataclass(frozen=True)
class Split:
    """Which accounts the writers commit with the fast path: every other one, so both halves
    see the same load and the report compares their stale reads within one run."""

    fast_path: FastPath
    accounts: frozenset[str]

    @classmethod
    def alternate(cls, fast_path: FastPath, ids: list[str]) -> Split:
        return cls(fast_path, frozenset(ids[::2]))

    def writer_for(self, account: str) -> FastPath | None:
        return self.fast_path if account in self.accounts else None

    def group(self, account: str) -> str:
        return FAST_PATH if account in self.accounts else OUTBOX_ONLY


def bump(database: Any, account_id: str, delta: int, fast_path: FastPath | None = None, *,
         outbox: bool = True) -> str:
    """One business write and its outbox event, atomically; with ``outbox=False`` the write
    alone, whose event the change stream makes (and which the fast path, which works from
    outbox events, can't see). Returns the event id."""
    def work(tx: Any) -> str | None:
        tx.execute_update(
            _BUMP,
            params={"delta": delta, "id": account_id},
            param_types={"delta": param_types.INT64, "id": param_types.STRING},
        )
        return record(tx, EventType.ROW_CHANGED, "Accounts", (account_id,)) if outbox else None

    event_id, committed = run_transaction(database, work, fast_path=fast_path)
    if event_id is None:
        return event_id_for("Accounts", [account_id], versions.from_datetime(committed))
    return event_id


def paced(rate: float, stop: threading.Event, step: Callable[[], None]) -> None:
    """Call ``step`` about ``rate`` times per second until ``stop`` is set."""
    interval = 1.0 / rate
    next_at = time.monotonic()
    while not stop.is_set():
        step()
        next_at += interval
        delay = next_at - time.monotonic()
        if delay > 0:
            stop.wait(delay)
        else:
            next_at = time.monotonic()


def writer(database: Any, pick: Callable[[], str], tally: Tally, rng: random.Random,
           split: Split | None = None, *, outbox: bool = True) -> Callable[[], None]:
    def step() -> None:
        account = pick()
        fast_path = split.writer_for(account) if split else None
        try:
            tally.on_commit(bump(database, account, rng.randint(-50, 50), fast_path,
                                 outbox=outbox))
        except RedisSpannerError as e:
            tally.write_errors += 1
            log.warning("write failed: %s", e)

    return step


def reader(client: ReadThrough, pick: Callable[[], str], tally: Tally,
           latest_version: Callable[[str], int], sample: float, rng: random.Random,
           split: Split | None = None) -> Callable[[], None]:
    """Read through the cache. On a sample of reads, first take the row's last commit
    timestamp with a strong read: a cached value whose version is older than that commit,
    served after it, is a stale read."""
    def step() -> None:
        account = pick()
        checked = rng.random() < sample
        try:
            newest = latest_version(account) if checked else 0
            read = client.get_many([client.key("account", account)])[0]
        except RedisSpannerError as e:
            log.warning("read failed: %s", e)
            return
        tally.on_read(read.hit, checked, stale=checked and read.hit and read.version < newest,
                      group=split.group(account) if split else None)

    return step


def latest_commit(database: Any) -> Callable[[str], int]:
    """The commit timestamp of an account's last change, by strong read."""
    def read(account: str) -> int:
        with database.snapshot() as snapshot:
            keys = spanner.KeySet(keys=[[account]])
            rows = list(snapshot.read("Accounts", ("UpdatedAt",), keys))
        return versions.from_datetime(rows[0][0]) if rows else 0

    return read
