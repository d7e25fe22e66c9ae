"""The relay's shard leases, kept by a thread of their own.

Renewal runs beside publishing, so a renewal that waits on a busy Spanner never holds up a
publish while the current lease still has time. A failed renewal is retried with backoff; a
keeper that has not renewed for ``give_up`` seconds (its lease long lapsed) gives up, and the
relay stops with ``LeaseLost`` so the platform restarts the process.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from redis_spanner.producers import metrics
from redis_spanner.producers.outbox import OUTBOX_SHARDS
from redis_spanner.producers.outbox_store import Claim
from redis_spanner.schemas.errors import TransientError
from redis_spanner.schemas.failpoints import failpoint

log = logging.getLogger(__name__)


class LeaseStore(Protocol):
    def claim(self, owner: str, lease_seconds: float) -> Claim: ...
    def live_relays(self) -> int: ...


class LeaseLost(TransientError):
    """Leases could not be renewed for too long: the relay stops so it can be restarted."""


@dataclass(frozen=True)
class Lease:
    """The shards held and until when (local monotonic clock), replaced as a whole."""

    shards: frozenset[int]
    deadline: float


class LeaseKeeper:
    def __init__(
        self,
        store: LeaseStore,
        owner: str,
        lease_seconds: float,
        give_up: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._owner = owner
        self._seconds = lease_seconds
        self._give_up = give_up
        self._clock = clock
        self.lease = Lease(frozenset(), 0.0)
        self.lost: LeaseLost | None = None
        """Set once the keeper gave up; the relay then stops."""
        self._share = 0
        self._next_balance_check = 0.0
        self._last_renewed = clock()
        self._last_error: str | None = None

    def has(self, seconds: float) -> bool:
        """The lease has more than ``seconds`` left."""
        return self.lease.deadline - self._clock() > seconds

    def keep(self, stop: threading.Event) -> None:
        """Renew until ``stop`` is set or the keeper gives up; no exception ends this loop."""
        failures = 0
        self._last_renewed = self._clock()
        while not stop.is_set():
            try:
                self.renew_if_due()
            except Exception as e:  # any failure is retried until give_up
                failures += 1
                self._last_error = f"{type(e).__name__}: {e}"
                if self.given_up():
                    return
                delay = min(0.1 * 2 ** min(failures, 10), self._seconds / 4, 2.0)
                log.warning("relay %s: lease renewal failed (%s: %s); retrying in %.1fs",
                            self._owner, type(e).__name__, e, delay)
                stop.wait(delay)
                continue
            if failures:
                log.info("relay %s: lease renewal recovered after %d failure(s)",
                         self._owner, failures)
            failures = 0
            self._last_error = None
            self._last_renewed = self._clock()
            stop.wait(min(0.25, self._seconds / 20))

    def given_up(self) -> bool:
        """True once leases went unrenewed for ``give_up`` seconds; sets ``lost`` then. Also
        asked from the publishing loop, since a renewal can hang in a call that never ends."""
        if self.lost is not None:
            return True
        stalled = self._clock() - self._last_renewed
        if stalled < self._give_up:
            return False
        self.lost = LeaseLost(f"relay {self._owner}: shard leases not renewed for "
                              f"{stalled:.0f}s (last error: "
                              f"{self._last_error or 'none; a renewal is still waiting'})")
        log.error("%s", self.lost)
        self.forget()
        metrics.RELAY_SHARDS.set(0)
        return True

    def renew_if_due(self) -> None:
        # Renew once a third of the lease has passed, so a slow renewal never outlives it;
        # claim sooner when the shards are not fairly shared (a relay joined or left).
        if self.has(self._seconds * 2 / 3) and not self._unbalanced():
            return
        started = self._clock()
        failpoint("relay.claim")
        claim = self._store.claim(self._owner, self._seconds)
        self.lease = Lease(claim.shards, started + self._seconds)
        self._share = claim.share
        metrics.RELAY_SHARDS.set(len(claim.shards))

    def forget(self) -> None:
        self.lease = Lease(frozenset(), 0.0)

    def _unbalanced(self) -> bool:
        """Checked about once a second with a read: holding less than this relay's share
        (someone may have freed shards), or more than a fair share now that relays joined."""
        now = self._clock()
        if now < self._next_balance_check:
            return False
        self._next_balance_check = now + 1.0
        held = len(self.lease.shards)
        if held < self._share:
            return True
        relays = max(self._store.live_relays(), 1)
        return held > -(-OUTBOX_SHARDS // relays)
