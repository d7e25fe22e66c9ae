"""What ``redis-spanner status`` reports: the pipeline's state on one screen, read without
changing anything, and the thresholds that make it a probe.

- the outbox: rows waiting per shard and the age of the oldest (a read-only snapshot);
- the relays that announced themselves, and the shards each one leases;
- the dead letters by reason and the oldest one (peeked: pulled, then released at once with
  an ack deadline of 0, as ``dlq list`` does);
- the subscription's backlog, from Cloud Monitoring where the platform has it (the emulator
  has none: it is reported as unavailable);
- lag percentiles from a worker's ``/metrics``, when given.
"""

from __future__ import annotations

import datetime as dt
import urllib.request
from collections import Counter
from dataclasses import dataclass
from typing import Any

from redis_spanner.schemas.errors import ConfigError, TransientError
from redis_spanner.schemas.settings import Settings

LAG_METRIC = "redis_spanner_consumer_lag_seconds"
PERCENTILES = (0.5, 0.9, 0.99)
DEAD_LETTER_SCAN = 10_000
METRICS_SECONDS = 5.0


@dataclass(frozen=True)
class Thresholds:
    """Crossing any of these makes ``status`` exit 1 (None: not checked)."""

    max_backlog: int | None = None
    max_oldest_seconds: float | None = None
    max_dead_letters: int | None = None
    max_lag_p99_seconds: float | None = None


def outbox(database: Any) -> dict[str, Any]:
    """Backlog and oldest row per shard, the relays and their leases, in one snapshot."""
    from redis_spanner.schemas.spanner_errors import translate

    try:
        with database.snapshot(multi_use=True) as snapshot:
            now = next(iter(snapshot.execute_sql("SELECT CURRENT_TIMESTAMP()")))[0]
            shards = list(snapshot.execute_sql(
                "SELECT Shard, COUNT(*), MIN(CommitTs) FROM Outbox GROUP BY Shard "
                "ORDER BY Shard"))
            relays = list(snapshot.execute_sql(
                "SELECT Owner, ExpiresAt FROM OutboxRelay ORDER BY Owner"))
            leases = list(snapshot.execute_sql(
                "SELECT Shard, Owner, ExpiresAt FROM OutboxLease ORDER BY Shard"))
    except Exception as e:
        raise translate(e, "spanner read of the outbox") from e

    def age(at: dt.datetime | None) -> float | None:
        return None if at is None else round(max(0.0, (now - at).total_seconds()), 3)

    per_shard = [{"shard": shard, "rows": count, "oldest_seconds": age(oldest)}
                 for shard, count, oldest in shards]
    leased: dict[str, list[int]] = {}
    for shard, owner, expires in leases:
        if expires > now:
            leased.setdefault(owner, []).append(shard)
    live = [owner for owner, expires in relays if expires > now]
    ages = [s["oldest_seconds"] for s in per_shard if s["oldest_seconds"] is not None]
    return {
        "backlog": sum(s["rows"] for s in per_shard),
        "oldest_seconds": max(ages) if ages else None,
        "shards": per_shard,
        "relays": [{"owner": owner, "shards": leased.get(owner, [])}
                   for owner in sorted(set(live) | set(leased))],
        "unleased_backlog_shards": [s["shard"] for s in per_shard
                                    if not any(s["shard"] in v for v in leased.values())],
    }


def dead_letters(hold: Any, now: float, scan: int = DEAD_LETTER_SCAN) -> dict[str, Any]:
    """Dead letters by reason and the oldest one; every one stays in place."""
    from redis_spanner.consumers.dead_letter_scan import collect

    letters = collect(hold, limit=scan)
    oldest = max(letters, key=lambda letter: letter.age(now) or 0.0, default=None)
    return {
        "count": len(letters),
        "complete": len(letters) < scan,
        "by_reason": dict(sorted(Counter(letter.reason for letter in letters).items())),
        "oldest": None if oldest is None else {
            "message_id": oldest.message_id, "event_id": oldest.event_id,
            "reason": oldest.reason, "age_seconds": _rounded(oldest.age(now))},
    }


