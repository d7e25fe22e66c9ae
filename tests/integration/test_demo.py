"""The demo on the session's stack, next to a worker already consuming the shared subscription:
the demo's own subscription and namespace keep that neighbour from taking its events."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import redis
from google.cloud import pubsub_v1  # type: ignore[attr-defined]
from prometheus_client import REGISTRY
from redis_spanner.consumers.worker import PullWorker
from redis_spanner.infra.demo.report import render
from redis_spanner.infra.demo.run import DemoOptions, run_demo
from redis_spanner.schemas.settings import Settings
from rich.console import Console

from tests.waiting import wait_until


def test_a_worker_on_the_shared_subscription_cannot_make_the_demo_lose_events(
    provisioned: Settings, worker: PullWorker, running: Any, redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    """While a worker consumes the shared subscription (and so receives every event the demo
    commits too), the demo still accounts for every event it committed: nothing lost, no stale
    key. Its subscription and dead-letter resources are gone afterwards; the shared ones stay."""
    monkeypatch.setenv("REDIS_SPANNER_STATE_DIR", str(tmp_path))
    running(worker.run)
    out = io.StringIO()
    result = run_demo(DemoOptions(duration=3, write_rate=20, read_rate=20, accounts=30,
                                  relays=1, quiesce_timeout=45),
                      Console(file=out, width=120))
    assert result["committed"] > 30
    assert (result["lost"], result["stale_keys"]) == (0, 0), out.getvalue()
    assert result["applied"] + result["dead_lettered"] == result["committed"]
    # the neighbour saw the demo's events too: it tombstoned their keys in its own namespace
    wait_until(lambda: redis_client.keys(f"{provisioned.namespace}:account:*"), timeout=30)

    subscriber = pubsub_v1.SubscriberClient()
    try:
        subscriber.get_subscription(subscription=provisioned.subscription_path)
        demo_subscriptions = [
            s.name for s in subscriber.list_subscriptions(
                project=f"projects/{provisioned.project}")
            if s.name.startswith(provisioned.subscription_path + "-demo-")]
        assert demo_subscriptions == []
    finally:
        subscriber.close()


def test_demo_fast_path_writes_half_the_keys_with_it_and_reports_stale_reads_for_each_half(
    provisioned: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    """With ``fast_path`` the writers tombstone every other account right after the commit
    (the counter of fast-path tombstones grows, no failure is counted), the run stays coherent,
    and the report gives stale and checked reads for the fast-path keys and the outbox-only
    keys, in the JSON result and the printed table."""
    monkeypatch.setenv("REDIS_SPANNER_STATE_DIR", str(tmp_path))

    def sent() -> float:
        return sum(REGISTRY.get_sample_value("redis_spanner_fast_path_tombstones_total",
                                             {"outcome": o}) or 0.0
                   for o in ("written", "refused"))

    before, failed = sent(), REGISTRY.get_sample_value("redis_spanner_fast_path_failures_total")
    out = io.StringIO()
    console = Console(file=out, width=120)
    result = run_demo(DemoOptions(duration=3, write_rate=20, read_rate=40, accounts=20,
                                  relays=1, quiesce_timeout=45, check_sample=0.5,
                                  fast_path=True), console)
    render(result, console)
    assert (result["lost"], result["stale_keys"]) == (0, 0), out.getvalue()
    assert sent() > before
    assert REGISTRY.get_sample_value("redis_spanner_fast_path_failures_total") == failed
    halves = result["stale_by_writer"]
    assert set(halves) == {"fast_path", "outbox_only"}
    assert all(h["checked_reads"] > 0 for h in halves.values())
    assert sum(h["checked_reads"] for h in halves.values()) == result["checked_reads"]
    assert sum(h["stale_reads"] for h in halves.values()) == result["stale_reads"]
    assert "keys written with the fast path" in out.getvalue()
