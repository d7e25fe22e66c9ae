"""The demo's fault schedule (``redis-spanner demo --chaos``): every few seconds, one fault.

Faults touch only what the demo owns: a redis-server started for the chaos run (never the
stack's nor one named by REDIS_URL, whose keys a flush would destroy), the Pub/Sub emulator
only when this run started it, and the consumer's batches through a stand-in in front of its
processor. Every fault ends before the next one starts, and before the schedule stops.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from google.cloud import pubsub_v1  # type: ignore[attr-defined]
from redis_spanner.consumers.core import Processor
from redis_spanner.infra import faults
from redis_spanner.infra.discovery import StackError
from redis_spanner.infra.local import PUBSUB, LocalStack, default_state_dir
from rich.console import Console

log = logging.getLogger(__name__)

REDIS_STALL = "redis-stall"
REDIS_RESTART = "redis-restart"
REDIS_FLUSH = "redis-flush"
BATCH_FAILURES = "batch-failures"
PUBSUB_PAUSE = "pubsub-pause"
POISON = "poison"
NOISY_LOGGERS = ("redis_spanner.infra.demo.workload", "redis_spanner.consumers.core")


@dataclass
class Targets:
    """What the chaos run may break: its own Redis, and the stack's processes it started."""

    redis: faults.OwnProcess
    stack: LocalStack
    running_before: dict[str, int]
    """The stack's processes already running before the demo started it: never touched."""

    def owned_pubsub(self) -> int | None:
        """The Pub/Sub emulator's process group, if this run started it."""
        pid = self.stack.running_pids().get(PUBSUB)
        return pid if pid is not None and self.running_before.get(PUBSUB) != pid else None


class _Throttle(logging.Filter):
    """Lets one record a second through: a reader fails on every call while Redis is down."""

    def __init__(self) -> None:
        super().__init__()
        self._next = 0.0
        self._dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        now = time.monotonic()
        if now < self._next:
            self._dropped += 1
            return False
        self._next = now + 1.0
        if self._dropped:
            record.msg = f"{record.msg} (and {self._dropped} more in the last second)"
            self._dropped = 0
        return True


@contextmanager
def environment(enabled: bool, console: Console) -> Iterator[Targets | None]:
    """Around ``infra.local.started()``: a redis-server of the run's own, exported as REDIS_URL
    so the stack uses it, and the record of what ran before. Yields None when not enabled."""
    if not enabled:
        yield None
        return
    state_dir = default_state_dir()
    stack = LocalStack(state_dir)
    before = stack.running_pids()
    directory = state_dir / "chaos"
    directory.mkdir(parents=True, exist_ok=True)
    with faults.redis_server(Path(directory)) as redis:
        redis.start()
        if os.environ.get("REDIS_URL"):
            console.print("[bold]chaos[/] REDIS_URL is ignored: faults use a redis-server of "
                          "their own")
        os.environ["REDIS_URL"] = redis.address
        throttles = [(logging.getLogger(name), _Throttle()) for name in NOISY_LOGGERS]
        for logger, throttle in throttles:
            logger.addFilter(throttle)
        try:
            yield Targets(redis, stack, before)
        finally:
            for logger, throttle in throttles:
                logger.removeFilter(throttle)


@dataclass
class Schedule:
    """Injects one fault every ``every`` seconds (a random pick in the range) until stopped,
    each kind once per round."""

    targets: Targets
    topic_path: str
    console: Console
    rng: random.Random
    every: tuple[float, float] = (1.5, 2.5)
    injected: Counter[str] = field(default_factory=Counter)
    """Faults injected, by kind."""
    _batches: faults.FailingBatches | None = None

    def wrap(self, processor: Processor) -> faults.FailingBatches:
        """The processor the worker should call, so batch failures can be injected."""
        self._batches = faults.FailingBatches(processor)
        return self._batches

    def kinds(self) -> list[str]:
        kinds = [REDIS_STALL, REDIS_RESTART, REDIS_FLUSH, POISON]
        if self._batches is not None:
            kinds.append(BATCH_FAILURES)
        if self.targets.owned_pubsub() is not None:
            kinds.append(PUBSUB_PAUSE)
        return kinds

    def run(self, stop: threading.Event) -> None:
        kinds = self.kinds()
        skipped = "" if PUBSUB_PAUSE in kinds else " (no pubsub-pause: this run did not start " \
                                                    "the Pub/Sub emulator)"
        self.console.print(f"[bold]chaos[/] {', '.join(kinds)}{skipped}")
        publisher = pubsub_v1.PublisherClient()
        deck: list[str] = []
        try:
            while not stop.wait(self.rng.uniform(*self.every)):
                if not deck:  # every kind once per round, in a new order each round
                    deck = self.rng.sample(kinds, len(kinds))
                kind = deck.pop()
                try:
                    detail = self._inject(kind, stop, publisher)
                except Exception as e:  # a fault that fails to happen is reported, not fatal
                    log.warning("chaos: %s failed: %s", kind, e)
                    continue
                self.injected[kind] += 1
                self.console.print(f"[yellow]fault[/] {kind} {detail}")
        finally:
            publisher.stop()
            self._recover()

    def _inject(self, kind: str, stop: threading.Event,
                publisher: pubsub_v1.PublisherClient) -> str:
        redis = self.targets.redis
        if kind == REDIS_STALL:
            seconds = self.rng.uniform(1.0, 2.0)
            with redis.paused():
                stop.wait(seconds)
            return f"SIGSTOP {seconds:.1f}s"
        if kind == REDIS_RESTART:
            seconds = self.rng.uniform(0.3, 1.0)
            redis.kill()
            stop.wait(seconds)
            redis.start()
            return f"down {seconds:.1f}s, back empty on the same port"
        if kind == REDIS_FLUSH:
            faults.flush_redis(redis.address)
            return "FLUSHALL"
        if kind == BATCH_FAILURES:
            batches = self.rng.randint(1, 3)
            assert self._batches is not None
            self._batches.fail_next(batches)
            return f"next {batches} batch(es) nacked"
        if kind == PUBSUB_PAUSE:
            pgid = self.targets.owned_pubsub()
            assert pgid is not None
            seconds = self.rng.uniform(1.0, 2.5)
            with faults.paused(pgid):
                stop.wait(seconds)
            return f"emulator SIGSTOP {seconds:.1f}s"
        sent = self.rng.sample(faults.POISON, self.rng.randint(2, 4))
        for poison in sent:
            faults.publish_raw(publisher, self.topic_path, poison.data)
        return ", ".join(p.kind for p in sent)

    def _recover(self) -> None:
        """Leave Redis answering and the Pub/Sub emulator running, whatever happened."""
        redis = self.targets.redis
        with suppress(ProcessLookupError, StackError):
            redis.resume()
        if not redis.healthy():
            redis.restart()
        if (pgid := self.targets.owned_pubsub()) is not None:
            with suppress(ProcessLookupError):
                faults.resume_group(pgid)
