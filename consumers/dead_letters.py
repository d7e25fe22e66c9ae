"""Dead-letter tools: list, show, replay and purge what the hold subscription keeps.

Pub/Sub cannot peek, so every tool works through a ``Scan``: one pass over the hold
subscription that keeps each pulled message leased until the tool acks it or the pass ends,
when every message still held is released. Held leases keep released messages from coming back
within the pass; one that comes back anyway (its lease ran out) is recognised by its message id,
and the pass ends when a pull brings nothing new.

A dead letter tells its story in ``dl_*`` attributes (``consumers.pubsub.DeadLetterPublisher``).
One that Pub/Sub forwarded by itself after max_delivery_attempts has only its original
attributes and Pub/Sub's ``CloudPubSubDeadLetter*`` ones: its reason is
``delivery-attempts-exceeded``.

Replay republishes the original data and attributes to the events topic and acks the dead
letter only once the publish is confirmed, so a replay killed midway loses nothing; at worst an
event is published twice, which the version guard makes harmless. An event is superseded when
Redis holds every key it maps to at its version or newer: replaying it could change nothing.
One that would be dead-lettered again (it does not decode or route) is held back unless the
filter names it by reason or id.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from consumers.messages import Inbound
from consumers.pubsub import DEAD_LETTER_PREFIX
from schemas.cache import Entry
from schemas.envelope import Event, decode
from schemas.errors import PermanentError, RedisSpannerError
from schemas.failpoints import failpoint
from schemas.keys import Catalog, KeyTarget

log = logging.getLogger(__name__)

FORWARDED_REASON = "delivery-attempts-exceeded"
REPLAYED_FROM = "replayed_from"
REPLAY_COUNT = "replay_count"
# Not republished: the dead-letter story, what Pub/Sub adds when it forwards, and the prefix
# Pub/Sub reserves for itself (refused on publish).
_NOT_REPUBLISHED = (DEAD_LETTER_PREFIX, "CloudPubSub", "goog")
_SOURCE_COUNT = "CloudPubSubDeadLetterSourceDeliveryCount"
_SOURCE_SUBSCRIPTION = "CloudPubSubDeadLetterSourceSubscription"
_SOURCE_PUBLISH_TIME = "CloudPubSubDeadLetterSourceTopicPublishTime"


class Hold(Protocol):
    """The dead-letter hold subscription."""

    def pull(self, max_messages: int) -> list[tuple[str, Inbound]]: ...
    def ack(self, ack_ids: Sequence[str]) -> None: ...
    def release(self, ack_ids: Sequence[str]) -> None: ...


class Topic(Protocol):
    def publish(self, data: bytes, attributes: Mapping[str, str]) -> str: ...


class Entries(Protocol):
    def get(self, keys: Sequence[str]) -> list[Entry | None]: ...


@dataclass(frozen=True, slots=True)
class DeadLetter:
    message_id: str
    data: bytes
    attributes: Mapping[str, str]
    published: float | None
    """When it reached the dead-letter topic (seconds since the epoch)."""
    event: Event | None
    problem: PermanentError | None
    """Why ``data`` is not a valid envelope; ``None`` when ``event`` decoded."""

    @classmethod
    def of(cls, message: Inbound) -> DeadLetter:
        try:
            event, problem = decode(message.data), None
        except PermanentError as e:
            event, problem = None, e
        return cls(message.message_id, message.data, dict(message.attributes),
                   message.publish_time, event, problem)

    def _dl(self, name: str) -> str | None:
        return self.attributes.get(DEAD_LETTER_PREFIX + name)

    @property
    def forwarded(self) -> bool:
        """Pub/Sub forwarded it after max_delivery_attempts; the consumer told no story."""
        return self._dl("reason") is None

    @property
    def reason(self) -> str:
        return self._dl("reason") or FORWARDED_REASON

    @property
    def event_id(self) -> str | None:
        return self.attributes.get("event_id") or (self.event.event_id if self.event else None)

    @property
    def event_type(self) -> str | None:
        return self.attributes.get("event_type") or (str(self.event.type) if self.event else None)

    @property
    def table(self) -> str | None:
        return self.attributes.get("table") or (self.event.table if self.event else None)

    @property
    def key(self) -> list[Any] | None:
        """The primary key parts, from the envelope, or from a body that is JSON at least."""
        if self.event:
            return list(self.event.key)
        try:
            body = json.loads(self.data)
        except ValueError:
            return None
        key = body.get("key") if isinstance(body, dict) else None
        return key if isinstance(key, list) else None

    @property
    def attempts(self) -> int | None:
        raw = self._dl("delivery_attempts") or self.attributes.get(_SOURCE_COUNT)
        return int(raw) if raw and raw.isdigit() else None

    @property
    def error(self) -> str:
        if self.forwarded:
            return f"Pub/Sub forwarded it after {self.attempts or '?'} delivery attempts"
        return self._dl("error") or ""

    @property
    def first_failure_time(self) -> str | None:
        return self._dl("first_failure_time") or self.attributes.get(_SOURCE_PUBLISH_TIME)

    @property
    def source_subscription(self) -> str | None:
        return self._dl("source_subscription") or self.attributes.get(_SOURCE_SUBSCRIPTION)

    @property
    def replay_count(self) -> int:
        """How many times this event was replayed before it came back here."""
        raw = self.attributes.get(REPLAY_COUNT, "")
        return int(raw) if raw.isdigit() else 0

    def age(self, now: float) -> float | None:
        return None if self.published is None else max(now - self.published, 0.0)

    def as_dict(self, now: float) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "event_id": self.event_id,
            "event_type": self.event_type,
            "table": self.table,
            "key": self.key,
            "reason": self.reason,
            "forwarded_by_pubsub": self.forwarded,
            "error_class": self._dl("error_class"),
            "error": self.error,
            "attempts": self.attempts,
            "first_failure_time": self.first_failure_time,
            "source_subscription": self.source_subscription,
            "dead_lettered_at": _iso(self.published),
            "age_seconds": _rounded(self.age(now)),
            "replay_count": self.replay_count,
            "decode_error": None if self.problem is None else _why(self.problem),
        }


@dataclass(frozen=True, slots=True)
class Filter:
    """Which dead letters a tool acts on; an empty set matches everything."""

    reasons: frozenset[str] = frozenset()
    types: frozenset[str] = frozenset()
    ids: frozenset[str] = frozenset()
    """Dead-letter message ids or event ids."""

    @property
    def explicit(self) -> bool:
        """Names dead letters by reason or id: enough to replay one that would fail again."""
        return bool(self.reasons or self.ids)

    def __call__(self, letter: DeadLetter) -> bool:
        return (
            (not self.reasons or letter.reason in self.reasons)
            and (not self.types or letter.event_type in self.types)
            and (not self.ids or bool({letter.message_id, letter.event_id} & self.ids))
        )


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
            for ack_id, message in self._hold.pull(self._batch):
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
    error: str | None = None


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
        report.error = str(e)
    return report


def replay_attributes(letter: DeadLetter) -> dict[str, str]:
    """The original attributes, without the dead-letter story and Pub/Sub's own ones, plus
    where the replay came from and how many times the event has been replayed."""
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
    where: Filter = Filter()
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
    error: str | None = None

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
        run.report.error = str(e)
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
            self.note(letter, Verdict.HELD_BACK, f"{_why(poison)}; it would be dead-lettered "
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
                      f"{_why(poison)}; it comes back to the dead-letter topic" if poison else "")


def render_data(data: bytes) -> tuple[str, str]:
    """A payload shown safely: ``("json", pretty)``, ``("text", repr)`` or ``("base64", …)``."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "base64", base64.b64encode(data).decode()
    try:
        return "json", json.dumps(json.loads(text), indent=2, sort_keys=True)
    except ValueError:
        return "text", repr(text)


def _why(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)


def _iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat(timespec="seconds")
