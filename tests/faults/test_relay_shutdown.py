"""The relay process (``python -m redis_spanner.infra.cli relay``) under SIGTERM and lost
leases: it stops within 10 s whatever it is waiting for, and never deletes a row Pub/Sub did
not confirm."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from google.cloud import pubsub_v1  # type: ignore[attr-defined]
from redis_spanner.infra.local import faults
from redis_spanner.infra.local.processes import free_ports
from redis_spanner.producers.outbox_store import READ_TIMEOUT
from redis_spanner.producers.relay import give_up_after

from tests.outbox_sql import SqlRow, insert, insert_many, outbox_ids
from tests.waiting import wait_until

if TYPE_CHECKING:
    from tests.faults.harness import Pipeline

pytestmark = pytest.mark.integration

STOP_BOUND = 10.0


class RelayProcess:
    """``redis-spanner relay`` in a process group of its own, stderr kept in a file."""

    def __init__(self, log: Path, environ: Mapping[str, str] | None = None) -> None:
        self.log = log
        with log.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "redis_spanner.infra.cli", "relay"],
                env={**os.environ, **(environ or {})}, stdout=subprocess.DEVNULL, stderr=err,
                start_new_session=True)

    def terminate(self) -> float:
        """SIGTERM, and the seconds until the process was gone (killed, and the test failed,
        past the bound)."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.wait(STOP_BOUND)
        return time.monotonic() - started

    def wait(self, seconds: float) -> int:
        try:
            return self.proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            pytest.fail(f"relay still running after {seconds:g}s:\n{self.stderr()[-3000:]}")

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@pytest.fixture
def relays(tmp_path: Path) -> Iterator[Any]:
    """Start relay processes; any left running is killed after the test."""
    started: list[RelayProcess] = []

    def start(environ: Mapping[str, str] | None = None) -> RelayProcess:
        relay = RelayProcess(tmp_path / f"relay-{len(started)}.log", environ)
        started.append(relay)
        return relay

    yield start
    for relay in started:
        relay.kill()


def received(pipe: Pipeline) -> set[str]:
    """Event ids of everything on the test's subscription (pulled and acked)."""
    subscriber = pubsub_v1.SubscriberClient()
    seen: set[str] = set()
    try:
        while True:
            response = subscriber.pull(request={"subscription": pipe.settings.subscription_path,
                                                "max_messages": 1000,
                                                "return_immediately": True}, timeout=10)
            if not response.received_messages:
                return seen
            subscriber.acknowledge(subscription=pipe.settings.subscription_path,
                                   ack_ids=[m.ack_id for m in response.received_messages])
            seen.update(m.message.attributes["event_id"] for m in response.received_messages)
    finally:
        subscriber.close()


def lease_holders(pipe: Pipeline) -> set[str]:
    with pipe.database.snapshot() as snapshot:
        return {str(r[0]) for r in snapshot.execute_sql(
            "SELECT Owner FROM OutboxLease WHERE ExpiresAt > CURRENT_TIMESTAMP()")}


def rows(count: int) -> list[SqlRow]:
    return [SqlRow(key_json=f'["acct-{n:04d}"]') for n in range(count)]


@pytest.mark.timeout(120)
def test_sigterm_during_startup_stops_the_relay_within_10s(
    open_pipeline: Any, relays: Any
) -> None:
    """A SIGTERM at any moment of start-up (importing, building clients, taking leases)
    ends the process within 10 s, without a traceback."""
    open_pipeline()
    started = [(delay, relays()) for delay in (0.0, 0.3, 0.8, 1.5, 3.0)]
    t0 = time.monotonic()
    for delay, relay in started:
        time.sleep(max(0.0, t0 + delay - time.monotonic()))
        relay.proc.send_signal(signal.SIGTERM)
    for delay, relay in started:
        code = relay.wait(STOP_BOUND)
        assert code in (0, -signal.SIGTERM), (delay, code, relay.stderr()[-2000:])
        assert "Traceback" not in relay.stderr(), relay.stderr()[-2000:]


@pytest.mark.timeout(150)
@pytest.mark.parametrize("how", ["frozen", "dead-port"])
def test_sigterm_while_spanner_is_unreachable_stops_the_relay_within_10s(
    open_pipeline: Any, own_spanner: faults.OwnProcess, relays: Any, how: str
) -> None:
    """With Spanner frozen (SIGSTOP) under a running relay, SIGTERM still ends the relay
    within 10 s: no call or retry outlives the signal. Never reachable (a dead port), the
    relay doesn't start: one line naming the address, exit 1, well within the bound."""
    pipe: Pipeline = open_pipeline(environ={"SPANNER_EMULATOR_HOST": own_spanner.address})
    if how == "dead-port":
        (port,) = free_ports(1)
        relay = relays({"SPANNER_EMULATOR_HOST": f"127.0.0.1:{port}"})
        code = relay.wait(STOP_BOUND)
        lines = relay.stderr().strip().splitlines()
        assert code == 1 and len(lines) == 1 and f"127.0.0.1:{port}" in lines[0], lines
        return
    else:
        ids = insert(pipe.database, *rows(5))
        relay = relays()
        wait_until(lambda: not outbox_ids(pipe.database) & set(ids), timeout=60)
        with own_spanner.paused():
            time.sleep(2.0)
            elapsed = relay.terminate()
    assert elapsed < STOP_BOUND, relay.stderr()[-2000:]
    assert relay.proc.returncode == 0, relay.stderr()[-2000:]


