"""The consumer core: decode, route to keys, coalesce, rewarm, apply, decide.

Transport-free: the pull worker and the push endpoint hand it ``Inbound`` messages and act on
the ``Outcome``s. It talks to Redis, Spanner and the dead-letter topic through small protocols.

The ack policy, in one place:
- a ``PermanentError`` (bad envelope, unknown type, refused key) dead-letters the message at
  once with its reason, then acks; if the dead-letter publish fails, it nacks;
- a ``TransientError`` (Redis or Spanner unavailable) is retried in process, bounded in
  attempts and time (and cut short when the process is told to stop), then nacked, so Pub/Sub
  redelivers with backoff. It is never dead-lettered: after max_delivery_attempts Pub/Sub
  forwards it to the heal topic, which the worker drains once Redis and Spanner answer again
  (``redis_spanner.consumers.worker``), so an outage of any length ends with the event applied
  (the heal loop holds back only a letter that keeps failing on its own:
  ``redis_spanner.consumers.heal``);
- otherwise the message is acked, and only after Redis has applied (or refused as superseded)
  every write the event asked for.

A failure of the whole batch blames no single message: every one is nacked. A rewarm whose
Spanner read fails becomes an invalidation, so the batch's other writes still apply. A rewarm
whose value has no cached form (``UncacheableValue``) also becomes an invalidation, and the
events that asked for it are dead-lettered with that reason.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from redis_spanner.consumers import audit_log, metrics
from redis_spanner.consumers.messages import Disposition, Inbound, Outcome
from redis_spanner.consumers.plan import Plan, coalesce
from redis_spanner.consumers.telemetry import about, batch_span, log_batch
from redis_spanner.schemas.cache import Applied, CacheOp
from redis_spanner.schemas.envelope import Event, decode
from redis_spanner.schemas.errors import (
    PermanentError,
    RedisSpannerError,
    TransientError,
    UncacheableValue,
)
from redis_spanner.schemas.failpoints import failpoint
from redis_spanner.schemas.keys import Action, CacheKey, Catalog, KeyTarget
from redis_spanner.schemas.retrying import retrying
from redis_spanner.schemas.versions import DEFAULT_MAX_SKEW_SECONDS

log = logging.getLogger(__name__)


class CacheWriter(Protocol):
    def apply(self, ops: Sequence[CacheOp]) -> list[Applied]: ...


class RowReader(Protocol):
    def read(self, keys: Sequence[CacheKey]) -> tuple[dict[str, Any], int]: ...


class DeadLetterSink(Protocol):
    def send(self, message: Inbound, error: PermanentError) -> None: ...


class Processor:
    def __init__(
        self,
        catalog: Catalog,
        cache: CacheWriter,
        rows: RowReader,
        dead_letters: DeadLetterSink,
        *,
        retry_attempts: int = 4,
        retry_seconds: float = 5.0,
        max_version_skew_seconds: float = DEFAULT_MAX_SKEW_SECONDS,
        observer: Callable[[list[Outcome]], None] | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self._catalog = catalog
        self._cache = cache
        self._rows = rows
        self._dead_letters = dead_letters
        self._retry_attempts = retry_attempts
        self._retry_seconds = retry_seconds
        self._max_skew_seconds = max_version_skew_seconds
        self._observer = observer
        self._stop = stop
        """Set when the process is stopping: retries end at once and the batch is nacked."""
        self.coalesced = 0
        """Key writes folded into a newer one of the same batch, since this processor began."""

    def process(self, batch: Sequence[Inbound]) -> list[Outcome]:
        """Decide every message of ``batch``; never raises for a message's sake."""
        start = time.perf_counter()
        with batch_span(batch):
            done = self._decide(batch)
        elapsed = time.perf_counter() - start
        metrics.BATCH.observe(elapsed)
        metrics.count(done)
        audit_log.record(done)
        if log.isEnabledFor(logging.DEBUG):
            log_batch(log, done, elapsed)
        if self._observer:
            self._observer(done)
        return done

    def _decide(self, batch: Sequence[Inbound]) -> list[Outcome]:
        outcomes: list[Outcome | None] = [None] * len(batch)
        routed: list[tuple[int, Event, list[KeyTarget]]] = []
        for i, message in enumerate(batch):
            try:
                event = decode(message.data, max_skew_seconds=self._max_skew_seconds)
                routed.append((i, event, self._catalog.targets(event)))
            except PermanentError as e:
                outcomes[i] = self._dead_letter(message, e)
            except Exception as e:  # a message that trips a bug is set aside, not fatal
                log.exception("message %s could not be routed", message.message_id)
                outcomes[i] = self._dead_letter(
                    message, PermanentError(f"unexpected {type(e).__name__}: {e}"))
        if routed:
            for i, outcome in self._apply(batch, routed):
                outcomes[i] = outcome
        return [o for o in outcomes if o is not None]

    def _apply(
        self, batch: Sequence[Inbound], routed: list[tuple[int, Event, list[KeyTarget]]]
    ) -> list[tuple[int, Outcome]]:
        plan = coalesce(t for _, _, targets in routed for t in targets)
        metrics.COALESCED.inc(plan.coalesced)
        self.coalesced += plan.coalesced
        try:
            results, uncacheable = retrying(self._retry_attempts, self._retry_seconds,
                                            until=self._stop, on_retry=metrics.retried)(
                lambda: self._write(plan)
            )
        except Exception as e:  # a bug must not kill the loop either: redeliver
            if isinstance(e, RedisSpannerError):
                log.warning("batch of %d event(s) not applied: %s", len(routed), e)
                error: RedisSpannerError = e
            else:
                log.exception("batch of %d event(s) failed unexpectedly", len(routed))
                error = TransientError(f"unexpected {type(e).__name__}: {e}")
            return [(i, Outcome(batch[i], Disposition.NACK, event, error=error))
                    for i, event, _ in routed]
        changed = {r.op.key for r in results if r.applied}
        outcomes: list[tuple[int, Outcome]] = []
        for i, event, targets in routed:
            keys = [t.cache_key.key for t in targets]
            refused = [uncacheable[k] for k in keys if k in uncacheable] if uncacheable else None
            if refused:
                outcomes.append((i, self._dead_letter(batch[i], refused[0], event)))
            else:
                outcomes.append((i, Outcome(batch[i], Disposition.ACK, event,
                                            changed=not changed.isdisjoint(keys))))
        return outcomes

    def _write(self, plan: Plan) -> tuple[list[Applied], dict[str, UncacheableValue]]:
        """The batch's writes and, by key, the rewarms invalidated for want of a cached form."""
        ops = [CacheOp.invalidate(k.cache_key.key, k.version)
               for k in plan.by_action(Action.INVALIDATE)]
        uncacheable: dict[str, UncacheableValue] = {}
        ops += self._rewarm_ops(plan.by_action(Action.REWARM), uncacheable)
        failpoint("consumer.before_apply")
        with metrics.timed("redis", "apply"):
            results = self._cache.apply(ops)
        failpoint("consumer.after_apply")
        return results, uncacheable

    def _rewarm_ops(
        self, rewarm: list[KeyTarget], uncacheable: dict[str, UncacheableValue]
    ) -> list[CacheOp]:
        """Fresh values at the snapshot's version. If Spanner can't be read, or the snapshot is
        older than an event, those keys are invalidated instead: the invalidations of the
        batch still apply, and readers refill the keys. So is a value with no cached form,
        recorded in ``uncacheable``."""
        if not rewarm:
            return []
        try:
            values, read_version = retrying(3, 1.0, until=self._stop,
                                            on_retry=metrics.retried)(
                lambda: self._read([k.cache_key for k in rewarm])
            )
        except RedisSpannerError as e:
            log.warning("rewarm read of %d key(s) failed, invalidating them: %s", len(rewarm), e)
            metrics.REWARM_FALLBACKS.inc(len(rewarm))
            return [CacheOp.invalidate(k.cache_key.key, k.version) for k in rewarm]
        ops = []
        for k in rewarm:
            key = k.cache_key.key
            if read_version < k.version:
                ops.append(CacheOp.invalidate(key, k.version))
                continue
            try:
                ops.append(CacheOp.set(key, read_version, values[key]))
            except UncacheableValue as e:
                log.warning("no cached form for %s, invalidating it: %s", key, e)
                uncacheable[key] = e
                ops.append(CacheOp.invalidate(key, k.version))
        return ops

    def _read(self, keys: Sequence[CacheKey]) -> tuple[dict[str, Any], int]:
        with metrics.timed("spanner", "read"):
            return self._rows.read(keys)

    def _dead_letter(
        self, message: Inbound, error: PermanentError, event: Event | None = None
    ) -> Outcome:
        fields = about(message, event)
        try:
            with metrics.timed("pubsub", "publish_dead_letter"):
                self._dead_letters.send(message, error)
        except TransientError as e:
            log.warning("dead-letter publish failed, nacking %s: %s", message.message_id, e,
                        extra=fields)
            return Outcome(message, Disposition.NACK, error=e)
        log.info("dead-lettered %s: %s: %s", message.message_id, error.reason, error,
                 extra={**fields, "reason": error.reason})
        return Outcome(message, Disposition.ACK, dead_letter_reason=error.reason, error=error)

