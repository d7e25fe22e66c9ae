"""The harness of the fault-injection suite: a ``Pipeline`` that runs the whole path for one
test and records every outcome, with the checks every fault test ends with, and the start of a
fault tool's own process for a fixture.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from typing import Any

import pytest
from google.cloud import pubsub_v1, spanner  # type: ignore[attr-defined]
from redis_spanner.consumers.core import Processor
from redis_spanner.consumers.messages import Disposition, Inbound, Outcome
from redis_spanner.consumers.pubsub import DEAD_LETTER_PREFIX, PullSubscription
from redis_spanner.consumers.readthrough import ReadThrough
from redis_spanner.consumers.redis_cache import RedisCache
from redis_spanner.consumers.spanner_rows import SpannerRows
from redis_spanner.consumers.verify import Verdict, compare
from redis_spanner.consumers.worker import Consumer, PullWorker, healer
from redis_spanner.infra.demo.tally import Tally
from redis_spanner.infra.demo.workload import bump
from redis_spanner.infra.local import faults
from redis_spanner.infra.local.discovery import StackError
from redis_spanner.producers.runner import build_relay
from redis_spanner.producers.spanner import open_database, run_transaction
from redis_spanner.schemas.cache import Entry
from redis_spanner.schemas.catalog import load_catalog
from redis_spanner.schemas.keys import CacheKey
from redis_spanner.schemas.settings import Settings

from tests.waiting import wait_until

QUIESCE_SECONDS = 60.0
QUIET_SECONDS = 5.0
"""How long the pipeline must decide nothing new, with the hold subscription holding only what
is expected, before "nothing else was dead-lettered" is believed: longer than an in-process
retry of a batch and than the emulator takes to forward a message it gave up on."""


class Pipeline:
    """The whole path for one test: Spanner rows, relays, workers, Redis, and what happened.

    Relays and workers run in threads of this process (so every outcome is seen) or, to be
    killed for real, as ``redis-spanner relay|worker`` subprocesses with a failpoint.
    """

    def __init__(self, settings: Settings, redis_server: faults.OwnProcess) -> None:
        self.settings = settings
        self.redis = redis_server
        self.database = open_database(settings)
        self.catalog = load_catalog(settings.catalog, settings.namespace)
        self.cache = RedisCache.from_settings(settings)
        self.tally = Tally()
        self.outcomes: list[Outcome] = []
        self.decided_at: list[float] = []
        """When each of ``outcomes`` was decided (``time.monotonic()``)."""
        self.crashes: list[BaseException] = []
        self.held: dict[str, Mapping[str, str]] = {}
        """Dead letters on the hold subscription, by the message id they were delivered as."""
        self.event_keys: dict[str, str] = {}
        """Account of every event a writer committed, by event id."""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._closers: list[Callable[[], None]] = []
        self._subscriber = pubsub_v1.SubscriberClient()
        self._closers.append(self._subscriber.close)
        self._closers.append(self.cache.client.close)

    # --- running the pipeline ------------------------------------------------------------

    def spawn(self, loop: Callable[[threading.Event], None]) -> threading.Thread:
        thread = threading.Thread(target=loop, args=(self._stop,), daemon=True)
        thread.start()
        self._threads.append(thread)
        return thread

    def observe(self, outcomes: list[Outcome]) -> None:
        self.tally.on_outcomes(outcomes)
        now = time.monotonic()
        with self._lock:
            self.outcomes.extend(outcomes)
            self.decided_at.extend(now for _ in outcomes)

    def start_relay(self) -> None:
        relay, publisher = build_relay(self.settings, on_published=self.tally.on_published)
        self._closers.append(publisher.close)
        self.spawn(relay.run)

    def start_worker(
        self, wrap: Callable[[Processor], Any] | None = None, streams: int = 2
    ) -> PullWorker:
        """A pull worker, and its heal loop, whose every outcome is observed; ``wrap`` may stand
        in front of its processor (a slow one, say). A batch that raises out of the worker is a
        crash."""
        consumer = Consumer.from_settings(self.settings, observer=self.observe)
        subscription = PullSubscription(self.settings.subscription_path,
                                        max_messages=self.settings.worker_batch)
        self._closers += [consumer.close, subscription.close]
        processor = wrap(consumer.processor) if wrap else consumer.processor
        worker = PullWorker(subscription, processor, streams=streams)
        handle = worker.handle

        def guarded(received: list[tuple[str, Inbound]]) -> list[Outcome]:
            try:
                return handle(received)
            except BaseException as e:
                self.crashes.append(e)
                raise

        worker.handle = guarded  # type: ignore[method-assign]
        self.spawn(lambda stop: worker.run(stop, pull_timeout=1.0))
        heal = healer(self.settings, consumer, processor)  # as `redis-spanner worker` runs it
        self._closers.append(heal.subscription.close)
        self.spawn(lambda stop: heal.run(stop, pull_timeout=1.0))
        return worker

    def run_cli(self, command: str, failpoint: str, *args: str) -> subprocess.Popen[bytes]:
        """``redis-spanner <command>`` in a process of its own that SIGKILLs itself at
        ``failpoint``, with this test's settings."""
        env = {**os.environ, "REDIS_SPANNER_FAILPOINTS": f"{failpoint}=kill"}
        return subprocess.Popen(
            [sys.executable, "-m", "redis_spanner.infra.cli", command, *args], env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
        for close in reversed(self._closers):
            close()

    # --- data ----------------------------------------------------------------------------

    def accounts(self, count: int, balance: int = 1000) -> list[str]:
        """Account rows created without any event: the state the cache starts from."""
        ids = [f"acct-{n:03d}" for n in range(count)]

        def work(tx: Any) -> None:
            tx.insert_or_update("Accounts", ("AccountId", "Owner", "Balance", "UpdatedAt"),
                                [[i, f"owner-{i}", balance, spanner.COMMIT_TIMESTAMP]
                                 for i in ids])

        run_transaction(self.database, work)
        return ids

    def keys(self, ids: Sequence[str]) -> list[CacheKey]:
        template = self.catalog.template("account")
        return [self.catalog.key(template, [i]) for i in ids]

    def fill(self, ids: Sequence[str]) -> None:
        """Read every account through the cache, so a lost invalidation would leave a value."""
        reader = ReadThrough(self.catalog, self.cache, SpannerRows(self.database))
        reader.get_many(self.keys(ids))

    def entries(self, ids: Sequence[str]) -> list[Entry | None]:
        return self.cache.get([k.key for k in self.keys(ids)])

    def bump(self, account: str, delta: int = 1) -> str:
        event_id = bump(self.database, account, delta)
        with self._lock:
            self.event_keys[event_id] = account
        self.tally.on_commit(event_id)
        return event_id

    @contextmanager
    def writing(self, ids: Sequence[str], rate: float = 40.0, seed: int = 3) -> Iterator[None]:
        """Commit business writes with their outbox events, about ``rate`` a second, for the
        length of the block."""
        stop = threading.Event()
        rng = random.Random(seed)

        def loop() -> None:
            while not stop.wait(1 / rate):
                self.bump(rng.choice(ids), rng.randint(-5, 5))

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=30)

    def outbox_count(self) -> int:
        with self.database.snapshot() as snapshot:
            return int(next(iter(snapshot.execute_sql("SELECT COUNT(*) FROM Outbox")))[0])

    # --- what happened -------------------------------------------------------------------

    def dispositions(self) -> Counter[str]:
        with self._lock:
            return Counter(str(o.disposition) for o in self.outcomes)

    def nacks(self) -> int:
        return self.dispositions()[Disposition.NACK]

    def applied_between(self, start: float, end: float) -> int:
        """Events acked as applied (or superseded) between two ``time.monotonic()`` readings:
        none can be while Redis does not answer, since only Redis decides either."""
        with self._lock:
            return sum(1 for at, o in zip(self.decided_at, self.outcomes, strict=True)
                       if start <= at <= end and o.event is not None
                       and o.disposition is Disposition.ACK and not o.dead_letter_reason)

    def published_everything(self) -> bool:
        return self.tally.committed <= self.tally.published

    def deliveries(self) -> Counter[str]:
        """How many times each event was decided (once per delivery that reached the core)."""
        with self._lock:
            return Counter(o.event.event_id for o in self.outcomes if o.event is not None)

    def outcome_of(self, message_id: str) -> Outcome | None:
        with self._lock:
            for outcome in reversed(self.outcomes):
                if outcome.message.message_id == message_id:
                    return outcome
        return None

    def dead_letters(self, expected: int = 0, settle: float = QUIET_SECONDS) -> dict[str, str]:
        """Drain the hold subscription: reason by original message id. Waits for ``expected``
        of them, then until neither the pipeline nor the hold subscription has had anything
        new for ``settle`` seconds, for any that should not be there."""
        deadline = time.monotonic() + QUIESCE_SECONDS + settle
        reached: float | None = None
        last_dead_letter = 0.0
        while True:
            response = self._subscriber.pull(request={
                "subscription": self.settings.dead_letter_subscription_path,
                "max_messages": 100, "return_immediately": True,
            }, timeout=10)
            for received in response.received_messages:
                attributes = dict(received.message.attributes)
                original = attributes.get(DEAD_LETTER_PREFIX + "original_message_id",
                                          received.message.message_id)
                self.held[original] = attributes
            if response.received_messages:
                self._subscriber.acknowledge(
                    subscription=self.settings.dead_letter_subscription_path,
                    ack_ids=[m.ack_id for m in response.received_messages],
                )
            now = time.monotonic()
            if response.received_messages:
                last_dead_letter = now
            if reached is None and len(self.held) >= expected:
                reached = now
            if reached is not None:
                with self._lock:
                    last_decided = max(self.decided_at, default=0.0)
                if now >= max(reached, last_dead_letter, last_decided) + settle:
                    break
            if now > deadline:
                break
            time.sleep(0.1)
        return {k: v.get(DEAD_LETTER_PREFIX + "reason", "forwarded-by-pubsub")
                for k, v in self.held.items()}

    def quiesce(self, timeout: float = QUIESCE_SECONDS) -> None:
        """Wait until every committed event was applied or dead-lettered."""
        wait_until(lambda: not self.tally.unaccounted(), timeout=timeout, interval=0.1)

    def check(self, ids: Sequence[str], poison: Mapping[str, str] | None = None) -> None:
        """The end state every fault must leave: no committed event lost, no stale key, the
        hold subscription holding exactly the poison (message id -> reason), no crash."""
        poison = dict(poison or {})
        with suppress(AssertionError):  # reported below, with what is missing
            self.quiesce()
        lost = self.tally.unaccounted()
        assert not lost, f"{len(lost)} committed event(s) neither applied nor dead-lettered"
        checked = compare(self.keys(ids), self.cache, SpannerRows(self.database))
        stale = [c for c in checked if c.verdict is Verdict.STALE]
        assert not stale, f"stale keys after quiescence: {stale}"
        assert self.dead_letters(len(poison)) == poison
        assert not self.crashes, f"the worker crashed: {self.crashes!r}"
        assert all(t.is_alive() for t in self._threads), "a relay or worker loop ended"


def own_process(process: faults.OwnProcess) -> Iterator[faults.OwnProcess]:
    """Start a fault tool's process for a fixture (failing the test with the reason if it
    cannot), and stop all of it afterwards."""
    try:
        process.start()
    except StackError as e:
        process.stop()
        pytest.fail(f"{process.name} did not start: {e}", pytrace=False)
    with process:
        yield process