@pytest.mark.timeout(150)
@pytest.mark.parametrize("how", ["frozen", "dead-port"])
def test_sigterm_while_pubsub_is_unreachable_stops_the_relay_and_keeps_every_row(
    open_pipeline: Any, own_pubsub: faults.OwnProcess, relays: Any, how: str
) -> None:
    """With Pub/Sub frozen while rows wait, the relay publishes nothing, so it deletes
    nothing, and SIGTERM ends it within 10 s. On a dead port it doesn't start at all: one line
    naming the address, exit 1, every row kept."""
    pipe: Pipeline = open_pipeline(environ={"PUBSUB_EMULATOR_HOST": own_pubsub.address})
    ids = set(insert(pipe.database, *rows(50)))
    if how == "dead-port":
        (port,) = free_ports(1)
        relay = relays({"PUBSUB_EMULATOR_HOST": f"127.0.0.1:{port}"})
        code = relay.wait(STOP_BOUND)
        lines = relay.stderr().strip().splitlines()
        assert code == 1 and len(lines) == 1 and f"127.0.0.1:{port}" in lines[0], lines
        assert outbox_ids(pipe.database) == ids
        return
    with own_pubsub.paused():
        relay = relays()
        wait_until(lambda: lease_holders(pipe), timeout=60)
        time.sleep(2.0)
        elapsed = relay.terminate()
    assert elapsed < STOP_BOUND, relay.stderr()[-2000:]
    assert relay.proc.returncode == 0, relay.stderr()[-2000:]
    assert outbox_ids(pipe.database) == ids, "rows Pub/Sub never confirmed were deleted"


@pytest.mark.timeout(150)
def test_sigterm_mid_batch_stops_the_relay_and_deletes_only_what_was_published(
    open_pipeline: Any, relays: Any
) -> None:
    """SIGTERM while batches are being published and deleted ends the relay within 10 s, and
    every row gone from the outbox is on the subscription."""
    pipe: Pipeline = open_pipeline(relay_batch=100)
    ids = set(insert_many(pipe.database, 1000))
    relay = relays()
    wait_until(lambda: len(outbox_ids(pipe.database)) < len(ids), timeout=60, interval=0.02)
    elapsed = relay.terminate()
    assert elapsed < STOP_BOUND, relay.stderr()[-2000:]
    assert relay.proc.returncode == 0, relay.stderr()[-2000:]
    deleted = ids - outbox_ids(pipe.database)
    assert deleted, "nothing was deleted before the signal"
    assert deleted <= received(pipe), "rows were deleted that Pub/Sub does not hold"


@pytest.mark.timeout(120)
def test_lease_thread_failing_stops_publishing_and_exits_nonzero(
    open_pipeline: Any, relays: Any
) -> None:
    """When every lease renewal after the first fails, the relay publishes nothing once its
    lease has run out, and exits with status 1 and one line naming the lost leases within the
    give-up time (three leases, at least 15 s)."""
    lease = 2.0
    pipe: Pipeline = open_pipeline(relay_lease_seconds=lease)
    first = set(insert(pipe.database, *rows(5)))
    relay = relays({"REDIS_SPANNER_FAILPOINTS": "relay.claim=raise@1"})
    wait_until(lambda: not outbox_ids(pipe.database) & first, timeout=60, interval=0.05)
    published_at = time.monotonic()  # the only lease was taken before this
    time.sleep(max(0.0, published_at + lease - time.monotonic()))
    later = set(insert(pipe.database, SqlRow(key_json='["late-1"]'),
                       SqlRow(key_json='["late-2"]')))
    code = relay.wait(give_up_after(lease) + 10)
    err = relay.stderr()
    assert code == 1, err[-2000:]
    assert err.strip().splitlines()[-1].startswith("relay stopped: relay "), err[-2000:]
    assert "leases not renewed" in err.strip().splitlines()[-1]
    assert "Traceback" not in err
    assert outbox_ids(pipe.database) >= later, "a row was deleted after the lease ran out"
    assert not later & received(pipe), "a row was published after the lease ran out"


@pytest.mark.timeout(150)
def test_spanner_frozen_for_good_makes_the_relay_exit_nonzero(
    open_pipeline: Any, own_spanner: faults.OwnProcess, relays: Any
) -> None:
    """A Spanner that stops answering under a running relay (SIGSTOP: calls that never
    return) ends the relay with status 1 and one line once its leases went unrenewed for
    the give-up time, however long the hung renewal would have waited."""
    lease = 2.0
    pipe: Pipeline = open_pipeline(relay_lease_seconds=lease,
                                   environ={"SPANNER_EMULATOR_HOST": own_spanner.address})
    ids = set(insert(pipe.database, *rows(5)))
    relay = relays()
    wait_until(lambda: not outbox_ids(pipe.database) & ids, timeout=60)
    with own_spanner.paused():
        frozen_at = time.monotonic()
        code = relay.wait(give_up_after(lease) + READ_TIMEOUT + 10)
        took = time.monotonic() - frozen_at
    err = relay.stderr()
    assert code == 1, err[-2000:]
    assert err.strip().splitlines()[-1].startswith("relay stopped: "), err[-2000:]
    assert "Traceback" not in err
    assert took >= give_up_after(lease) - lease, "the relay gave up too soon"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("setting", [
    "REDIS_SPANNER_RELAY_LEASE_SECONDS=soon", "REDIS_SPANNER_RELAY_LEASE_SECONDS=0.5",
    "REDIS_SPANNER_RELAY_BATCH=0", "REDIS_SPANNER_TOPIC=x",
])
def test_relay_with_an_invalid_setting_exits_2_with_one_line(setting: str) -> None:
    """An invalid setting of any kind (unparseable, out of range, a bad resource id) stops
    the relay at once: one line on stderr naming the variable, exit status 2, no traceback."""
    name, value = setting.split("=", 1)
    done = subprocess.run([sys.executable, "-m", "redis_spanner.infra.cli", "relay"],
                          env={**os.environ, name: value}, capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and name in lines[0], done.stderr
