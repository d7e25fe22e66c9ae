"""Relay metrics (Prometheus)."""

from __future__ import annotations

import datetime as dt

from prometheus_client import Counter, Gauge

RELAY_PUBLISHED = Counter("redis_spanner_relay_published", "Outbox rows published")
RELAY_QUARANTINED = Counter(
    "redis_spanner_relay_quarantined", "Outbox rows moved to OutboxQuarantine"
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
