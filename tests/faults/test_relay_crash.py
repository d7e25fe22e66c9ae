"""A relay SIGKILLed between publish and delete, with a worker applying what it published."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from tests.waiting import wait_until

if TYPE_CHECKING:
    from tests.faults.harness import Pipeline

pytestmark = pytest.mark.integration


@pytest.mark.timeout(120)
def test_relay_killed_after_publishing_republishes_and_the_cache_ends_coherent(
    open_pipeline: Any
) -> None:
    """The killed relay's rows stay in the outbox, so the next relay publishes them again once
    the leases lapse: every event reaches the worker twice, the second delivery is refused by
    the guard as superseded, and the cache ends coherent. (Delivery alone is covered in
    tests/integration/test_pipeline.py.)"""
    pipe: Pipeline = open_pipeline(relay_lease_seconds=2)
    ids = pipe.accounts(20)
    pipe.fill(ids)
    pipe.start_worker()
    events = [pipe.bump(account) for account in ids]

    crashed = pipe.run_cli("relay", "relay.after_publish")
    _, stderr = crashed.communicate(timeout=60)
    assert crashed.returncode == -9, stderr.decode()[-2000:]
    assert pipe.outbox_count() == len(events)
    pipe.quiesce()  # applied from the killed relay's publish
    assert all(e is not None and e.tombstone for e in pipe.entries(ids))

    pipe.start_relay()
    wait_until(lambda: all(n >= 2 for n in pipe.deliveries().values()), timeout=30)
    wait_until(lambda: pipe.outbox_count() == 0)
    pipe.check(ids)
    for event_id in events:
        decided = [o for o in pipe.outcomes if o.event and o.event.event_id == event_id]
        assert decided[0].changed and not any(o.changed for o in decided[1:])
