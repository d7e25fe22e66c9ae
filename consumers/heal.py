"""The heal loop's bound: a letter that keeps failing while Redis takes writes beside its keys
goes to the dead-letter hold, instead of healing until its retention runs out.

The heal loop (``worker.healer``) feeds the heal subscription to a ``Healer`` standing in front
of the core. When letters fail transiently, the ``Healer`` asks whose failure it is:

- an outage is nobody's: a guarded write of a probe key (``<namespace>:_heal-probe``) fails
  as well, nothing is counted and the letters are released, so an outage of any length heals;
- a letter fails on its own when it fails alone (each failing letter of a failed batch is tried
  again by itself, for at most ``ISOLATION_SECONDS``) while a probe key in the slot of its keys
  (on one server, any key; on a cluster, the same primary and replicas) takes a write. That
  is one heal attempt.

The letter carries its count: an attempt republishes it to the heal topic with
``heal_attempts`` one higher, then acks the delivery. Pub/Sub can't change a message it
redelivers, and its own delivery count needs a dead-letter policy on the heal subscription,
which would forward letters by itself after 5 to 100 deliveries, outages included; a
republished count works alike on the emulator and on Pub/Sub. At ``max_attempts`` the letter
goes to the dead-letter hold as ``heal-exhausted``, with the last error, where ``dlq replay``
republishes it like any other letter (without its count).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Protocol

from redis_spanner.consumers import audit_log, metrics
from redis_spanner.consumers.core import CacheWriter
from redis_spanner.consumers.dead_letters import HEAL_ATTEMPTS
from redis_spanner.consumers.messages import BatchProcessor, Disposition, Inbound, Outcome
from redis_spanner.consumers.pubsub import FORWARDED_DELIVERY_COUNT
from redis_spanner.consumers.telemetry import about
from redis_spanner.schemas.cache import CacheOp
from redis_spanner.schemas.errors import (
    HealExhausted,
    PermanentError,
    RedisSpannerError,
    TransientError,
)
from redis_spanner.schemas.keys import Catalog, hash_tag, internal_key

log = logging.getLogger(__name__)

PROBE = "heal-probe"
ISOLATION_SECONDS = 20.0
"""A third of the heal subscription's ack deadline: letters not retried alone by then are
released uncounted, and the next pull tries them."""

Probe = Callable[[Sequence[str | None]], bool]
"""Whether Redis takes a guarded write now in the slot of each hash tag (None: any slot)."""


class Topic(Protocol):
    def publish(self, data: bytes, attributes: Mapping[str, str]) -> str: ...


class DeadLetters(Protocol):
    def send(self, message: Inbound, error: PermanentError, *, source: str | None = None,
             attempts: int | None = None) -> None: ...


def probe_writes(cache: CacheWriter, namespace: str) -> Probe:
    """A ``Probe`` that writes tombstones at the current time to probe keys, through the guard
    and the replica WAIT like any batch."""
    def writable(tags: Sequence[str | None]) -> bool:
        now = time.time_ns()
        try:
            cache.apply([CacheOp.invalidate(internal_key(namespace, PROBE, tag), now)
                         for tag in dict.fromkeys(tags)])
        except RedisSpannerError as e:
            log.debug("heal probe failed: %s", e)
            return False
        return True
    return writable


def heal_attempts(message: Inbound) -> int:
    raw = message.attributes.get(HEAL_ATTEMPTS, "")
    return int(raw) if raw.isascii() and raw.isdigit() else 0


def _failed(outcome: Outcome) -> bool:
    return outcome.disposition is Disposition.NACK and isinstance(outcome.error, TransientError)


class Healer:
    """The core behind the heal loop, bounded: see the module docstring. With ``max_attempts``
    0 it only passes batches through (letters heal until their retention ends)."""

    def __init__(self, processor: BatchProcessor, catalog: Catalog, topic: Topic,
                 dead_letters: DeadLetters, writable: Probe, *, max_attempts: int,
                 source: str, clock: Callable[[], float] = time.monotonic) -> None:
        self._processor = processor
        self._catalog = catalog
        self._topic = topic
        self._dead_letters = dead_letters
        self._writable = writable
        self._max_attempts = max_attempts
        self._source = source
        """The heal subscription: where a heal-exhausted letter says it came from."""
        self._clock = clock

    def process(self, batch: Sequence[Inbound]) -> list[Outcome]:
        outcomes = self._processor.process(batch)
        failed = [i for i, o in enumerate(outcomes) if _failed(o)]
        if not failed or not self._max_attempts:
            return outcomes
        if len(failed) > 1:
            if not self._writable([None]):
                return outcomes  # an outage: nobody's failure, nothing counted
            deadline = self._clock() + ISOLATION_SECONDS
            for i in failed:
                if self._clock() > deadline:
                    break
                outcomes[i] = self._processor.process([outcomes[i].message])[0]
        return [self._counted(o) if _failed(o) else o for o in outcomes]

    def _counted(self, outcome: Outcome) -> Outcome:
        """One heal attempt against the letter, if its failure is its own: republished with its
        count, or dead-lettered at ``max_attempts``. Released uncounted otherwise."""
        if not self._writable(self._tags(outcome)):
            return outcome
        message = outcome.message
        attempts = heal_attempts(message) + 1
        if attempts >= self._max_attempts:
            return self._exhausted(outcome, attempts)
        try:
            self._topic.publish(message.data, {**message.attributes, HEAL_ATTEMPTS: str(attempts)})
        except RedisSpannerError as e:
            log.warning("could not count heal attempt %d of %s, releasing it: %s", attempts,
                        message.message_id, e, extra=about(message, outcome.event))
            return outcome
        metrics.HEAL_ATTEMPTS.labels("requeued").inc()
        log.debug("heal attempt %d of %d failed for %s: %s", attempts, self._max_attempts,
                  message.message_id, outcome.error, extra=about(message, outcome.event))
        return replace(outcome, disposition=Disposition.ACK)  # its republished copy heals on

    def _exhausted(self, outcome: Outcome, attempts: int) -> Outcome:
        message = outcome.message
        error = HealExhausted(f"gave up after {attempts} heal attempts: {outcome.error}")
        held = replace(message, attributes={**message.attributes, HEAL_ATTEMPTS: str(attempts)})
        forwarded = message.attributes.get(FORWARDED_DELIVERY_COUNT, "")
        before = int(forwarded) if forwarded.isascii() and forwarded.isdigit() else 0
        try:
            self._dead_letters.send(held, error, source=self._source, attempts=before + attempts)
        except TransientError as e:
            log.warning("could not dead-letter %s after %d heal attempts, releasing it: %s",
                        message.message_id, attempts, e, extra=about(message, outcome.event))
            return outcome
        metrics.HEAL_ATTEMPTS.labels("exhausted").inc()
        metrics.DEAD_LETTERED.labels(error.reason).inc()
        done = Outcome(message, Disposition.ACK, outcome.event,
                       dead_letter_reason=error.reason, error=error)
        audit_log.record([done])
        log.warning("dead-lettered %s: %s: %s", message.message_id, error.reason, error,
                    extra={**about(message, outcome.event), "reason": error.reason})
        return done

    def _tags(self, outcome: Outcome) -> list[str | None]:
        """The hash tags of the letter's keys: a probe there meets what its writes meet."""
        if outcome.event is None:
            return [None]
        try:
            targets = self._catalog.targets(outcome.event)
        except PermanentError:
            return [None]
        return [hash_tag(t.cache_key.key) for t in targets] or [None]
