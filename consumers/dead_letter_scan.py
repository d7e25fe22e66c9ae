"""One pass over the dead-letter hold subscription, and the tools that need nothing more:
collect (list, show) and purge.

Pub/Sub cannot peek, so every tool works through a ``Scan``: one pass over the hold
subscription that keeps each pulled message leased until the tool acks it or the pass ends,
when every message still held is released. Held leases keep released messages from coming back
within the pass; one that comes back anyway (its lease ran out) is recognised by its message id,
and the pass ends when a pull brings nothing new.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from redis_spanner.consumers.dead_letters import DeadLetter, Filter
from redis_spanner.consumers.messages import Inbound
from redis_spanner.schemas.errors import RedisSpannerError

log = logging.getLogger(__name__)


class Hold(Protocol):
    """The dead-letter hold subscription."""

    def pull(self, *, max_messages: int) -> list[tuple[str, Inbound]]: ...
    def ack(self, ack_ids: Sequence[str]) -> None: ...
    def release(self, ack_ids: Sequence[str]) -> None: ...


class Scan:
    """One pass over the hold subscription; use it as a context manager and iterate batches.

    Every pulled message stays leased until ``ack`` or the end of the pass, which releases the
    rest. Each message is yielded once; the pass ends when a pull brings nothing new.
    """

    def __init__(self, hold: Hold, batch: int = 100) -> None:
        self._hold = hold
        self._batch = batch
        self._held: dict[str, str] = {}  # message id -> its latest ack id
        self._acked: set[str] = set()

    def __enter__(self) -> Scan:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __iter__(self) -> Iterator[list[DeadLetter]]:
        while True:
            fresh: list[DeadLetter] = []
            again: list[str] = []
            for ack_id, message in self._hold.pull(max_messages=self._batch):
                if message.message_id in self._acked:  # redelivered although acked
                    again.append(ack_id)
                    continue
                if message.message_id not in self._held:
                    fresh.append(DeadLetter.of(message))
                self._held[message.message_id] = ack_id  # a lease that ran out was renewed
            self._hold.ack(again)
            if not fresh:
                return
            yield fresh

    def ack(self, letters: Sequence[DeadLetter]) -> None:
        """Delete these dead letters for good."""
        self._hold.ack([self._held[letter.message_id] for letter in letters])
        for letter in letters:
            del self._held[letter.message_id]
            self._acked.add(letter.message_id)

    def release(self) -> None:
        """Make every message still held deliverable again. Best effort: a lease that cannot
        be released runs out after the subscription's ack deadline anyway."""
        held, self._held = list(self._held.values()), {}
        try:
            self._hold.release(held)
        except RedisSpannerError as e:
            log.warning("%d dead letter(s) return after their ack deadline: %s", len(held), e)


def collect(
    hold: Hold, where: Filter | None = None, limit: int | None = None, batch: int = 100
) -> list[DeadLetter]:
    """The matching dead letters, each once, at most ``limit``; all are left in place."""
    where = where or Filter()
    found: list[DeadLetter] = []
    with Scan(hold, batch) as scan:
        for letters in scan:
            found += [letter for letter in letters if where(letter)]
            if limit is not None and len(found) >= limit:
                return found[:limit]
    return found


@dataclass
class PurgeReport:
    purged: int = 0
    kept: int = 0
    failure: RedisSpannerError | None = None
    """What stopped the purge early, if anything."""

    @property
    def error(self) -> str | None:
        return None if self.failure is None else str(self.failure)


def purge(
    hold: Hold, where: Filter, limit: int | None = None, batch: int = 100
) -> PurgeReport:
    """Ack (delete) the matching dead letters, at most ``limit``."""
    report = PurgeReport()
    try:
        with Scan(hold, batch) as scan:
            for letters in scan:
                left = len(letters) if limit is None else limit - report.purged
                chosen = [letter for letter in letters if where(letter)][:left]
                scan.ack(chosen)
                report.purged += len(chosen)
                report.kept += len(letters) - len(chosen)
                if limit is not None and report.purged >= limit:
                    break
    except RedisSpannerError as e:
        report.failure = e
    return report
