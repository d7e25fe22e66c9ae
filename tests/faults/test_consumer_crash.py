"""A worker SIGKILLed in the middle of a batch, before and after its Redis write."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from tests.waiting import wait_until

if TYPE_CHECKING:
    from tests.faults.harness import Pipeline

pytestmark = pytest.mark.integration

ACK_DEADLINE = 2


@pytest.mark.timeout(120)
@pytest.mark.parametrize("failpoint", ["consumer.before_apply", "consumer.after_apply"])
def test_worker_killed_mid_batch_acks_nothing_and_the_next_worker_applies_everything(
    open_pipeline: Any, failpoint: str
) -> None:
    """A worker killed inside a batch, before or after writing it to Redis, has acked none of
    it: the whole batch comes back once its ack deadline passes, and the next worker applies
    every event (writing twice is harmless: the guard refuses the second write)."""
    pipe: Pipeline = open_pipeline(ack_deadline=ACK_DEADLINE)
    ids = pipe.accounts(20)
    pipe.fill(ids)
    pipe.start_relay()
    for account in ids:
        pipe.bump(account)
    wait_until(pipe.published_everything)

    crashed = pipe.run_cli("worker", failpoint, "--streams", "1")
    _, stderr = crashed.communicate(timeout=60)
    assert crashed.returncode == -9, stderr.decode()[-2000:]
    tombstones = sum(1 for e in pipe.entries(ids) if e is not None and e.tombstone)
    if failpoint == "consumer.before_apply":
        assert tombstones == 0, "the worker wrote to Redis before its failpoint"
    else:
        assert tombstones > 0, "the worker died before writing its batch"

    pipe.start_worker()
    pipe.check(ids)
    redelivered = [o for o in pipe.outcomes if o.message.delivery_attempt > 1]
    assert redelivered, "the killed worker's batch was not redelivered"
