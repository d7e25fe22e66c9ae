"""The relay: read pending outbox rows of the shards this relay leases, publish, delete.

Delivery is at least once: rows are deleted only after Pub/Sub acknowledged every publish, so a
relay killed anywhere republishes on restart and loses nothing. Several relays run at once:
each publishes only the shards it leases, and only while the lease has time left.

Deleting is off the latency path: published rows are remembered until their delete commits, so
a delete that waits for a busy Spanner neither delays the next publish nor repeats this one.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from redis_spanner.producers import metrics
from redis_spanner.producers.outbox import OUTBOX_SHARDS
from redis_spanner.producers.outbox_store import Claim, OutboxRow
from redis_spanner.schemas.errors import TransientError
from redis_spanner.schemas.failpoints import failpoint

log = logging.getLogger(__name__)


class OutboxStore(Protocol):
    def claim(self, owner: str, lease_seconds: float) -> Claim: ...
    def live_relays(self) -> int: ...
    def release(self, owner: str) -> None: ...
    def pending(self, shards: set[int], limit: int) -> list[OutboxRow]: ...
    def delete(self, rows: list[OutboxRow]) -> None: ...
    def backlog(self) -> tuple[int, object]: ...


class Publisher(Protocol):
    def publish(self, rows: Sequence[OutboxRow]) -> list[str]: ...


@dataclass(frozen=True)
class Lease:
    """The shards held and until when (local monotonic clock), replaced as a whole."""

    shards: frozenset[int]
    deadline: float


@dataclass(frozen=True)
class RelayConfig:
    lease_seconds: float = 10.0
    poll_interval: float = 0.05
    batch: int = 500
    backlog_every: float = 5.0


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
        self._lease = Lease(frozenset(), 0.0)
        self._share = 0
        self._next_balance_check = 0.0
        self._next_backlog = 0.0
        self._published: dict[str, OutboxRow] = {}
        """Rows Pub/Sub holds whose delete has not committed yet."""

    @property
    def shards(self) -> frozenset[int]:
        return self._lease.shards

    def step(self) -> int:
        """One round: renew leases when due, then publish. Returns the rows published."""
        self._renew_if_due()
        return self._publish_round()

    def _publish_round(self) -> int:
        """Publish new pending rows of the leased shards, then delete what Pub/Sub holds."""
        lease = self._lease
        if any(r.shard not in lease.shards
                   for r in self._published.values()):
            # Rows of a shard now leased elsewhere are that relay's to publish and delete.
            self._published = {k: r for k, r in self._published.items()
                               if r.shard in lease.shards}
        if not lease.shards:
            return 0
        found = self._store.pending(set(lease.shards), self._config.batch + len(self._published))
        rows = [r for r in found if r.event_id not in self._published]
        if rows and self._lease_has(self._config.lease_seconds / 3):
            self._publisher.publish(rows)
            failpoint("relay.after_publish")
            self._published.update((r.event_id, r) for r in rows)
            metrics.RELAY_PUBLISHED.inc(len(rows))
            if self._on_published:
                self._on_published(rows)
        else:
            rows = []
        self._delete_published()
        return len(rows)

    def _delete_published(self) -> None:
        if not self._published:
            return
        batch = list(self._published.values())
        try:
            self._store.delete(batch)
        except TransientError as e:  # they stay remembered; the next round tries again
            log.debug("relay %s: delete of %d row(s) deferred: %s", self.owner, len(batch), e)
            return
        for row in batch:
            self._published.pop(row.event_id, None)

    def run(self, stop: threading.Event) -> None:
        """Loop until ``stop`` is set, backing off while Spanner or Pub/Sub is unavailable.

        Leases are renewed by a thread of their own, so a renewal that waits on a busy Spanner
        never holds up publishing while the current lease still has time."""
        failures = 0
        log.info("relay %s started", self.owner)
        done = threading.Event()
        keeper = threading.Thread(target=self._keep_leases, args=(stop, done), daemon=True,
                                  name=f"{self.owner}-leases")
        keeper.start()
        try:
            while not stop.is_set():
                try:
                    sent = self._publish_round()
                    self._report_backlog()
                    failures = 0
                except TransientError as e:
                    failures += 1
                    delay = min(0.1 * 2**failures, 10.0)
                    log.warning("relay %s: %s; retrying in %.1fs", self.owner, e, delay)
                    stop.wait(delay)
                    continue
                if sent < self._config.batch:
                    stop.wait(self._config.poll_interval)
        finally:
            done.set()
            keeper.join(timeout=self._config.lease_seconds)
            self._release()

    def _keep_leases(self, stop: threading.Event, done: threading.Event) -> None:
        failures = 0
        while not (stop.is_set() or done.is_set()):
            try:
                self._renew_if_due()
                failures = 0
            except TransientError as e:
                failures += 1
                log.warning("relay %s: lease renewal failed: %s", self.owner, e)
                done.wait(min(0.05 * 2**failures, 1.0))
                continue
            done.wait(min(0.25, self._config.lease_seconds / 20))

    def _renew_if_due(self) -> None:
        # Renew once a third of the lease has passed, so a slow renewal never outlives it;
        # claim sooner when the shards are not fairly shared (a relay joined or left).
        if self._lease_has(self._config.lease_seconds * 2 / 3) and not self._unbalanced():
            return
        started = self._clock()
        claim = self._store.claim(self.owner, self._config.lease_seconds)
        self._lease = Lease(claim.shards, started + self._config.lease_seconds)
        self._share = claim.share
        metrics.RELAY_SHARDS.set(len(claim.shards))

    def _unbalanced(self) -> bool:
        """Checked about once a second with a read: holding less than this relay's share
        (someone may have freed shards), or more than a fair share now that relays joined."""
        now = self._clock()
        if now < self._next_balance_check:
            return False
        self._next_balance_check = now + 1.0
        held = len(self._lease.shards)
        if held < self._share:
            return True
        relays = max(self._store.live_relays(), 1)
        return held > -(-OUTBOX_SHARDS // relays)

    def _lease_has(self, seconds: float) -> bool:
        return self._lease.deadline - self._clock() > seconds

    def _report_backlog(self) -> None:
        now = self._clock()
        if now < self._next_backlog:
            return
        self._next_backlog = now + self._config.backlog_every
        count, oldest = self._store.backlog()
        metrics.OUTBOX_BACKLOG.set(count)
        age = metrics.age_seconds(oldest)
        metrics.OUTBOX_OLDEST_AGE.set(age)
        if count:
            log.info("outbox backlog: %d row(s), oldest %.1fs old", count, age)

    def _release(self) -> None:
        try:
            self._store.release(self.owner)
        except Exception as e:  # a dead relay's leases expire on their own
            log.warning("relay %s could not release its leases: %s", self.owner, e)
        self._lease = Lease(frozenset(), 0.0)
