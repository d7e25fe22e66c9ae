"""The Pub/Sub emulator frozen while writers commit."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pytest
from redis_spanner.infra.local import faults

from tests.waiting import wait_until

if TYPE_CHECKING:
    from tests.faults.harness import Pipeline

pytestmark = pytest.mark.integration

PAUSE_SECONDS = 4.0
ACK_DEADLINE = 5


@pytest.mark.timeout(120)
def test_relay_keeps_its_rows_while_pubsub_is_frozen_and_catches_up(
    open_pipeline: Any, own_pubsub: faults.OwnProcess
) -> None:
    """With Pub/Sub frozen (SIGSTOP) nothing is published, so the relay deletes nothing: rows
    committed meanwhile wait in the outbox. After SIGCONT the relay publishes them, the worker
    applies them (those leased to a pull that timed out during the pause, once their ack
    deadline passes), and the outbox empties."""
    # A pull answered while the worker had given up on it leases messages to nobody until
    # their ack deadline: keep it short.
    pipe: Pipeline = open_pipeline(ack_deadline=ACK_DEADLINE,
                                   environ={"PUBSUB_EMULATOR_HOST": own_pubsub.address})
    ids = pipe.accounts(20)
    pipe.fill(ids)
    pipe.start_relay()
    pipe.start_worker()
    with pipe.writing(ids, rate=30):
        wait_until(lambda: len(pipe.tally.published) >= 5, interval=0.1)  # the relay is at work
        with own_pubsub.paused():
            committed_before = set(pipe.tally.committed)
            time.sleep(PAUSE_SECONDS)
            # Commits held back first, then the outbox: a row committed in between is only
            # counted in the outbox, never only among the held back.
            held_back = pipe.tally.committed - committed_before
            waiting = pipe.outbox_count()
            published_while_frozen = held_back & pipe.tally.published
        time.sleep(1.0)
    assert held_back, "no write committed while Pub/Sub was frozen"
    assert not published_while_frozen
    assert waiting >= len(held_back), "the relay let go of rows Pub/Sub never took"
    pipe.check(ids)
    wait_until(lambda: pipe.outbox_count() == 0)
