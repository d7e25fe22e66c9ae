"""Replay: republish dead letters to the events topic.

Replay republishes the original data and attributes to the events topic and acks the dead
letter only once the publish is confirmed, so a replay killed midway loses nothing; at worst an
event is published twice, which the version guard makes harmless. An event is superseded when
Redis holds every key it maps to at its version or newer: replaying it could change nothing.
One that would be dead-lettered again (it does not decode or route) is held back unless the
filter names it by reason or id.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from redis_spanner.consumers.dead_letter_scan import Hold, Scan
from redis_spanner.consumers.dead_letters import (
    HEAL_ATTEMPTS,
    REPLAY_COUNT,
    DeadLetter,
    Filter,
    why,
)
from redis_spanner.consumers.pubsub import DEAD_LETTER_PREFIX
from redis_spanner.schemas.cache import Entry
from redis_spanner.schemas.errors import PermanentError, RedisSpannerError
from redis_spanner.schemas.failpoints import failpoint
from redis_spanner.schemas.keys import Catalog, KeyTarget

REPLAYED_FROM = "replayed_from"
# Not republished: the dead-letter story, what Pub/Sub adds when it forwards, the prefix
# Pub/Sub reserves for itself (refused on publish), and the heal count (a replay heals afresh).
_NOT_REPUBLISHED = (DEAD_LETTER_PREFIX, "CloudPubSub", "goog", HEAL_ATTEMPTS)


class Topic(Protocol):
    def publish(self, data: bytes, attributes: Mapping[str, str]) -> str: ...


class Entries(Protocol):
    def get(self, keys: Sequence[str]) -> list[Entry | None]: ...


def replay_attributes(letter: DeadLetter) -> dict[str, str]:
    """The original attributes, without the dead-letter story, Pub/Sub's own ones and the heal
    count, plus where the replay came from and how many times the event has been replayed."""
    kept = {k: v for k, v in letter.attributes.items() if not k.startswith(_NOT_REPUBLISHED)}
    kept[REPLAYED_FROM] = letter.message_id
    kept[REPLAY_COUNT] = str(letter.replay_count + 1)
    return kept


def superseded(targets: Sequence[KeyTarget], entries: Mapping[str, Entry | None]) -> bool:
    """Whether Redis already holds every key at the event's version or a newer one, so that
    replaying the event could change nothing."""
    return bool(targets) and all(
        (entry := entries.get(t.cache_key.key)) is not None and entry.version >= t.version
        for t in targets
    )


def routes(letter: DeadLetter, catalog: Catalog) -> list[KeyTarget] | PermanentError:
    """The keys the event maps to, or why this consumer would dead-letter it again."""
    if letter.event is None:
        return letter.problem or PermanentError("no event")
    try:
        return catalog.targets(letter.event)
    except PermanentError as e:
        return e


class Verdict(StrEnum):
    REPLAYED = "replayed"
    SUPERSEDED_DROPPED = "superseded-dropped"
    SUPERSEDED_KEPT = "superseded-kept"
    SKIPPED = "skipped"
    HELD_BACK = "held-back"
    """Would fail again (undecodable, unroutable) and was not named by --id or --reason."""
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Decision:
    message_id: str
    event_id: str | None
    verdict: Verdict
    detail: str = ""


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    where: Filter = field(default_factory=Filter)
    limit: int | None = None
    dry_run: bool = False
    drop_superseded: bool = False
    rate: float | None = None
    """Republishes per second; ``None`` for as fast as Pub/Sub confirms them."""


@dataclass
class ReplayReport:
    dry_run: bool
    counts: Counter[Verdict] = field(default_factory=Counter)
    decisions: list[Decision] = field(default_factory=list)
    poison_replayed: int = 0
    """Replayed although they will come back to the dead-letter topic."""
    came_back: int = 0
    """Skipped: replayed by this run and dead-lettered again while it ran."""
    failure: RedisSpannerError | None = None
    """What stopped the run early, if anything."""

    @property
    def error(self) -> str | None:
        return None if self.failure is None else str(self.failure)

    def note(self, letter: DeadLetter, verdict: Verdict, detail: str = "") -> None:
        self.counts[verdict] += 1
        if verdict is not Verdict.SKIPPED:
            self.decisions.append(Decision(letter.message_id, letter.event_id, verdict, detail))

    def as_dict(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run,
                **{v.value.replace("-", "_"): self.counts[v] for v in Verdict},
                "poison_replayed": self.poison_replayed, "came_back": self.came_back,
                "error": self.error}


class Pacer:
    """Spaces calls to ``wait`` at most ``rate`` per second; no limit when ``rate`` is None."""

    def __init__(self, rate: float | None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._interval = 1.0 / rate if rate else 0.0
        self._clock = clock
        self._sleep = sleep
        self._next = 0.0

    def wait(self) -> None:
        if not self._interval:
            return
        now = self._clock()
        if self._next > now:
            self._sleep(self._next - now)
            now = self._next
        self._next = now + self._interval


def replay(
    hold: Hold,
    topic: Topic,
    cache: Entries,
    catalog: Catalog,
    options: ReplayOptions,
    *,
    progress: Callable[[Verdict], None] | None = None,
    pacer: Pacer | None = None,
    batch: int = 100,
) -> ReplayReport:
    """Republish the matching dead letters to the events topic; see the module docstring."""
    if options.rate:  # settle each batch well within the hold subscription's ack deadline
        batch = max(1, min(batch, int(options.rate * 20)))
    run = _Replay(topic, cache, catalog, options, pacer or Pacer(options.rate), progress)
    try:
        with Scan(hold, batch) as scan:
            for letters in scan:
                run.batch(scan, letters)
                if run.full:
                    break
    except RedisSpannerError as e:
        run.report.failure = e
        if run.current is not None:
            run.note(run.current, Verdict.FAILED, str(e))
    return run.report


class _Replay:
    def __init__(self, topic: Topic, cache: Entries, catalog: Catalog, options: ReplayOptions,
                 pacer: Pacer, progress: Callable[[Verdict], None] | None) -> None:
        self.report = ReplayReport(options.dry_run)
        self.current: DeadLetter | None = None
        self._topic = topic
        self._cache = cache
        self._catalog = catalog
        self._options = options
        self._pacer = pacer
        self._progress = progress
        self._chosen = 0
        self._replayed: set[str] = set()

    @property
    def full(self) -> bool:
        return self._options.limit is not None and self._chosen >= self._options.limit

    def note(self, letter: DeadLetter, verdict: Verdict, detail: str = "") -> None:
        self.report.note(letter, verdict, detail)
        if self._progress:
            self._progress(verdict)

    def batch(self, scan: Scan, letters: Sequence[DeadLetter]) -> None:
        chosen: list[DeadLetter] = []
        for letter in letters:
            if self.full or not self._options.where(letter):
                self.note(letter, Verdict.SKIPPED)
            elif letter.attributes.get(REPLAYED_FROM) in self._replayed:
                self.report.came_back += 1
                self.note(letter, Verdict.SKIPPED)
            else:
                chosen.append(letter)
                self._chosen += 1
        for letter, routed, is_superseded in self._plan(chosen):
            self.current = letter
            self._settle(scan, letter, routed, is_superseded)
            self.current = None

    def _plan(
        self, letters: Sequence[DeadLetter]
    ) -> list[tuple[DeadLetter, list[KeyTarget] | PermanentError, bool]]:
        """Each letter with its keys (or why it won't route) and whether it is superseded.
        Redis is read once for the whole batch."""
        routed = [(letter, routes(letter, self._catalog)) for letter in letters]
        keys = sorted({t.cache_key.key for _, r in routed if isinstance(r, list) for t in r})
        entries = dict(zip(keys, self._cache.get(keys), strict=True))
        return [(letter, r, isinstance(r, list) and superseded(r, entries))
                for letter, r in routed]

    def _settle(self, scan: Scan, letter: DeadLetter, routed: list[KeyTarget] | PermanentError,
                is_superseded: bool) -> None:
        dry_run = self._options.dry_run
        poison = routed if isinstance(routed, PermanentError) else None
        if poison and not self._options.where.explicit:
            self.note(letter, Verdict.HELD_BACK, f"{why(poison)}; it would be dead-lettered "
                      "again: name it with --id or --reason to replay it anyway")
        elif is_superseded and self._options.drop_superseded:
            if not dry_run:
                scan.ack([letter])
            self.note(letter, Verdict.SUPERSEDED_DROPPED, "Redis holds its version or newer")
        elif is_superseded:
            self.note(letter, Verdict.SUPERSEDED_KEPT,
                      "Redis holds its version or newer; --drop-superseded acks it")
        else:
            if not dry_run:
                self._pacer.wait()
                self._topic.publish(letter.data, replay_attributes(letter))
                failpoint("dlq.after_republish")
                self._replayed.add(letter.message_id)
                scan.ack([letter])
            if poison:
                self.report.poison_replayed += 1
            self.note(letter, Verdict.REPLAYED,
                      f"{why(poison)}; it comes back to the dead-letter topic" if poison else "")
