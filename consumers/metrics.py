"""Consumer metrics (Prometheus). Counters are exposed with the ``_total`` suffix; every
duration is in seconds. The README's metrics table lists each one."""

from __future__ import annotations

import collections
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from prometheus_client import Counter, Histogram

if TYPE_CHECKING:
    from redis_spanner.consumers.messages import Outcome

_CALL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

EVENTS = Counter(
    "redis_spanner_consumer_events",
    "Messages decided by the consumer, by outcome (changed, superseded, dead_lettered, nack) "
    "and event type (unknown when the message did not decode)",
    ["outcome", "type"],
)
DEAD_LETTERED = Counter(
    "redis_spanner_consumer_dead_lettered", "Messages sent to the dead-letter topic", ["reason"]
)
HEAL_ATTEMPTS = Counter(
    "redis_spanner_consumer_heal_attempts",
    "Heal attempts a letter failed on its own (alone, while Redis took a write beside its keys), "
    "by what followed: requeued with its count, or exhausted (sent to the dead-letter topic)",
    ["result"],
)
RETRIES = Counter(
    "redis_spanner_consumer_retries",
    "In-process retries of a batch's writes or rewarm reads, and failed pulls retried, by "
    "error class",
    ["error"],
)
COALESCED = Counter(
    "redis_spanner_consumer_coalesced", "Key writes folded into a newer one in the same batch"
)
REWARM_FALLBACKS = Counter(
    "redis_spanner_consumer_rewarm_fallbacks",
    "Rewarms turned into invalidations because Spanner could not be read",
)
FOREIGN_OVERWRITTEN = Counter(
    "redis_spanner_cache_foreign_overwritten",
    "Entries the guard did not write, found and overwritten by a guarded write",
    ["kind"],
)
READS = Counter(
    "redis_spanner_reads",
    "Read-through lookups by result (hit, miss, unconfirmed by verify, waited on a lease, "
    "foreign entry read as a miss, fill not written because its snapshot was too old, fill "
    "refused by the guard because a newer version or a tombstone was there)",
    ["result"],
)
LAG = Histogram(
    "redis_spanner_consumer_lag_seconds",
    "Commit timestamp to applied in Redis",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
BATCH = Histogram(
    "redis_spanner_consumer_batch_duration_seconds",
    "Time to decide one batch, from decode to the last write",
    buckets=_CALL_BUCKETS,
)
CALLS = Histogram(
    "redis_spanner_consumer_call_duration_seconds",
    "Latency of the consumer's calls to Redis, Spanner and Pub/Sub, by service and operation",
    ["service", "operation"],
    buckets=_CALL_BUCKETS,
)


@contextmanager
def timed(service: str, operation: str) -> Iterator[None]:
    """Observe the block's duration in ``CALLS``, whether it returns or raises."""
    start = time.perf_counter()
    try:
        yield
    finally:
        CALLS.labels(service, operation).observe(time.perf_counter() - start)


def retried(error: BaseException) -> None:
    RETRIES.labels(type(error).__name__).inc()


def count(outcomes: Iterable[Outcome]) -> None:
    """Count a batch's outcomes: one increment per label, not per outcome."""
    now = time.time()
    events: collections.Counter[tuple[str, str]] = collections.Counter()
    dead: collections.Counter[str] = collections.Counter()
    observe = LAG.observe
    for outcome in outcomes:
        event = outcome.event
        kind = "unknown" if event is None else event.type.value
        if outcome.dead_letter_reason:
            events["dead_lettered", kind] += 1
            dead[outcome.dead_letter_reason] += 1
        elif event is None or outcome.disposition != "ack":
            events[str(outcome.disposition), kind] += 1
        else:
            events["changed" if outcome.changed else "superseded", kind] += 1
            observe(max(0.0, now - event.version / 1e9))
    for (label, kind), n in events.items():
        EVENTS.labels(label, kind).inc(n)
    for reason, n in dead.items():
        DEAD_LETTERED.labels(reason).inc(n)