def subscription_backlog(settings: Settings) -> dict[str, Any]:
    """Undelivered messages and the oldest unacked age of the consumer's subscription, from
    Cloud Monitoring (the last value of the last 10 minutes)."""
    if settings.pubsub_emulator_host:
        return {"available": False, "why": "the Pub/Sub emulator exposes no backlog metric"}
    try:
        from google.cloud import monitoring_v3

        client = monitoring_v3.MetricServiceClient()
        end = dt.datetime.now(dt.UTC)
        interval = monitoring_v3.TimeInterval(end_time=end,
                                              start_time=end - dt.timedelta(minutes=10))
        found: dict[str, Any] = {"available": True}
        for name, metric in (("undelivered", "num_undelivered_messages"),
                             ("oldest_unacked_seconds", "oldest_unacked_message_age")):
            series = client.list_time_series(
                name=f"projects/{settings.project}",
                filter=(f'metric.type = "pubsub.googleapis.com/subscription/{metric}" AND '
                        f'resource.labels.subscription_id = "{settings.subscription}"'),
                interval=interval,
                timeout=METRICS_SECONDS)
            points = [p for s in series for p in s.points]
            found[name] = points[0].value.int64_value if points else None
        return found
    except Exception as e:  # a missing permission or API must not hide the rest of the screen
        return {"available": False, "why": f"Cloud Monitoring: {type(e).__name__}: {e}"[:300]}


def worker_lag(url: str) -> dict[str, Any]:
    """Lag percentiles since the worker started, from its Prometheus lag histogram."""
    from prometheus_client.parser import text_string_to_metric_families

    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"--worker-metrics {url!r} is not an http(s) URL")
    try:
        with urllib.request.urlopen(url, timeout=METRICS_SECONDS) as response:
            text = response.read().decode("utf-8", "replace")
    except (OSError, ValueError) as e:
        raise TransientError(f"cannot read worker metrics at {url}: "
                             f"{getattr(e, 'reason', None) or e}") from None
    buckets: dict[float, float] = {}
    total = 0.0
    for family in text_string_to_metric_families(text):
        if family.name != LAG_METRIC:
            continue
        for sample in family.samples:
            if sample.name == f"{LAG_METRIC}_bucket":
                bound = float(sample.labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
            elif sample.name == f"{LAG_METRIC}_count":
                total += sample.value
    if not buckets:
        raise TransientError(f"worker metrics at {url} have no {LAG_METRIC}")
    return {"events": int(total),
            **{f"p{round(q * 100)}": quantile(q, buckets) for q in PERCENTILES}}


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """Prometheus' ``histogram_quantile``: linear within the bucket that holds rank q;
    the highest finite bound when the rank falls in +Inf; None with no observation."""
    bounds = sorted(buckets)
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if bound == float("inf"):
                return lower
            inside = count - below
            return round(lower + (bound - lower) * ((rank - below) / inside if inside else 1), 4)
        lower, below = bound, count
    return lower


def breaches(status: dict[str, Any], limits: Thresholds) -> list[str]:
    """One line per threshold crossed."""
    crossed = []
    box, dead, lag = status["outbox"], status["dead_letters"], status.get("worker_lag")
    if limits.max_backlog is not None and box["backlog"] > limits.max_backlog:
        crossed.append(f"outbox backlog {box['backlog']} > --max-backlog {limits.max_backlog}")
    oldest = box["oldest_seconds"]
    if limits.max_oldest_seconds is not None and oldest is not None \
            and oldest > limits.max_oldest_seconds:
        crossed.append(f"oldest outbox row {oldest:.0f}s > --max-oldest-seconds "
                       f"{limits.max_oldest_seconds:g}")
    if limits.max_dead_letters is not None and dead["count"] > limits.max_dead_letters:
        crossed.append(f"dead letters {dead['count']} > --max-dead-letters "
                       f"{limits.max_dead_letters}")
    p99 = lag.get("p99") if lag else None
    if limits.max_lag_p99_seconds is not None and p99 is not None \
            and p99 > limits.max_lag_p99_seconds:
        crossed.append(f"lag p99 {p99}s > --max-lag-p99 {limits.max_lag_p99_seconds:g}")
    return crossed


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
