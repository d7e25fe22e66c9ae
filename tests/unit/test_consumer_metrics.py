"""The consumer's counters follow what the core decided: outcomes by type, dead letters by
reason, retries by error class, and the time of each Redis call and batch."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY
from redis_spanner.consumers.core import Processor
from redis_spanner.consumers.messages import Inbound

from tests.fakes import MemoryCache, MemoryDeadLetters, MemoryRows
from tests.unit.test_core import CATALOG, message


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETRY_BACKOFF", "0")


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


NAMES = {
    "changed": ("redis_spanner_consumer_events_total", {"outcome": "changed",
                                                        "type": "row.changed"}),
    "superseded": ("redis_spanner_consumer_events_total", {"outcome": "superseded",
                                                           "type": "row.changed"}),
    "dead": ("redis_spanner_consumer_events_total", {"outcome": "dead_lettered",
                                                     "type": "unknown"}),
    "undecodable": ("redis_spanner_consumer_dead_lettered_total", {"reason": "undecodable"}),
    "retries": ("redis_spanner_consumer_retries_total", {"error": "TransientError"}),
    "redis_calls": ("redis_spanner_consumer_call_duration_seconds_count",
                    {"service": "redis", "operation": "apply"}),
    "batches": ("redis_spanner_consumer_batch_duration_seconds_count", {}),
}


def snapshot() -> dict[str, float]:
    return {k: sample(name, **labels) for k, (name, labels) in NAMES.items()}


def test_counters_move_by_exactly_what_the_batches_did() -> None:
    """Two batches (one retried once after a transient Redis error) move each counter by the
    number of messages, dead letters, retries and calls they had, and no more."""
    cache = MemoryCache()
    processor = Processor(CATALOG, cache, MemoryRows(), MemoryDeadLetters(), retry_attempts=3,
                          retry_seconds=5)
    before = snapshot()
    cache.fail_next = 1
    processor.process([message("Accounts", (f"m{i}",), 100, i) for i in range(3)]
                      + [Inbound("bad-1", b"not json"), Inbound("bad-2", b"\xff")])
    processor.process([message("Accounts", ("m0",), 50, 9)])
    after = snapshot()
    moved = {k: after[k] - before[k] for k in NAMES}
    assert moved == {"changed": 3, "superseded": 1, "dead": 2, "undecodable": 2, "retries": 1,
                     "redis_calls": 3, "batches": 2}
