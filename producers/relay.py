"""The relay: read pending outbox rows of the shards this relay leases, publish, delete.

Delivery is at least once: rows are deleted only after Pub/Sub acknowledged every publish, so a
relay killed anywhere republishes on restart and loses nothing. Several relays run at once:
each publishes only the shards it leases, and only while the lease has time left.

A row that can never become a message (see ``outbox_rows``), or that Pub/Sub refuses, is moved
to the quarantine table with its reason; the rows around it keep flowing. No exception ends the
relay's loops: an unexpected one is logged and retried with backoff. The one way out besides the
stop signal is ``LeaseLost``, raised when leases could not be renewed for too long.

Deleting is off the publishing path: a deleter thread deletes what Pub/Sub holds while the
next round reads and publishes. Published rows are remembered until their delete commits, and
reads skip them, so a delete that waits for a busy Spanner neither delays the next publish nor
repeats this one.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from concurrent import futures
from dataclasses import dataclass
from functools import partial
from typing import Protocol

from redis_spanner.producers import metrics
from redis_spanner.producers.background import in_background
from redis_spanner.producers.leases import LeaseKeeper, LeaseLost, LeaseStore
from redis_spanner.producers.outbox_rows import OutboxRow, Pending, PoisonRow, Position
from redis_spanner.schemas.errors import TransientError
from redis_spanner.schemas.failpoints import failpoint

log = logging.getLogger(__name__)

__all__ = ["LeaseLost", "Relay", "RelayConfig"]
MAX_BACKOFF = 2.0
RELEASE_SECONDS = 2.0
QUARANTINE_RETRY_SECONDS = 2.0
DELETE_WAIT_SECONDS = 2.0
"""How long a stopping relay waits for its last delete."""
MIN_GIVE_UP_SECONDS = 15.0


def give_up_after(lease_seconds: float) -> float:
    """Seconds without a renewal after which a relay stops for good."""
    return max(3 * lease_seconds, MIN_GIVE_UP_SECONDS)


class OutboxStore(LeaseStore, Protocol):
    def release(self, owner: str) -> None: ...
    def read(self, shards: set[int], limit: int, skip: Collection[str] = frozenset(),
             after: Position | None = None) -> Pending: ...
    def delete(self, rows: list[OutboxRow]) -> None: ...
    def quarantine(self, rows: list[PoisonRow]) -> None: ...
    def backlog(self) -> tuple[int, object]: ...


class Publisher(Protocol):
    def publish(self, rows: Sequence[OutboxRow], stop: threading.Event) -> list[PoisonRow]:
        """Returns once Pub/Sub holds every row but those returned, which it refused for good.
        Raises ``TransientError`` if any failed otherwise, or if ``stop`` was set first."""
        ...


@dataclass(frozen=True)
class RelayConfig:
    lease_seconds: float = 10.0
    poll_interval: float = 0.05
    batch: int = 500
    backlog_every: float = 5.0
    give_up_after: float | None = None
    """Seconds without a lease renewal before the relay stops (default: three leases, and
    at least ``MIN_GIVE_UP_SECONDS``, so a short lease on a busy Spanner is not given up)."""


class Relay:
    def __init__(
        self,
        store: OutboxStore,
        publisher: Publisher,
        config: RelayConfig = RelayConfig(),
        *,
        owner: str | None = None,
        on_published: Callable[[list[OutboxRow]], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.owner = owner or f"relay-{uuid.uuid4().hex[:12]}"
        self._store = store
        self._publisher = publisher
        self._config = config
        self._on_published = on_published
        self._clock = clock
        self._leases = LeaseKeeper(store, self.owner, config.lease_seconds,
                                   config.give_up_after or give_up_after(config.lease_seconds),
                                   clock)
        self._next_backlog = 0.0
        self._published: dict[str, OutboxRow] = {}
        """Rows Pub/Sub holds whose delete has not committed yet (under ``_lock``)."""
        self._lock = threading.Lock()
        self._to_delete = threading.Event()
        self._quarantined = 0
        self._quarantine_after = 0.0
        self._ahead: tuple[frozenset[int], futures.Future[Pending]] | None = None
        """The read of the rows after a full read, for the shards it read, taken while that
        read's rows were published: it goes on from the full read's last row instead of
        reading again rows published and not yet deleted. A read that is not full, and any
        failure, sends the next one back to the start."""

    @property
    def shards(self) -> frozenset[int]:
        return self._leases.lease.shards

    @property
    def quarantined(self) -> int:
        """Rows this relay moved to the quarantine table."""
        return self._quarantined

    def run(self, stop: threading.Event) -> None:
        """Loop until ``stop`` is set; raises ``LeaseLost`` if leases could not be kept."""
        failures = 0
        log.info("relay %s started", self.owner)
        done = threading.Event()
        keeper = threading.Thread(target=self._keep_leases, args=(done,), daemon=True,
                                  name=f"{self.owner}-leases")
        keeper.start()
        deleter = threading.Thread(target=self._keep_deleting, args=(done,), daemon=True,
                                   name=f"{self.owner}-delete")
        deleter.start()
        try:
            while not (stop.is_set() or done.is_set() or self._leases.given_up()):
                try:
                    more = self._publish_round(stop)
                    self._report_backlog()
                    failures = 0
                except Exception as e:  # no exception ends the loop
                    self._ahead = None
                    if stop.is_set():
                        log.info("relay %s stopping: %s", self.owner, e)
                        break
                    failures += 1
                    metrics.RELAY_ERRORS.labels(type(e).__name__).inc()
                    delay = min(0.1 * 2 ** min(failures, 10), MAX_BACKOFF)
                    if isinstance(e, TransientError):
                        log.warning("relay %s: %s; retrying in %.1fs", self.owner, e, delay)
                    else:
                        log.exception("relay %s: unexpected error; retrying in %.1fs",
                                      self.owner, delay)
                    self._pause(stop, done, delay)
                    continue
                if not more:
                    self._pause(stop, done, self._config.poll_interval)
        finally:
            done.set()
            self._to_delete.set()
            deleter.join(timeout=DELETE_WAIT_SECONDS)
            keeper.join(timeout=2.0)
            self._ahead = None
            self._release()
        if self._leases.lost is not None:
            raise self._leases.lost

    def _keep_leases(self, done: threading.Event) -> None:
        try:
            self._leases.keep(done)
        finally:
            done.set()  # a keeper that returns while the relay runs has given up

    def _keep_deleting(self, done: threading.Event) -> None:
        """Delete published rows as they come, and once more when the relay stops."""
        failures = 0
        while not done.is_set():
            self._to_delete.wait(self._config.poll_interval)
            self._to_delete.clear()
            if self._delete_published():
                failures = 0
                continue
            failures += 1
            done.wait(min(0.05 * 2 ** min(failures, 10), MAX_BACKOFF))
        self._delete_published()

    @staticmethod
    def _pause(stop: threading.Event, done: threading.Event, seconds: float) -> None:
        """Wait ``seconds``, or less if the relay is stopped or its keeper gave up."""
        deadline = time.monotonic() + seconds
        while not (stop.is_set() or done.is_set()):
            left = deadline - time.monotonic()
            if left <= 0:
                return
            stop.wait(min(left, 0.1))

    def _publish_round(self, stop: threading.Event) -> bool:
        """Publish new pending rows of the leased shards and move poison aside; the deleter
        deletes what Pub/Sub holds. While a full read's rows are published, the rows after
        them are read. Returns whether more rows may be waiting."""
        shards = self._leases.lease.shards
        with self._lock:
            if any(r.shard not in shards for r in self._published.values()):
                # Rows of a shard now leased elsewhere are that relay's to publish and delete.
                self._published = {k: r for k, r in self._published.items()
                                   if r.shard in shards}
            # Taken before the read: a row deleted while it runs is still skipped.
            skip = frozenset(self._published)
        ahead, self._ahead = self._ahead, None
        if not shards:
            return False
        if ahead is not None and ahead[0] == shards:
            found = ahead[1].result()
        else:
            found = self._read(shards, self._config.batch + len(skip), skip, None)
        failpoint("relay.after_read")
        next_read = None
        if found.full and found.last is not None:
            next_read = in_background(
                partial(self._read, shards, self._config.batch, skip, found.last),
                f"{self.owner}-read")
        rows, poison = found.rows, list(found.poison)
        if rows or poison:
            if not self._leases.has(self._config.lease_seconds / 3):
                return False
            if rows:
                poison += self._publish(rows, stop)
            if poison:
                self._quarantine(poison)
        if next_read is not None:
            self._ahead = (shards, next_read)
        return found.full

    def _read(self, shards: frozenset[int], limit: int, skip: frozenset[str],
              after: Position | None) -> Pending:
        with metrics.timed("spanner", "read_outbox"):
            return self._store.read(set(shards), limit, skip, after)

    def _publish(self, rows: list[OutboxRow], stop: threading.Event) -> list[PoisonRow]:
        start = time.perf_counter()
        with metrics.timed("pubsub", "publish"):
            refused = self._publisher.publish(rows, stop)
        elapsed = time.perf_counter() - start
        failpoint("relay.after_publish")
        gone = {r.event_id for r in refused}
        held = [r for r in rows if r.event_id not in gone]
        with self._lock:
            self._published.update((r.event_id, r) for r in held)
        self._to_delete.set()
        _count_published(held)
        log.debug("relay %s: published %d row(s), %d refused, in %.1f ms", self.owner,
                  len(held), len(refused), elapsed * 1000,
                  extra={"published": len(held), "refused": len(refused),
                         "seconds": round(elapsed, 6)})
        if self._on_published and held:
            self._on_published(held)
        return refused

    def _quarantine(self, rows: list[PoisonRow]) -> None:
        """Move poison aside; if that fails, the rows stay pending and are tried again
        ``QUARANTINE_RETRY_SECONDS`` later, while publishing goes on."""
        if self._clock() < self._quarantine_after:
            return
        try:
            self._store.quarantine(rows)
        except Exception as e:  # the publish path must not wait on this one
            self._quarantine_after = self._clock() + QUARANTINE_RETRY_SECONDS
            log.warning("relay %s: could not quarantine %d row(s) yet (%s: %s); retrying in "
                        "%.0fs", self.owner, len(rows), type(e).__name__, e,
                        QUARANTINE_RETRY_SECONDS)
            return
        self._quarantined += len(rows)
        for row in rows:
            reason = row.reason.partition(":")[0]
            metrics.RELAY_QUARANTINED.labels(reason).inc()
            log.error("relay %s: outbox row (%d, %s) quarantined: %s", self.owner, row.shard,
                      row.event_id, row.reason, extra={"event_id": row.event_id,
                                                       "reason": reason})

    def _delete_published(self) -> bool:
        """Delete what Pub/Sub holds; False if that failed (the rows stay remembered)."""
        with self._lock:
            batch = list(self._published.values())
        if not batch:
            return True
        try:
            with metrics.timed("spanner", "delete_outbox"):
                self._store.delete(batch)
        except Exception as e:  # they stay remembered; the next try takes them again
            log.log(logging.DEBUG if isinstance(e, TransientError) else logging.WARNING,
                    "relay %s: delete of %d row(s) deferred: %s: %s", self.owner, len(batch),
                    type(e).__name__, e)
            return False
        with self._lock:
            for row in batch:
                self._published.pop(row.event_id, None)
        return True

    def _report_backlog(self) -> None:
        now = self._clock()
        if now < self._next_backlog:
            return
        self._next_backlog = now + self._config.backlog_every
        with metrics.timed("spanner", "backlog"):
            count, oldest = self._store.backlog()
        metrics.OUTBOX_BACKLOG.set(count)
        age = metrics.age_seconds(oldest)
        metrics.OUTBOX_OLDEST_AGE.set(age)
        if count:
            log.info("outbox backlog: %d row(s), oldest %.1fs old", count, age)

    def _release(self) -> None:
        """Give the leases back, waiting at most ``RELEASE_SECONDS``: a Spanner that stopped
        answering must not hold up the stop, and unreleased leases expire on their own."""

        def release() -> None:
            try:
                self._store.release(self.owner)
            except Exception as e:
                log.warning("relay %s could not release its leases: %s", self.owner, e)

        self._leases.forget()
        releasing = threading.Thread(target=release, daemon=True, name=f"{self.owner}-release")
        releasing.start()
        releasing.join(RELEASE_SECONDS)


def _count_published(rows: list[OutboxRow]) -> None:
    """Published rows by event type, and each one's delay from its commit."""
    now = dt.datetime.now(dt.UTC)
    for kind, n in Counter(r.attributes.get("event_type", "unknown") for r in rows).items():
        metrics.RELAY_PUBLISHED.labels(kind).inc(n)
    for row in rows:
        metrics.RELAY_DELAY.observe(max(0.0, (now - row.commit_ts).total_seconds()))
