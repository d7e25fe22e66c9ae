"""A consumer slower than the ack deadline."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pytest
from redis_spanner.consumers.core import Processor
from redis_spanner.consumers.messages import Inbound, Outcome

if TYPE_CHECKING:
    from tests.faults.harness import Pipeline

pytestmark = pytest.mark.integration

ACK_DEADLINE = 2


class SlowFirstBatch:
    """Stands in front of the processor and holds the first batch past the ack deadline."""

    def __init__(self, processor: Processor, seconds: float) -> None:
        self._processor = processor
        self._seconds = seconds
        self._lock = threading.Lock()
        self.held: list[str] = []

    def process(self, batch: Sequence[Inbound]) -> list[Outcome]:
        with self._lock:
            first = not self.held
            if first:
                self.held = [m.message_id for m in batch]
        if first:
            time.sleep(self._seconds)
        return self._processor.process(batch)


@pytest.mark.timeout(120)
def test_batch_held_past_its_ack_deadline_is_redelivered_and_duplicates_are_harmless(
    open_pipeline: Any
) -> None:
    """A batch still being worked on when its ack deadline passes is delivered again to the
    other pull loop, which applies it; the slow copy then writes versions Redis already holds
    (or newer events superseded) and its late ack changes nothing. The cache ends coherent."""
    pipe: Pipeline = open_pipeline(ack_deadline=ACK_DEADLINE)
    ids = pipe.accounts(20)
    pipe.fill(ids)
    slow: list[SlowFirstBatch] = []

    def wrap(processor: Processor) -> SlowFirstBatch:
        slow.append(SlowFirstBatch(processor, ACK_DEADLINE + 3.0))
        return slow[0]

    pipe.start_worker(wrap=wrap)
    pipe.start_relay()
    with pipe.writing(ids, rate=30):
        time.sleep(ACK_DEADLINE + 3.0)
    pipe.check(ids)
    held = set(slow[0].held)
    assert held
    redelivered = {o.message.message_id for o in pipe.outcomes
                   if o.message.message_id in held and o.message.delivery_attempt > 1}
    assert redelivered == held, "the slow batch was not redelivered while it was held"
    late = [o for o in pipe.outcomes if o.message.message_id in held
            and o.message.delivery_attempt == 1]
    assert late and not any(o.changed for o in late)
