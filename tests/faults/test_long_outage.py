"""An outage longer than the whole retry and delivery budget ends with every key coherent, and
nothing in the dead-letter hold: transient failures heal without an operator."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pytest
import redis
from redis_spanner.consumers.messages import Disposition
from redis_spanner.consumers.spanner_rows import SpannerRows
from redis_spanner.consumers.verify import Verdict, compare
from redis_spanner.infra.provision.declaration import load_declaration

from tests.waiting import wait_until

if TYPE_CHECKING:
    from tests.faults.harness import Pipeline

pytestmark = pytest.mark.integration

# A small budget: one delivery costs about a second, Pub/Sub gives up after five.
SMALL_BUDGET = {"retry_attempts": 2, "retry_seconds": 0.5}
COHERENT_WITHIN_SECONDS = 60.0


def stale_keys(pipe: Pipeline, ids: list[str]) -> int:
    checked = compare(pipe.keys(ids), pipe.cache, SpannerRows(pipe.database))
    return sum(1 for c in checked if c.verdict is Verdict.STALE)


def healed(pipe: Pipeline, event_ids: set[str]) -> set[str]:
    """Events the heal loop has seen: only Pub/Sub's forwarding puts them on its subscription
    (it has no dead-letter policy, so its deliveries carry no attempt count)."""
    with pipe._lock:
        return {o.event.event_id for o in pipe.outcomes
                if o.event is not None and o.message.delivery_attempt == 0} & event_ids


@pytest.mark.timeout(240)
@pytest.mark.parametrize("outage", ["redis-frozen", "redis-refusing"])
def test_outage_past_the_delivery_budget_heals_without_an_operator(
    open_pipeline: Any, outage: str
) -> None:
    """Redis out of reach (frozen, or refusing connections) until Pub/Sub has given up on every
    event and forwarded it: once Redis answers again every event is applied by the worker's
    heal loop, no key is stale within 60 s, nothing committed is lost, and the dead-letter
    hold stays empty (no transient failure ends there)."""
    pipe: Pipeline = open_pipeline(**SMALL_BUDGET)
    attempts = load_declaration().subscription.max_delivery_attempts
    ids = pipe.accounts(20)
    pipe.fill(ids)
    assert stale_keys(pipe, ids) == 0
    pipe.start_relay()
    pipe.start_worker()

    if outage == "redis-frozen":
        pipe.redis.pause()
    else:
        pipe.redis.kill()
    try:
        events = {pipe.bump(account) for account in ids}
        wait_until(lambda: healed(pipe, events) == events, timeout=150, interval=0.5)
        with pipe._lock:
            most = max(o.message.delivery_attempt for o in pipe.outcomes)
        assert most == attempts  # every delivery was tried, and none applied
        assert not pipe.applied_between(0, time.monotonic())
        time.sleep(3)  # the heal loop fails too, and backs off
    finally:
        if outage == "redis-frozen":
            pipe.redis.resume()
        else:
            pipe.redis.start()
            client = pipe.cache.client
            assert isinstance(client, redis.Redis)  # one server, not a cluster
            client.connection_pool.reset()
            pipe.fill(ids)  # an empty Redis filled again from Spanner
    recovered = time.monotonic()
    assert outage != "redis-frozen" or stale_keys(pipe, ids) == len(ids)

    wait_until(lambda: not pipe.tally.unaccounted(), timeout=COHERENT_WITHIN_SECONDS,
               interval=0.2)
    took = time.monotonic() - recovered
    print(f"{outage}: every event applied {took:.1f}s after recovery")
    assert stale_keys(pipe, ids) == 0
    assert took < COHERENT_WITHIN_SECONDS
    assert pipe.dispositions()[Disposition.ACK] >= len(ids)
    pipe.check(ids)
