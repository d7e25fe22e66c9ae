"""``redis-spanner status`` on the local stack (the one ``redis-spanner dev up`` runs): the
numbers it shows are the ones put there, it changes nothing, and its thresholds make it a
probe."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from google.cloud import pubsub_v1  # type: ignore[attr-defined]
from prometheus_client import CollectorRegistry, Histogram, start_http_server
from redis_spanner.consumers.dead_letter_scan import collect
from redis_spanner.consumers.messages import Inbound
from redis_spanner.consumers.pubsub import DeadLetterPublisher, HoldSubscription
from redis_spanner.infra.cli.app import app
from redis_spanner.infra.cli.status_report import LAG_METRIC
from redis_spanner.producers.outbox import record, shard_of
from redis_spanner.producers.outbox_store import SpannerOutbox
from redis_spanner.producers.spanner import run_transaction
from redis_spanner.schemas.envelope import Event
from redis_spanner.schemas.errors import RetriesExhausted
from redis_spanner.schemas.events import EventType
from redis_spanner.schemas.settings import Settings, get_settings
from typer.testing import CliRunner, Result

from tests.waiting import wait_until


def cli(*args: str) -> Result:
    get_settings.cache_clear()
    return CliRunner().invoke(app, ["status", "--timeout", "5", *args])


@pytest.fixture
def worker_metrics() -> Iterator[str]:
    """A metrics endpoint whose lag histogram holds 100 known observations."""
    registry = CollectorRegistry()
    lag = Histogram(LAG_METRIC, "lag", registry=registry,
                    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))
    for n in range(100):
        lag.observe(0.04 if n < 90 else 3.0)  # p50 in (0.025, 0.05], p99 in (2.5, 5]
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    yield f"http://127.0.0.1:{server.server_port}/metrics"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def test_status_shows_backlog_relays_dead_letters_and_lag_and_changes_nothing(
    provisioned: Settings, database: Any, worker_metrics: str,
) -> None:
    """Outbox rows per shard with their age, a relay with the shards it leases, dead letters by
    reason with the oldest, the emulator's backlog as unavailable, and lag percentiles from a
    worker's /metrics are all reported as put there; two runs show the same dead letters and
    the outbox keeps its rows."""
    ids: list[str] = []
    for n in range(7):
        def write(tx: Any, n: int = n) -> str:
            return record(tx, EventType.ROW_CHANGED, "Accounts", (f"st-{n}",))
        event_id, _ = run_transaction(database, write)
        ids.append(event_id)
    per_shard: dict[int, int] = {}
    for event_id in ids:
        per_shard[shard_of(event_id)] = per_shard.get(shard_of(event_id), 0) + 1
    claim = SpannerOutbox(database).claim("relay-st", 60.0)

    publisher = DeadLetterPublisher(provisioned.dead_letter_topic_path,
                                    provisioned.subscription_path)
    gave_up = Event("5d1c9e2b-0001", EventType.ROW_CHANGED, "Accounts", ("st-0",), 10**18)
    publisher.send(Inbound("orig-1", gave_up.encode(), gave_up.attributes()),
                   RetriesExhausted("redis unavailable"))
    publisher.close()
    pubsub_v1.PublisherClient().publish(provisioned.dead_letter_topic_path, b"{not json",
                                        dl_reason="undecodable").result()
    hold = HoldSubscription(provisioned.dead_letter_subscription_path, wait=0.5)
    try:
        wait_until(lambda: len(collect(hold)) == 2)
    finally:
        hold.close()

    result = cli("--json", "--worker-metrics", worker_metrics)
    assert result.exit_code == 0, result.stderr + result.stdout
    found = json.loads(result.stdout.strip().splitlines()[-1])
    box = found["outbox"]
    assert box["backlog"] == 7
    assert {s["shard"]: s["rows"] for s in box["shards"]} == per_shard
    assert all(0 <= s["oldest_seconds"] < 600 for s in box["shards"])
    assert box["relays"] == [{"owner": "relay-st", "shards": sorted(claim.shards)}]
    assert box["unleased_backlog_shards"] == sorted(set(per_shard) - claim.shards)
    dead = found["dead_letters"]
    assert dead["count"] == 2 and dead["complete"]
    assert dead["by_reason"] == {"retries-exhausted": 1, "undecodable": 1}
    assert dead["oldest"]["reason"] in dead["by_reason"]
    assert found["subscription"]["available"] is False
    assert "emulator" in found["subscription"]["why"]
    lag = found["worker_lag"]
    assert lag["events"] == 100
    assert 0.025 < lag["p50"] <= 0.05 and 2.5 < lag["p99"] <= 5
    assert found["thresholds_crossed"] == []

    again = json.loads(cli("--json").stdout.strip().splitlines()[-1])
    assert again["dead_letters"]["count"] == 2 and again["outbox"]["backlog"] == 7

    screen = cli()
    assert screen.exit_code == 0
    for text in ("7 row(s) waiting", "relay-st", "dead letters: 2", "retries-exhausted",
                 "backlog unavailable"):
        assert text in screen.stdout, screen.stdout


def test_thresholds_make_it_a_probe(provisioned: Settings, database: Any,
                                    worker_metrics: str) -> None:
    """Each --max-* threshold crossed is one line and exit 1; at the limit it is exit 0;
    --max-lag-p99 without --worker-metrics is a usage error."""
    def write(tx: Any) -> str:
        return record(tx, EventType.ROW_CHANGED, "Accounts", ("probe-1",))
    run_transaction(database, write)
    pubsub_v1.PublisherClient().publish(provisioned.dead_letter_topic_path, b"x",
                                        dl_reason="undecodable").result()
    hold = HoldSubscription(provisioned.dead_letter_subscription_path, wait=0.5)
    try:
        wait_until(lambda: len(collect(hold)) == 1)
    finally:
        hold.close()

    at_limit = cli("--max-backlog", "1", "--max-dead-letters", "1", "--max-oldest-seconds",
                   "600", "--worker-metrics", worker_metrics, "--max-lag-p99", "5")
    assert at_limit.exit_code == 0, at_limit.stdout
    for flag, value, said in (("--max-backlog", "0", "outbox backlog 1 > --max-backlog 0"),
                              ("--max-dead-letters", "0", "dead letters 1 > --max-dead-letters"),
                              ("--max-oldest-seconds", "0", "oldest outbox row"),
                              ("--max-lag-p99", "1", "lag p99")):
        extra = ["--worker-metrics", worker_metrics] if flag == "--max-lag-p99" else []
        crossed = cli(flag, value, *extra)
        assert crossed.exit_code == 1, crossed.stdout
        assert f"threshold crossed: {said}" in crossed.stdout
    from redis_spanner.schemas.errors import ConfigError
    assert isinstance(cli("--max-lag-p99", "1").exception, ConfigError)


def test_the_command_line_reports_an_unreachable_dependency_in_one_line(
    provisioned: Settings,
) -> None:
    """Run as an operator runs it: on the stack, exit 0; with Spanner's address dead, one
    line naming the address and exit 1, within seconds; an unusable --worker-metrics is one
    line too."""
    def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "redis_spanner.infra.cli", "status",
                               "--timeout", "3", *args], env={**os.environ, **env},
                              capture_output=True, text=True, timeout=120)

    ok = run()
    assert ok.returncode == 0, ok.stderr
    assert "0 row(s) waiting" in ok.stdout
    dead = run(SPANNER_EMULATOR_HOST="127.0.0.1:9")
    assert dead.returncode == 1 and dead.stderr.count("\n") == 1
    assert "127.0.0.1:9" in dead.stderr and "Traceback" not in dead.stderr
    bad_url = run("--worker-metrics", "http://127.0.0.1:9/metrics")
    assert bad_url.returncode == 1 and bad_url.stderr.count("\n") == 1
    assert "127.0.0.1:9/metrics" in bad_url.stderr
