"""Where the reading of one change-stream partition stands: the publishes in flight, and the
checkpoint that becomes safe once Pub/Sub confirmed them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from redis_spanner.producers.publisher import Pending


class Notifying:
    """A ``Pending`` that reports its messages once Pub/Sub holds them."""

    def __init__(self, pending: Pending, notify: Callable[[], None]) -> None:
        self._pending = pending
        self._notify = notify

    def __len__(self) -> int:
        return len(self._pending)

    def wait(self) -> list[str]:
        ids = self._pending.wait()
        self._notify()
        return ids


class Cursor:
    """Where a partition's reading stands: the publishes in flight, and the checkpoint that
    becomes safe once they are confirmed."""

    def __init__(self, checkpoint: dt.datetime) -> None:
        self.safe = checkpoint
        """Every event before this was confirmed by Pub/Sub (and those at it, if read)."""
        self._reached = checkpoint
        self._in_flight: list[Pending | Notifying] = []
        self.saved_at = 0.0

    def sent(self, commit_ts: dt.datetime, pending: Pending | Notifying | None) -> None:
        if pending is not None:
            self._in_flight.append(pending)
        self._reached = max(self._reached, commit_ts)

    def reached(self, timestamp: dt.datetime) -> None:
        self._reached = max(self._reached, timestamp)

    def confirm(self) -> int:
        """Wait for every publish in flight; raises ``TransientError`` if any failed."""
        count = 0
        for pending in self._in_flight:
            pending.wait()
            count += len(pending)
        self._in_flight = []
        self.safe = self._reached
        return count
