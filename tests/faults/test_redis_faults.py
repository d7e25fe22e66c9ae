"""Redis killed and restarted, flushed, and stalled, while committed events flow."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pytest
from redis_spanner.infra import faults

if TYPE_CHECKING:
    from tests.faults.harness import Pipeline

pytestmark = pytest.mark.integration

# An in-process retry budget shorter than the outages below, so the consumer may nack, and
# long enough that no event is delivered max_delivery_attempts times before Redis is back.
SHORT_RETRIES = {"retry_attempts": 100, "retry_seconds": 1.5}
OUTAGE_SECONDS = 2.5
IN_FLIGHT_SECONDS = 0.5
"""A batch whose write Redis answered just before the fault may be acked just after it."""


def running(open_pipeline: Any, accounts: int = 30) -> tuple[Pipeline, list[str]]:
    pipe: Pipeline = open_pipeline(**SHORT_RETRIES)
    ids = pipe.accounts(accounts)
    pipe.fill(ids)
    pipe.start_relay()
    pipe.start_worker()
    return pipe, ids


@pytest.mark.timeout(120)
def test_redis_killed_and_restarted_on_its_port_loses_no_event(open_pipeline: Any) -> None:
    """While Redis is down the consumer acks nothing: it retries, or nacks and Pub/Sub
    redelivers. Once Redis is back (empty, on the same port) every event is applied, and
    values cached after the restart are invalidated like any other."""
    pipe, ids = running(open_pipeline)
    with pipe.writing(ids):
        time.sleep(1.0)
        down = time.monotonic()
        pipe.redis.kill()
        time.sleep(OUTAGE_SECONDS)
        up = time.monotonic()
        pipe.redis.start()
        pipe.fill(ids)  # values cached after the restart, for the next events to invalidate
        time.sleep(1.5)
    pipe.check(ids)
    assert not pipe.applied_between(down + IN_FLIGHT_SECONDS, up)
    assert pipe.applied_between(up, time.monotonic()) > 0


@pytest.mark.timeout(120)
def test_redis_flushed_while_events_flow_leaves_keys_missing_never_stale(
    open_pipeline: Any
) -> None:
    """A flush drops every value and tombstone. Events keep landing as tombstones, nothing
    brings an old value back: after quiescence a key holds a tombstone or nothing."""
    pipe, ids = running(open_pipeline)
    with pipe.writing(ids):
        time.sleep(1.0)
        faults.flush_redis(pipe.redis.address)
        time.sleep(1.5)
    pipe.check(ids)
    assert all(e is None or e.tombstone for e in pipe.entries(ids))
    assert not pipe.nacks()


@pytest.mark.timeout(120)
def test_redis_stalled_beyond_the_client_timeout_then_resumed(open_pipeline: Any) -> None:
    """Redis frozen (SIGSTOP) longer than the client's 0.5 s timeout: writes time out and the
    consumer acks nothing, retrying or nacking without crashing; after SIGCONT every event is
    applied."""
    pipe, ids = running(open_pipeline)
    with pipe.writing(ids):
        time.sleep(1.0)
        with pipe.redis.paused():
            frozen = time.monotonic()
            time.sleep(OUTAGE_SECONDS)
            thawed = time.monotonic()
        time.sleep(1.5)
    pipe.check(ids)
    assert not pipe.applied_between(frozen + IN_FLIGHT_SECONDS, thawed)
    assert pipe.applied_between(thawed, time.monotonic()) > 0
