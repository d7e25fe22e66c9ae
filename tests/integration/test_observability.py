"""A full run on the real stack, seen only from outside: the relay and the worker as
subprocesses with ``-v``, their stderr captured, their metrics scraped.

What an operator relies on is checked against what the test did: every line is one JSON object
in Cloud Logging's format, hostile text from messages is escaped and cut, no password or cached
value is written, the writer's trace id is in the consumer's line for its event, and the
counters equal the events written, published, applied and dead-lettered by reason.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from google.cloud import pubsub_v1, spanner  # type: ignore[attr-defined]
from opentelemetry.sdk.trace import TracerProvider
from redis_spanner.infra.cli.logs import MAX_CHARS, TRACE_FIELD
from redis_spanner.infra.local import faults
from redis_spanner.infra.local.processes import free_ports
from redis_spanner.infra.provision.run import provision, teardown
from redis_spanner.infra.spanner.ddl import DEMO_SCHEMA_PATH
from redis_spanner.producers.outbox import record
from redis_spanner.producers.spanner import open_database, run_transaction
from redis_spanner.schemas.catalog import load_catalog
from redis_spanner.schemas.events import EventType
from redis_spanner.schemas.settings import Settings, get_settings

from tests.faults.harness import own_process
from tests.waiting import wait_until

ACCOUNTS = 6
PASSWORD = f"pw-{uuid.uuid4().hex}"
FORGED = '{"severity":"CRITICAL","message":"forged line"}'
ANSI = "\x1b[31m"
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")


def poison() -> dict[str, tuple[bytes, dict[str, str]]]:
    """Poison messages by name: (body, attributes), with the reason each must get."""
    valid = {"schema_version": 1, "event_id": str(uuid.uuid4()), "type": "row.changed",
             "table": "Accounts", "key": ["x"], "commit_ts": "2026-01-01T00:00:00Z"}
    return {
        "invalid/newline-field": (
            json.dumps({**valid, f"f\n{FORGED}\r\n{ANSI}bold": 1}).encode(),
            {"event_id": f"id\n{FORGED}"}),
        "invalid/long-field": (json.dumps({**valid, "g" * 5000: 1}).encode(), {}),
        "unknown-type/ansi": (json.dumps({**valid, "type": f"{ANSI}x\n{FORGED}"}).encode(), {}),
        "undecodable/not-json": (f"not json\n{FORGED}".encode(), {}),
    }


def scrape(port: int) -> dict[str, float]:
    """Every sample of a /metrics page, by name and labels as printed."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match and not line.startswith("#"):
            samples[match.group(1) + (match.group(2) or "")] = float(match.group(3))
    return samples


