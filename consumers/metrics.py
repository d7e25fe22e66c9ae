"""Consumer metrics (Prometheus)."""

from __future__ import annotations

import collections
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client import Counter, Histogram

if TYPE_CHECKING:
    from redis_spanner.consumers.messages import Outcome

EVENTS = Counter(
    "redis_spanner_consumer_events", "Messages decided by the consumer", ["outcome"]
)
DEAD_LETTERED = Counter(
    "redis_spanner_consumer_dead_lettered", "Messages sent to the dead-letter topic", ["reason"]
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
    "foreign entry read as a miss, fill not written because its snapshot was too old)",
    ["result"],
)
LAG = Histogram(
    "redis_spanner_consumer_lag_seconds",
    "Commit timestamp to applied in Redis",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)


def count(outcomes: Iterable[Outcome]) -> None:
    """Count a batch's outcomes: one increment per label, not per outcome."""
    now = time.time()
    events: collections.Counter[str] = collections.Counter()
    dead: collections.Counter[str] = collections.Counter()
    for outcome in outcomes:
        if outcome.dead_letter_reason:
            events["dead_lettered"] += 1
            dead[outcome.dead_letter_reason] += 1
        elif outcome.event is None or outcome.disposition != "ack":
            events[str(outcome.disposition)] += 1
        else:
            events["changed" if outcome.changed else "superseded"] += 1
            LAG.observe(max(0.0, now - outcome.event.version / 1e9))
    for label, n in events.items():
        EVENTS.labels(label).inc(n)
    for reason, n in dead.items():
        DEAD_LETTERED.labels(reason).inc(n)
