"""The demo's fault schedule (``redis-spanner demo --chaos``): every few seconds, one fault.

Faults touch only what the demo owns: a redis-server started for the chaos run and its
replica (never the stack's nor one named by REDIS_URL, whose keys a flush would destroy), the
Pub/Sub emulator only when this run started it, and the consumer's batches through a stand-in
in front of its processor. Every fault ends before the next one starts, and before the
schedule stops, except that messages made undeliverable keep failing until Pub/Sub forwards
them to the heal topic (about 15 s). The consumer WAITs for the replica before it acks, so a
failover to it loses no acknowledged invalidation.
"""

from __future__ import annotations

import itertools
import logging
import os
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis as redis_py
from google.cloud import pubsub_v1  # type: ignore[attr-defined]
from redis_spanner.consumers.core import Processor
from redis_spanner.consumers.messages import Disposition, Inbound, Outcome
from redis_spanner.infra.local import faults
from redis_spanner.infra.local.discovery import StackError
from redis_spanner.infra.local.stack import PUBSUB, LocalStack, default_state_dir
from redis_spanner.schemas.catalog import load_catalog
from redis_spanner.schemas.envelope import Event
from redis_spanner.schemas.errors import TransientError
from redis_spanner.schemas.events import EventType
from redis_spanner.schemas.keys import LEASE_SUFFIX
from redis_spanner.schemas.settings import Settings
from rich.console import Console

log = logging.getLogger(__name__)

REDIS_STALL = "redis-stall"
REDIS_RESTART = "redis-restart"
REDIS_FLUSH = "redis-flush"
BATCH_FAILURES = "batch-failures"
PUBSUB_PAUSE = "pubsub-pause"
POISON = "poison"
PAST_BUDGET = "past-delivery-budget"
FAILOVER = "primary-failover"
FOREIGN = "foreign-entries"
POISON_ROW = "poison-outbox-row"
NOISY_LOGGERS = ("redis_spanner.infra.demo.workload", "redis_spanner.consumers.core")


@dataclass
class Targets:
    """What the chaos run may break: its own Redis, and the stack's processes it started."""

    redis: faults.OwnProcess
    replica: faults.OwnProcess
    """A replica of ``redis``, which a failover promotes; the consumer WAITs for it."""
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
    """Around ``infra.local.stack.started()``: a redis-server of the run's own, exported as
    REDIS_URL so the stack uses it, and the record of what ran before. Yields None when not
    enabled."""
    if not enabled:
        yield None
        return
    state_dir = default_state_dir()
    stack = LocalStack(state_dir)
    before = stack.running_pids()
    directory = state_dir / "chaos"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "replica").mkdir(exist_ok=True)
    with faults.redis_server(Path(directory)) as redis, \
            faults.redis_server(directory / "replica") as replica:
        redis.start()
        replica.start()
        follow(replica, redis)
        if os.environ.get("REDIS_URL"):
            console.print("[bold]chaos[/] REDIS_URL is ignored: faults use a redis-server of "
                          "their own")
        os.environ["REDIS_URL"] = redis.address
        # Acked means on the replica too, so a failover loses no acked invalidation.
        os.environ["REDIS_SPANNER_REDIS_WAIT_REPLICAS"] = "1"
        throttles = [(logging.getLogger(name), _Throttle()) for name in NOISY_LOGGERS]
        for logger, throttle in throttles:
            logger.addFilter(throttle)
        try:
            yield Targets(redis, replica, stack, before)
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
    database: Any = None
    """The demo's Spanner database: poison outbox rows are written there when set."""

    _undeliverable: Undeliverable | None = None

    def wrap(self, processor: Processor) -> Undeliverable:
        """The processor the worker should call, so batch failures can be injected."""
        self._batches = faults.FailingBatches(processor)
        self._undeliverable = Undeliverable(self._batches)
        return self._undeliverable

    def kinds(self) -> list[str]:
        kinds = [REDIS_STALL, REDIS_RESTART, REDIS_FLUSH, POISON, FAILOVER, FOREIGN]
        if self._batches is not None:
            kinds += [BATCH_FAILURES, PAST_BUDGET]
        if self.targets.owned_pubsub() is not None:
            kinds.append(PUBSUB_PAUSE)
        if self.database is not None:
            kinds.append(POISON_ROW)
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
        if kind == PAST_BUDGET:
            assert self._undeliverable is not None
            count = self.rng.randint(1, 5)
            self._undeliverable.fail_next(count)
            return (f"next {count} message(s) fail on every delivery until Pub/Sub gives up "
                    "and forwards them to the heal topic")
        if kind == FAILOVER:
            return failover(self.targets.redis, self.targets.replica)
        if kind == FOREIGN:
            return plant_foreign(redis.address, self.topic_path, publisher, self.rng)
        if kind == POISON_ROW:
            return poison_outbox_row(self.database, self.rng)
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
        with suppress(ProcessLookupError, StackError):
            self.targets.replica.resume()
        if (pgid := self.targets.owned_pubsub()) is not None:
            with suppress(ProcessLookupError):
                faults.resume_group(pgid)


