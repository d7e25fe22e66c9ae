"""The pull loops' acks, sent together from one thread.

Every acknowledge call costs the client about as much CPU whether it carries 100 ids or 1,000,
and a pull returns at most 100 messages on the emulator (and often few on a quiet
subscription). So the loops hand their ack ids here and go on pulling; one thread sends
whatever has gathered once ``delay`` has passed since the first id waiting, or at once when a
whole request's worth is waiting. While ``backlog`` ids wait, a loop handing more waits too.

An ack still goes out only after the core has decided its message. One that fails, or is lost
when the process dies before sending it, only means Pub/Sub delivers the message again after
its ack deadline, and applying it again is a no-op.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from redis_spanner.consumers import metrics
from redis_spanner.consumers.pubsub import ACK_CHUNK
from redis_spanner.schemas.errors import TransientError

log = logging.getLogger(__name__)

ACK_DELAY = 0.02
"""Seconds the first waiting ack waits for others to go with it."""
ACK_BACKLOG = 10 * ACK_CHUNK


class AckSender:
    """Acks handed over by any thread, sent by one of its own (``start``, then ``close``)."""

    def __init__(self, send: Callable[[Sequence[str]], None], *, delay: float = ACK_DELAY,
                 backlog: int = ACK_BACKLOG) -> None:
        self._send = send
        self._delay = delay
        self._backlog = backlog
        self._waiting: list[str] = []
        self._since = 0.0
        self._closed = False
        self._ready = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="acks", daemon=True)

    def start(self) -> AckSender:
        self._thread.start()
        return self

    def add(self, ack_ids: Sequence[str]) -> None:
        """Queue ``ack_ids``; waits while ``backlog`` ids are already waiting. Once closed,
        sends them itself."""
        if not ack_ids:
            return
        with self._ready:
            while len(self._waiting) >= self._backlog and not self._closed:
                self._ready.wait(0.1)
            if not self._closed:
                if not self._waiting:
                    self._since = time.monotonic()
                self._waiting += ack_ids
                self._ready.notify_all()
                return
        self._settle(list(ack_ids))

    def close(self, timeout: float | None = None) -> None:
        """Send what waits, then stop the thread (waiting at most ``timeout`` seconds)."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._waiting and not self._closed:
                    self._ready.wait()
                while len(self._waiting) < ACK_CHUNK and not self._closed:
                    left = self._since + self._delay - time.monotonic()
                    if left <= 0:
                        break
                    self._ready.wait(left)
                batch, self._waiting = self._waiting, []
                self._ready.notify_all()
                if not batch and self._closed:
                    return
            self._settle(batch)

    def _settle(self, ack_ids: list[str]) -> None:
        try:
            with metrics.timed("pubsub", "ack"):
                self._send(ack_ids)
        except TransientError as e:  # unacked messages come back after their deadline
            log.warning("could not ack %d message(s): %s", len(ack_ids), e)
        except Exception:  # the sender must outlive any failure: the loops depend on it
            log.exception("could not ack %d message(s)", len(ack_ids))
