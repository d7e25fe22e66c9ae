"""The change-stream relay: read the partitions this relay leases, publish, checkpoint.

Delivery is at least once: a partition's checkpoint moves only after Pub/Sub holds every event
up to it, and reading resumes from the checkpoint (inclusive), so a relay killed anywhere
republishes on restart and loses nothing. Events keep their ids when read again.

Partitions follow Spanner's lineage: the initial query names the first partitions; a partition
that splits or merges reports its children and ends; a child is read only once all its
parents have finished. Several relays share the partitions through leases in Spanner.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from redis_spanner.producers import metrics
from redis_spanner.producers.changestream import (
    ChangeMessage,
    ChildPartition,
    ChildPartitions,
    DataChange,
    Heartbeat,
    Record,
    messages,
)
from redis_spanner.producers.changestream_cursor import Cursor, Notifying
from redis_spanner.producers.partition_store import Partition
from redis_spanner.producers.publisher import Message, Pending
from redis_spanner.schemas.errors import (
    CheckpointExpired,
    PermanentError,
    RedisSpannerError,
    TransientError,
)
from redis_spanner.schemas.failpoints import failpoint

log = logging.getLogger(__name__)


class Source(Protocol):
    stream: str

    def read(self, token: str | None, start: dt.datetime, end: dt.datetime
             ) -> Iterator[Record]: ...


class Partitions(Protocol):
    def ensure_root(self) -> None: ...
    def claim(self, owner: str, lease_seconds: float) -> list[Partition]: ...
    def add_children(self, children: Sequence[ChildPartition], start: dt.datetime) -> None: ...
    def checkpoint(self, owner: str, token: str, ts: dt.datetime, *, finished: bool = False
                   ) -> bool: ...
    def release(self, owner: str) -> None: ...
    def oldest_checkpoint(self) -> dt.datetime | None: ...


class Publisher(Protocol):
    def submit(self, messages: Sequence[Message]) -> Pending: ...


@dataclass(frozen=True)
class ReaderConfig:
    tables: frozenset[str]
    key_order: Mapping[str, Sequence[str]]
    retention: dt.timedelta
    lease_seconds: float = 10.0
    window_seconds: float = 10.0
    """Each query reads this far past now, then the next one resumes from the checkpoint."""
    checkpoint_every: float = 1.0
    lag_every: float = 5.0


class ChangeStreamRelay:
    def __init__(
        self,
        source: Source,
        partitions: Partitions,
        publisher: Publisher,
        config: ReaderConfig,
        *,
        owner: str | None = None,
        on_published: Callable[[list[ChangeMessage]], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.owner = owner or f"csr-{uuid.uuid4().hex[:12]}"
        self.ready = threading.Event()
        """Set once the stream has a starting point: changes committed after are captured."""
        self._source = source
        self._partitions = partitions
        self._publisher = publisher
        self._config = config
        self._on_published = on_published
        self._clock = clock
        self._held: dict[str, float] = {}
        """Leased partition token -> local deadline of its lease."""
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()
        self._fatal: RedisSpannerError | None = None
        self._next_lag = 0.0

    @property
    def partitions(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._held)

    def run(self, stop: threading.Event) -> None:
        """Claim and read partitions until ``stop`` is set. Raises ``CheckpointExpired``
        (and stops) when a checkpoint lies beyond the stream's retention."""
        log.info("change-stream relay %s started on %s", self.owner, self._source.stream)
        failures = 0
        try:
            while not stop.is_set() and self._fatal is None:
                try:
                    if not self.ready.is_set():
                        self._partitions.ensure_root()
                        self.ready.set()
                    self._claim(stop)
                    self._report_lag()
                    failures = 0
                except TransientError as e:
                    failures += 1
                    log.warning("change-stream relay %s: %s", self.owner, e)
                    stop.wait(min(0.1 * 2**failures, 2.0))
                    continue
                stop.wait(self._config.lease_seconds / 4)
        finally:
            with self._lock:
                self._held.clear()
            for thread in list(self._threads.values()):
                thread.join(timeout=self._config.window_seconds + 5)
            try:
                self._partitions.release(self.owner)
            except RedisSpannerError as e:  # leases expire on their own
                log.warning("change-stream relay %s could not release: %s", self.owner, e)
        if self._fatal is not None:
            raise self._fatal

    def _claim(self, stop: threading.Event) -> None:
        started = self._clock()
        claimed = self._partitions.claim(self.owner, self._config.lease_seconds)
        deadline = started + self._config.lease_seconds
        with self._lock:
            self._held = {p.token: deadline for p in claimed}
        metrics.CHANGESTREAM_PARTITIONS.set(len(claimed))
        for partition in claimed:
            thread = self._threads.get(partition.token)
            if thread is None or not thread.is_alive():
                thread = threading.Thread(target=self._read_guarded, args=(partition, stop),
                                          daemon=True, name=f"{self.owner}-partition")
                self._threads[partition.token] = thread
                thread.start()
        self._threads = {t: th for t, th in self._threads.items() if th.is_alive()}

    def _report_lag(self) -> None:
        """How far behind the slowest unfinished partition is (the retention's margin)."""
        now = self._clock()
        if now < self._next_lag:
            return
        self._next_lag = now + self._config.lag_every
        metrics.CHANGESTREAM_CHECKPOINT_AGE.set(
            metrics.age_seconds(self._partitions.oldest_checkpoint()))

    def _stopping(self, stop: threading.Event) -> bool:
        return stop.is_set() or self._fatal is not None

    def _leased(self, token: str) -> bool:
        """Held, with a third of the lease left, so a slow step never outlives it."""
        with self._lock:
            deadline = self._held.get(token)
        return deadline is not None and deadline - self._clock() > self._config.lease_seconds / 3

    def _read_guarded(self, partition: Partition, stop: threading.Event) -> None:
        failures = 0
        checkpoint = partition.checkpoint
        while not self._stopping(stop) and self._leased(partition.token):
            try:
                self._check_retention(partition.token, checkpoint)
                checkpoint = self._read(partition, checkpoint, stop)
                return
            except (CheckpointExpired, PermanentError) as e:
                log.debug("change-stream relay %s: stopping: %s", self.owner, e)
                self._fatal = e  # the relay stops; the caller's other loops do not
                return
            except _Resume as e:
                checkpoint = e.checkpoint
                failures += 1
                log.warning("change-stream relay %s: partition %s: %s; resuming from %s",
                            self.owner, _short(partition.token), e.cause, checkpoint)
                stop.wait(min(0.1 * 2**failures, 5.0))
            except Exception:  # a record this reader cannot handle: never skip it, retry
                failures += 1
                log.exception("change-stream relay %s: partition %s failed; resuming from %s",
                              self.owner, _short(partition.token), checkpoint)
                stop.wait(min(0.1 * 2**failures, 30.0))

    def _check_retention(self, token: str, checkpoint: dt.datetime) -> None:
        oldest = dt.datetime.now(dt.UTC) - self._config.retention
        if checkpoint < oldest:
            raise CheckpointExpired(
                f"change stream {self._source.stream}: partition {_short(token)} stopped at "
                f"{checkpoint.isoformat()}, beyond the stream's retention of "
                f"{self._config.retention}; changes since are gone. Rewarm the cache "
                "(redis-spanner rewarm), then delete the stream's rows of "
                "ChangeStreamPartition to start from now")

    def _read(self, partition: Partition, checkpoint: dt.datetime, stop: threading.Event
              ) -> dt.datetime:
        """Read one partition until it ends (children recorded, marked finished), the lease
        is lost, or ``stop``. Returns the last checkpoint; raises ``_Resume`` to retry."""
        token = partition.token
        cursor = Cursor(checkpoint)
        while not self._stopping(stop):
            end = max(dt.datetime.now(dt.UTC), cursor.safe) + dt.timedelta(
                seconds=self._config.window_seconds)
            ended = False
            try:
                for record in self._source.read(partition.query_token, cursor.safe, end):
                    if isinstance(record, DataChange):
                        sent = messages(record, self._config.tables, self._config.key_order)
                        cursor.sent(record.commit_ts, self._publish(sent))
                    elif isinstance(record, Heartbeat):
                        cursor.reached(record.timestamp)
                    else:
                        self._children(record)
                        ended = True
                    if self._checkpoint_due(cursor) and not self._save(token, cursor):
                        return cursor.safe
                    if self._stopping(stop) or not self._leased(token):
                        break
                else:
                    if ended:
                        self._save(token, cursor, finished=True)
                        log.info("change-stream relay %s: partition %s finished", self.owner,
                                 _short(token))
                        return cursor.safe
                if not self._save(token, cursor):
                    return cursor.safe
            except TransientError as e:
                raise _Resume(cursor.safe, e) from e
            if not self._leased(token):
                return cursor.safe
        return cursor.safe

    def _publish(self, sent: list[ChangeMessage]) -> Pending | Notifying | None:
        if not sent:
            return None
        pending = self._publisher.submit(sent)
        notify = self._on_published
        if notify is None:
            return pending
        return Notifying(pending, lambda: notify(sent))

    def _children(self, record: ChildPartitions) -> None:
        self._partitions.add_children(record.children, record.start_ts)

    def _checkpoint_due(self, cursor: Cursor) -> bool:
        return self._clock() - cursor.saved_at >= self._config.checkpoint_every

    def _save(self, token: str, cursor: Cursor, *, finished: bool = False) -> bool:
        """Wait for Pub/Sub to hold what was sent, then move the checkpoint."""
        published = cursor.confirm()
        metrics.CHANGESTREAM_PUBLISHED.inc(published)
        if published:
            failpoint("changestream.before_checkpoint")
        kept = self._partitions.checkpoint(self.owner, token, cursor.safe, finished=finished)
        cursor.saved_at = self._clock()
        if not kept:
            log.info("change-stream relay %s: lease on partition %s lost", self.owner,
                     _short(token))
            with self._lock:
                self._held.pop(token, None)
        return kept


class _Resume(Exception):
    def __init__(self, checkpoint: dt.datetime, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.checkpoint = checkpoint
        self.cause = cause


def _short(token: str) -> str:
    return token[:12] + "..." if len(token) > 12 else token or "(initial)"