def total(samples: dict[str, float], name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    return sum(v for k, v in samples.items()
               if k.partition("{")[0] == name and all(w in k for w in wanted))


def scrape_or_empty(port: int) -> dict[str, float]:
    try:
        return scrape(port)
    except OSError:
        return {}


@pytest.fixture
def locked_redis(tmp_path: Path) -> Iterator[str]:
    """A redis-server of the test's own that wants a password; its URL carries it."""
    for server in own_process(faults.redis_server(tmp_path)):
        host, port = server.address.removeprefix("redis://").split("/")[0].split(":")
        client = redis.Redis(host, int(port))
        client.config_set("requirepass", PASSWORD)
        client.close()
        yield f"redis://:{PASSWORD}@{host}:{port}/0"


@pytest.fixture
def rewarm_settings(settings: Settings, locked_redis: str,
                    monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Accounts rewarmed (so the worker handles cached values), on the password's Redis."""
    monkeypatch.setenv("REDIS_URL", locked_redis)
    monkeypatch.setenv("REDIS_SPANNER_CATALOG", "redis_spanner.schemas.catalog:DEMO_REWARM")
    monkeypatch.delenv("REDIS_SPANNER_LOG_FORMAT", raising=False)
    get_settings.cache_clear()
    provisioned = get_settings()
    provision(provisioned, ddl=[DEMO_SCHEMA_PATH])
    yield provisioned
    teardown(provisioned)
    get_settings.cache_clear()


def spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "redis_spanner.infra.cli", *args],
                                env=dict(os.environ), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def write_accounts(database: Any, ids: list[str], owner: str) -> list[str]:
    def work(tx: Any) -> list[str]:
        tx.insert_or_update("Accounts", ("AccountId", "Owner", "Balance", "UpdatedAt"),
                            [[i, owner, 7, spanner.COMMIT_TIMESTAMP] for i in ids])
        return [record(tx, EventType.ROW_CHANGED, "Accounts", (i,)) for i in ids]

    event_ids, _ = run_transaction(database, work)
    return list(event_ids)


def test_a_full_run_logs_json_lines_with_traces_and_its_metrics_match_the_work(
    rewarm_settings: Settings, tmp_path: Path
) -> None:
    """Logs: every line of relay and worker (stderr not a terminal, no format set) is a JSON
    object with severity, message and time; one line per dead letter with its reason and one
    per batch at -v; newlines, ANSI escapes and forged JSON in field names, types and
    attributes stay inside their line, escaped, and long text is cut; neither the Redis
    password nor a cached value appears. Trace: the trace id of the writer's span is on the
    consumer's line for that event, as Cloud Logging's trace field. Metrics: the worker's
    applied and dead-lettered counters (by reason and type) and the relay's published
    counter equal what was written, and the call-latency histograms saw the calls."""
    settings = rewarm_settings
    database = open_database(settings)
    relay_port, worker_port = free_ports(2)
    logs = {"relay": tmp_path / "relay.log", "worker": tmp_path / "worker.log"}
    relay = spawn(["relay", "-v", "--metrics-port", str(relay_port)], logs["relay"])
    worker = spawn(["worker", "-v", "--health-port", str(worker_port)], logs["worker"])
    secret_owner = f"owner-secret-{uuid.uuid4().hex}"
    try:
        ids = [f"obs-{n}" for n in range(ACCOUNTS)]
        plain = write_accounts(database, ids, "owner-plain")
        tracer = TracerProvider().get_tracer("writer")
        with tracer.start_as_current_span("transfer") as span:
            (traced,) = write_accounts(database, ids[:1], secret_owner)
        trace_id = format(span.get_span_context().trace_id, "032x")

        publisher = pubsub_v1.PublisherClient()
        bad = poison()
        for body, attributes in bad.values():
            publisher.publish(settings.topic_path, body, **attributes).result(timeout=30)
        publisher.stop()

        events = len(plain) + 1

        def settled() -> tuple[dict[str, float], dict[str, float]] | None:
            consumer, producer = scrape_or_empty(worker_port), scrape_or_empty(relay_port)
            applied = sum(total(consumer, "redis_spanner_consumer_events_total", outcome=o)
                          for o in ("changed", "superseded"))
            dead = total(consumer, "redis_spanner_consumer_dead_lettered_total")
            return (consumer, producer) if applied >= events and dead >= len(bad) else None

        consumer, producer = wait_until(settled, timeout=120, interval=0.5)
        catalog = load_catalog(settings.catalog, settings.namespace)
        entry = redis.Redis.from_url(settings.require_redis_url()).hgetall(
            catalog.key(catalog.template("account"), [ids[0]]).key)
        assert any(secret_owner.encode() in v for v in entry.values()), \
            "the traced write was rewarmed into Redis"
    finally:
        stop(worker)
        stop(relay)

    # Metrics: what was done, by outcome, type and reason.
    applied = sum(total(consumer, "redis_spanner_consumer_events_total", outcome=o,
                        type="row.changed") for o in ("changed", "superseded"))
    assert applied == events
    reasons = {name.split("/")[0] for name in bad}
    for reason in reasons:
        expected = sum(1 for name in bad if name.startswith(f"{reason}/"))
        assert total(consumer, "redis_spanner_consumer_dead_lettered_total",
                     reason=reason) == expected, reason
    assert total(consumer, "redis_spanner_consumer_dead_lettered_total") == len(bad)
    assert total(consumer, "redis_spanner_consumer_events_total",
                 outcome="dead_lettered") == len(bad)
    assert total(producer, "redis_spanner_relay_published_total", type="row.changed") == events
    assert total(producer, "redis_spanner_relay_quarantined_total") == 0
    for service, operation in (("redis", "apply"), ("spanner", "read"), ("pubsub", "pull"),
                               ("pubsub", "publish_dead_letter")):
        assert total(consumer, "redis_spanner_consumer_call_duration_seconds_count",
                     service=service, operation=operation) > 0, (service, operation)
    assert total(producer, "redis_spanner_relay_call_duration_seconds_count",
                 service="pubsub", operation="publish") > 0
    assert total(consumer, "redis_spanner_consumer_lag_seconds_count") == events - total(
        consumer, "redis_spanner_consumer_events_total", outcome="superseded")

    # Logs: one JSON object per line, nothing forged, nothing secret.
    lines: dict[str, list[dict[str, Any]]] = {}
    for name, path in logs.items():
        raw = path.read_text(encoding="utf-8")
        assert PASSWORD not in raw and secret_owner not in raw
        assert "\x1b" not in raw and "\r" not in raw
        lines[name] = [json.loads(line) for line in raw.splitlines()]
        for line in lines[name]:
            assert isinstance(line, dict) and {"severity", "message", "time"} <= set(line), line
            assert all(len(v) <= MAX_CHARS for v in line.values() if isinstance(v, str)), line
            assert line["message"] != "forged line" and line["severity"] != "CRITICAL", line
    worker_lines = lines["worker"]
    dead_lines = [w for w in worker_lines if w["message"].startswith("dead-lettered")]
    assert sorted(w["reason"] for w in dead_lines) == sorted(n.split("/")[0] for n in bad)
    newline = next(w for w in dead_lines if "bold" in w["message"])
    assert "\\n" in newline["message"] and "\\x1b[31m" in newline["message"]
    assert newline["event_id"] == "id\\n" + FORGED
    assert any(w["message"].endswith("…") for w in dead_lines), "the long field name is cut"

    batches = [w for w in worker_lines if w["message"].startswith("batch of")]
    assert sum(w["changed"] + w["superseded"] for w in batches) == events
    assert sum(w["dead_lettered"] for w in batches) == len(bad)
    assert all(w["severity"] == "DEBUG" and w["seconds"] >= 0 for w in batches)
    (mine,) = [w for w in batches if traced in w["event_ids"]]
    assert mine["trace_id"] == trace_id
    assert mine[TRACE_FIELD] == f"projects/{settings.project}/traces/{trace_id}"
    assert any(r["message"].startswith("relay ") and "published" in r
               for r in lines["relay"]), "the relay logs its batches at -v"