# --- an outage longer than the delivery budget ------------------------------------------------

class Undeliverable:
    """Stands in front of the worker's processor: the next ``n`` messages it sees are nacked on
    every delivery, as during an outage longer than the whole delivery budget, until Pub/Sub
    gives up on them and forwards them to the heal topic, where the worker's heal loop (which
    does not go through this stand-in) applies them."""

    def __init__(self, processor: faults.FailingBatches) -> None:
        self._processor = processor
        self._lock = threading.Lock()
        self._picking = 0
        self._doomed: set[str] = set()

    def fail_next(self, messages: int) -> None:
        with self._lock:
            self._picking += messages

    def process(self, batch: Sequence[Inbound]) -> list[Outcome]:
        with self._lock:
            for message in batch:
                if self._picking and message.message_id not in self._doomed:
                    self._doomed.add(message.message_id)
                    self._picking -= 1
            doomed = [m.message_id in self._doomed for m in batch]
        live = [m for m, d in zip(batch, doomed, strict=True) if not d]
        decided = iter(self._processor.process(live) if live else [])
        error = TransientError("injected fault: undeliverable until forwarded")
        return [Outcome(m, Disposition.NACK, error=error) if d else next(decided)
                for m, d in zip(batch, doomed, strict=True)]


# --- a primary failover -----------------------------------------------------------------------

def _client(server: faults.OwnProcess) -> redis_py.Redis:
    return redis_py.Redis.from_url(server.address, socket_timeout=5)


def follow(replica: faults.OwnProcess, primary: faults.OwnProcess, timeout: float = 30.0
            ) -> None:
    """Make ``replica`` replicate ``primary`` and wait until it is in sync."""
    host, port = primary.address.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    with _client(primary) as source, _client(replica) as follower:
        source.config_set("repl-diskless-sync-delay", 0)
        follower.replicaof(host, int(port))
        deadline = time.monotonic() + timeout
        while follower.info("replication").get("master_link_status") != "up":
            if time.monotonic() > deadline:
                raise StackError(f"{replica.address} not in sync with {primary.address}")
            time.sleep(0.05)


def failover(primary: faults.OwnProcess, replica: faults.OwnProcess) -> str:
    """The primary dies and its replica takes over its address, with only what it had
    replicated: the replica is promoted, the primary killed, and ``take_over`` follows.
    Writes fail (transiently) until it is over."""
    started = time.monotonic()
    with _client(replica) as promoted:
        promoted.replicaof("NO", "ONE")
    primary.kill()
    take_over(primary, replica)
    return f"replica promoted, primary back on its address after {time.monotonic() - started:.1f}s"


def take_over(primary: faults.OwnProcess, promoted: faults.OwnProcess) -> None:
    """A new server on the dead ``primary``'s port takes the ``promoted`` replica's data and
    becomes the primary, so clients find the replica's data where they look; the promoted
    server then follows it as a replica again."""
    primary.start()
    follow(primary, promoted)
    with _client(primary) as new_primary:
        new_primary.replicaof("NO", "ONE")
    follow(promoted, primary)


