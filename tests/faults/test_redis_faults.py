"""Redis killed and restarted, flushed, and stalled, while committed events flow."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pytest
from redis_spanner.infra.local import faults

from tests.waiting import wait_until

if TYPE_CHECKING:
    from tests.faults.harness import Pipeline

pytestmark = pytest.mark.integration

# An in-process retry budget shorter than the outages below, so the consumer may nack, and
# long enough that no event is delivered max_delivery_attempts times before Redis is back.
SHORT_RETRIES = {"retry_attempts": 100, "retry_seconds": 1.5}
OUTAGE_SECONDS = 4.0
IN_FLIGHT_SECONDS = 2.0
"""A batch whose write Redis answered just before the fault may be acked just after it: the
ack is decided in memory, but a loaded machine may not run that thread for a while. The
outage is measured from the moment the fault is in place (the process gone, or frozen)."""
WARM_UP = 60.0
"""How long events may take to start flowing before the fault is injected."""


def running(open_pipeline: Any, accounts: int = 30) -> tuple[Pipeline, list[str]]:
    pipe: Pipeline = open_pipeline(**SHORT_RETRIES)
    ids = pipe.accounts(accounts)
    pipe.fill(ids)
    pipe.start_relay()
    pipe.start_worker()
    return pipe, ids


def flowing(pipe: Pipeline, since: float = 0.0) -> None:
    """Wait until events are being applied (since ``since``): the fault then hits a pipeline
    at work, whatever the machine's load."""
    wait_until(lambda: pipe.applied_between(since, time.monotonic()) >= 5, timeout=WARM_UP,
               interval=0.1)


@pytest.mark.timeout(180)
def test_redis_killed_and_restarted_on_its_port_loses_no_event(open_pipeline: Any) -> None:
    """While Redis is down the consumer acks nothing: it retries, or nacks and Pub/Sub
    redelivers. Once Redis is back (empty, on the same port) every event is applied, and
    values cached after the restart are invalidated like any other."""
    pipe, ids = running(open_pipeline)
    with pipe.writing(ids):
        flowing(pipe)
        pipe.redis.kill()
        down = time.monotonic()
        time.sleep(OUTAGE_SECONDS)
        up = time.monotonic()
        pipe.redis.start()
        pipe.fill(ids)  # values cached after the restart, for the next events to invalidate
        flowing(pipe, since=up)
    pipe.check(ids)
    assert not pipe.applied_between(down + IN_FLIGHT_SECONDS, up)
    assert pipe.applied_between(up, time.monotonic()) > 0


@pytest.mark.timeout(180)
def test_redis_flushed_while_events_flow_leaves_keys_missing_never_stale(
    open_pipeline: Any
) -> None:
    """A flush drops every value and tombstone. Events keep landing as tombstones, nothing
    brings an old value back: after quiescence a key holds a tombstone or nothing."""
    pipe, ids = running(open_pipeline)
    with pipe.writing(ids):
        flowing(pipe)
        faults.flush_redis(pipe.redis.address)
        flowing(pipe, since=time.monotonic())
    pipe.check(ids)
    assert all(e is None or e.tombstone for e in pipe.entries(ids))
    assert not pipe.nacks()


@pytest.mark.timeout(180)
def test_redis_stalled_beyond_the_client_timeout_then_resumed(open_pipeline: Any) -> None:
    """Redis frozen (SIGSTOP) longer than the client's 0.5 s timeout: writes time out and the
    consumer acks nothing, retrying or nacking without crashing; after SIGCONT every event is
    applied."""
    pipe, ids = running(open_pipeline)
    with pipe.writing(ids):
        flowing(pipe)
        with pipe.redis.paused():
            frozen = time.monotonic()
            time.sleep(OUTAGE_SECONDS)
            thawed = time.monotonic()
        flowing(pipe, since=thawed)
    pipe.check(ids)
    assert not pipe.applied_between(frozen + IN_FLIGHT_SECONDS, thawed)
    assert pipe.applied_between(thawed, time.monotonic()) > 0
