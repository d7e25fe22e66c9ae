"""Relay metrics (Prometheus). Counters are exposed with the ``_total`` suffix; every duration
is in seconds. The README's metrics table lists each one."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import Counter, Gauge, Histogram

_CALL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

RELAY_PUBLISHED = Counter(
    "redis_spanner_relay_published", "Outbox rows published, by event type", ["type"]
)
RELAY_QUARANTINED = Counter(
    "redis_spanner_relay_quarantined",
    "Outbox rows moved to OutboxQuarantine, by reason class", ["reason"]
)
RELAY_ERRORS = Counter(
    "redis_spanner_relay_errors",
    "Relay rounds that failed and were retried, by error class", ["error"]
)
RELAY_DELAY = Histogram(
    "redis_spanner_relay_delay_seconds",
    "Commit timestamp of an outbox row to Pub/Sub holding its message",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
RELAY_CALLS = Histogram(
    "redis_spanner_relay_call_duration_seconds",
    "Latency of the relay's calls to Spanner and Pub/Sub, by service and operation",
    ["service", "operation"],
    buckets=_CALL_BUCKETS,
)
RELAY_SHARDS = Gauge("redis_spanner_relay_shards", "Outbox shards leased by this relay")
OUTBOX_BACKLOG = Gauge("redis_spanner_outbox_backlog", "Outbox rows waiting to be published")
OUTBOX_OLDEST_AGE = Gauge(
    "redis_spanner_outbox_oldest_age_seconds", "Age of the oldest unpublished outbox row"
)
CHANGESTREAM_PUBLISHED = Counter("redis_spanner_changestream_published",
                                 "Change-stream events Pub/Sub confirmed")
CHANGESTREAM_CHECKPOINT_AGE = Gauge(
    "redis_spanner_changestream_checkpoint_age_seconds",
    "Age of the oldest checkpoint of an unfinished change-stream partition",
)
CHANGESTREAM_PARTITIONS = Gauge("redis_spanner_changestream_partitions",
                                "Change-stream partitions leased by this relay")


@contextmanager
def timed(service: str, operation: str) -> Iterator[None]:
    """Observe the block's duration in ``RELAY_CALLS``, whether it returns or raises."""
    start = time.perf_counter()
    try:
        yield
    finally:
        RELAY_CALLS.labels(service, operation).observe(time.perf_counter() - start)


def age_seconds(oldest: object) -> float:
    if not isinstance(oldest, dt.datetime):
        return 0.0
    return max(0.0, (dt.datetime.now(dt.UTC) - oldest).total_seconds())
FAST_PATH_TOMBSTONES = Counter(
    "redis_spanner_fast_path_tombstones",
    "Tombstones the writer's fast path sent, by outcome (written, or refused by the guard "
    "because the key already held that version or a newer one)",
    ["outcome"],
)
FAST_PATH_FAILURES = Counter(
    "redis_spanner_fast_path_failures",
    "Commits whose fast path failed (the outbox path applies their events later)",
)