# --- foreign entries --------------------------------------------------------------------------

# What an outside client or an older release may leave at a key (see schemas.cache.FOREIGN_*).
_FOREIGN: dict[str, Callable[[redis_py.Redis, str], object]] = {
    "string": lambda r, k: r.set(k, "left by someone else"),
    "list": lambda r, k: r.rpush(k, "a", "b"),
    "set": lambda r, k: r.sadd(k, "a"),
    "zset": lambda r, k: r.zadd(k, {"a": 1.0}),
    "stream": lambda r, k: r.xadd(k, {"f": "v"}),
    "unversioned-hash": lambda r, k: r.hset(k, mapping={"d": "{}", "s": "v"}),
    "bad-version": lambda r, k: r.hset(k, mapping={"v": "not-a-number", "s": "t"}),
    "far-future-version": lambda r, k: r.hset(k, mapping={"v": "9" * 20, "s": "t"}),
}


def plant_foreign(address: str, topic_path: str, publisher: pubsub_v1.PublisherClient,
                  rng: random.Random) -> str:
    """Overwrite a few cached account keys with foreign entries, then publish a genuine change
    event for each: the consumer must overwrite them (and readers treat them as misses)."""
    settings = Settings()
    catalog = load_catalog(settings.catalog, settings.namespace)
    client = redis_py.Redis.from_url(address, decode_responses=True, socket_timeout=5)
    try:
        pattern = catalog.pattern(catalog.template("account"))
        found = [k for k in itertools.islice(client.scan_iter(match=pattern, count=500), 500)
                 if not k.endswith(LEASE_SUFFIX)]
        chosen = rng.sample(found, min(len(found), rng.randint(3, 6)))
        planted = rng.sample(sorted(_FOREIGN), len(chosen))  # a different kind on each key
        for key, kind in zip(chosen, planted, strict=True):
            client.delete(key)
            _FOREIGN[kind](client, key)
            event = Event(str(uuid.uuid4()), EventType.ROW_CHANGED, "Accounts",
                          catalog.parse(key).parts, time.time_ns())
            publisher.publish(topic_path, event.encode(), **event.attributes())
    finally:
        client.close()
    return ", ".join(planted) or "no cached account yet"


_POISON_ROWS = {
    "KeyJson not JSON": ("row.changed", '["acct-1"', None),
    "KeyJson nested 50000 deep": ("row.changed", "[" * 50_000 + "]" * 50_000, None),
    "unknown event type": ("row.exploded", '["acct-1"]', None),
    "Payload not an object": ("row.changed", '["acct-1"]', "[1, 2]"),
    "NULL key part": ("row.deleted", "[null]", None),
}
_INSERT_ROW = """
INSERT INTO Outbox (Shard, EventId, EventType, TableName, KeyJson, Payload, SchemaVersion,
                    CommitTs)
VALUES (ABS(MOD(FARM_FINGERPRINT(@id), 16)), @id, @type, 'Accounts', @key, @payload, 1,
        PENDING_COMMIT_TIMESTAMP())
"""


def poison_outbox_row(database: Any, rng: random.Random) -> str:
    """Insert an outbox row no relay can publish, with plain SQL DML as a writer in another
    language would; the relays must move it to OutboxQuarantine and keep draining its shard."""
    import uuid

    from google.cloud.spanner_v1 import param_types
    from redis_spanner.producers.spanner import run_transaction

    what = rng.choice(sorted(_POISON_ROWS))
    event_type, key, payload = _POISON_ROWS[what]
    event_id = str(uuid.uuid4())
    string = param_types.STRING
    run_transaction(database, lambda tx: tx.execute_update(
        _INSERT_ROW, params={"id": event_id, "type": event_type, "key": key, "payload": payload},
        param_types={"id": string, "type": string, "key": string, "payload": string}))
    return f"{what} ({event_id})"
