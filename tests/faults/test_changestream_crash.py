"""A change-stream relay killed for real (SIGKILL, a process of its own) and started again:
no event is missing, since the checkpoint moves only after Pub/Sub holds the events."""

from __future__ import annotations

import random
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from redis_spanner.infra.demo.workload import bump

from tests.faults.harness import Pipeline
from tests.waiting import wait_until

PARTITIONS = "SELECT COUNT(*) FROM ChangeStreamPartition WHERE Finished"


def finished_partitions(pipeline: Pipeline) -> int:
    with pipeline.database.snapshot() as snapshot:
        return int(next(iter(snapshot.execute_sql(PARTITIONS)))[0])


@contextmanager
def writing(pipeline: Pipeline, ids: list[str], rate: float = 30.0) -> Iterator[None]:
    """Business writes without any outbox row, about ``rate`` a second, for the block."""
    stop = threading.Event()
    rng = random.Random(5)

    def loop() -> None:
        while not stop.wait(1 / rate):
            pipeline.tally.on_commit(bump(pipeline.database, rng.choice(ids), 1, outbox=False))

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)


def stopped(process: subprocess.Popen[bytes]) -> bytes:
    """Stop the process (if it still runs) and return what it wrote to stderr."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.communicate(timeout=30)[1]
    except subprocess.TimeoutExpired:
        process.kill()
        return process.communicate(timeout=30)[1]


@pytest.mark.parametrize("failpoint", ["changestream.before_checkpoint", "none"])
def test_killed_changestream_relay_resumes_from_its_checkpoint_without_a_gap(
    open_pipeline: Callable[..., Pipeline], failpoint: str
) -> None:
    """Killed between Pub/Sub's confirmation and the checkpoint, or at any moment while writes
    go on, a relay loses nothing: a new one takes the partitions once the lease expires and
    resumes from the checkpoint; every committed change is applied and no key is stale."""
    pipeline = open_pipeline(source="changestream", relay_lease_seconds=3)
    ids = pipeline.accounts(10)
    pipeline.fill(ids)
    pipeline.start_worker()
    first = pipeline.run_cli("changestream-relay", failpoint)
    restarted: Any = None
    try:
        wait_until(lambda: finished_partitions(pipeline) >= 1, timeout=60)
        with writing(pipeline, ids):
            if failpoint == "none":
                wait_until(lambda: len(pipeline.tally.applied) >= 20, timeout=60)
                first.send_signal(signal.SIGKILL)
            _, stderr = first.communicate(timeout=60)
            assert first.returncode == -signal.SIGKILL, stderr.decode()[-2000:]
            applied_at_kill = len(pipeline.tally.applied)
            restarted = pipeline.run_cli("changestream-relay", "none")
            wait_until(lambda: len(pipeline.tally.applied) >= applied_at_kill + 30, timeout=90)
        pipeline.check(ids)
        assert len(pipeline.tally.committed) >= 30
    finally:
        stopped(first)
        if restarted is not None:
            assert b"Traceback" not in stopped(restarted)
