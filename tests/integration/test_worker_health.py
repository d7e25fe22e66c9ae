"""The pull worker's /healthz, which Cloud Run's startup and liveness probes call: it passes
while the worker can work, and fails (503) as soon as a pull loop has died or Redis is gone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from google.cloud import pubsub_v1  # type: ignore[attr-defined]
from redis_spanner.consumers.health import HealthServer, loops_check, redis_check
from redis_spanner.consumers.messages import Inbound, Outcome
from redis_spanner.consumers.pubsub import PullSubscription
from redis_spanner.consumers.worker import Consumer, PullWorker
from redis_spanner.infra.local import faults
from redis_spanner.infra.local.processes import free_ports
from redis_spanner.schemas.settings import Settings

from tests.faults.harness import own_process
from tests.waiting import wait_until


def healthz(port: int) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())
    except (urllib.error.URLError, ConnectionError):
        return 0, {}


def health_becomes(port: int, status: int, timeout: float) -> dict[str, Any]:
    """The body of the first /healthz answer with ``status``."""
    def answered() -> dict[str, Any] | None:
        code, body = healthz(port)
        return body if code == status else None

    return wait_until(answered, timeout=timeout)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[faults.OwnProcess]:
    yield from own_process(faults.redis_server(tmp_path))


def test_worker_health_follows_redis(provisioned: Settings, own_redis: faults.OwnProcess,
                                     tmp_path: Path) -> None:
    """`redis-spanner worker` serves /healthz on $PORT: 200 while Redis answers, 503 naming
    Redis within seconds of it going away, 200 again once it is back; /metrics on the same
    port."""
    (port,) = free_ports(1)
    env = {**os.environ, "PORT": str(port), "REDIS_URL": own_redis.address,
           "REDIS_SPANNER_REDIS_TIMEOUT_SECONDS": "0.5"}
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen([sys.executable, "-m", "redis_spanner.infra.cli", "worker"],
                              env=env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        assert health_becomes(port, 200, timeout=60) == {"ok": True, "problems": []}
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as metrics:
            assert metrics.status == 200 and b"# HELP" in metrics.read()
        own_redis.kill()
        body = health_becomes(port, 503, timeout=30)
        assert body["ok"] is False
        assert [p for p in body["problems"] if p.startswith("redis unreachable")]
        own_redis.start()
        health_becomes(port, 200, timeout=30)
        assert worker.poll() is None, "the worker must keep running through the outage"
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=10)
        log.close()


class _Defect(RuntimeError):
    pass


class _BreaksOnPoison:
    """The real processor, with a defect: a batch holding the poison pill raises."""

    def __init__(self, consumer: Consumer) -> None:
        self._processor = consumer.processor

    def process(self, batch: Sequence[Inbound]) -> list[Outcome]:
        if any(m.data == b"pill" for m in batch):
            raise _Defect("a bug in the processing path")
        return self._processor.process(batch)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_worker_health_fails_when_a_pull_loop_dies(provisioned: Settings,
                                                   consumer: Consumer) -> None:
    """A pull loop that ends on an unexpected exception turns /healthz to 503 naming the loop,
    while the other loops and Redis are fine; a loop stopped on purpose does not."""
    worker = PullWorker(PullSubscription(provisioned.subscription_path),
                        _BreaksOnPoison(consumer), streams=2)
    server = HealthServer([loops_check(worker.dead_loops), redis_check(consumer.cache.client)],
                          0, host="127.0.0.1").start()
    stop = threading.Event()
    runner = threading.Thread(target=worker.run, args=(stop, 0.5), daemon=True)
    runner.start()
    try:
        health_becomes(server.port, 200, timeout=30)
        publisher = pubsub_v1.PublisherClient()
        publisher.publish(provisioned.topic_path, b"pill").result(timeout=30)
        [problem] = health_becomes(server.port, 503, timeout=60)["problems"]
        assert "pull loop(s) stopped: pull-" in problem
        assert len(worker.dead_loops()) == 1
    finally:
        stop.set()
        runner.join(timeout=30)
        server.close()
    assert worker.dead_loops() == []
