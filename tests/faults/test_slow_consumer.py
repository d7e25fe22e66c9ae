"""A consumer slower than the ack deadline."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from contextlib import suppress
from typing import TYPE_CHECKING, Any

import pytest
from redis_spanner.consumers.core import Processor
from redis_spanner.consumers.messages import Inbound, Outcome

from tests.waiting import wait_until

if TYPE_CHECKING:
    from tests.faults.harness import Pipeline

pytestmark = pytest.mark.integration

ACK_DEADLINE = 2


class SlowFirstBatch:
    """Stands in front of the processor and holds the first batch past its ack deadline, until
    every message of it was redelivered and decided by the other pull loop (or a minute
    passed: then the test fails on the missing redeliveries)."""

    def __init__(self, processor: Processor, pipe: Pipeline) -> None:
        self._processor = processor
        self._pipe = pipe
        self._lock = threading.Lock()
        self.held: list[str] = []

    def redelivered(self) -> set[str]:
        with self._pipe._lock:
            return {o.message.message_id for o in self._pipe.outcomes
                    if o.message.message_id in self.held and o.message.delivery_attempt > 1}

    def process(self, batch: Sequence[Inbound]) -> list[Outcome]:
        with self._lock:
            first = not self.held
            if first:
                self.held = [m.message_id for m in batch]
        if first:
            time.sleep(ACK_DEADLINE)
            with suppress(AssertionError):
                wait_until(lambda: self.redelivered() >= set(self.held), interval=0.1)
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
        slow.append(SlowFirstBatch(processor, pipe))
        return slow[0]

    pipe.start_worker(wrap=wrap)
    pipe.start_relay()
    with pipe.writing(ids, rate=30):
        wait_until(lambda: slow[0].held, interval=0.1)
    pipe.check(ids)
    held = set(slow[0].held)
    assert slow[0].redelivered() == held, "the slow batch was not redelivered while it was held"
    late = [o for o in pipe.outcomes if o.message.message_id in held
            and o.message.delivery_attempt == 1]
    assert late and not any(o.changed for o in late)
