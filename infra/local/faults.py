"""Fault tools for the fault-injection tests and ``redis-spanner demo --chaos``.

Stall a process group (SIGSTOP / SIGCONT), kill and restart a redis-server on the same port,
flush Redis, start emulators of one's own (a Spanner emulator that aborts commits at random),
fail the consumer's next batches, and craft poison messages, each with the dead-letter
reason the consumer must give it.

Every process started here leads its own process group, so a signal reaches all of it: the
Spanner emulator's gateway and its emulator_main, the Pub/Sub emulator's launcher and its JVM.
Discovery is that of ``redis_spanner.infra.local.discovery``, free ports and process groups those of
``redis_spanner.infra.local.processes``, health checks those of ``redis_spanner.infra.local.stack``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import redis
from google.cloud import pubsub_v1  # type: ignore[attr-defined]
from redis_spanner.consumers.core import Processor
from redis_spanner.consumers.messages import Disposition, Inbound, Outcome
from redis_spanner.infra.local.discovery import StackError
from redis_spanner.infra.local.processes import STOP_GRACE_SECONDS, signal_group
from redis_spanner.infra.local.stack import (
    PUBSUB,
    REDIS,
    SPANNER,
    Component,
    Launch,
    healthy,
    pubsub_launch,
    redis_launch,
    spanner_launch,
)
from redis_spanner.schemas.errors import TransientError

# --- process groups ------------------------------------------------------------------------------

def pause_group(pgid: int) -> None:
    """Freeze every process of the group: it keeps its sockets open and answers nothing."""
    os.killpg(pgid, signal.SIGSTOP)


def resume_group(pgid: int) -> None:
    os.killpg(pgid, signal.SIGCONT)


@contextmanager
def paused(pgid: int) -> Iterator[None]:
    """The group is frozen for the length of the block, and resumed however the block ends."""
    pause_group(pgid)
    try:
        yield
    finally:
        with suppress(ProcessLookupError):
            resume_group(pgid)


class OwnProcess:
    """A server started here, in a process group of its own, that faults may stall or kill.

    ``restart()`` runs the same command again, so the server comes back on the same port.
    """

    def __init__(self, name: str, command: list[str], address: str, ports: dict[str, int],
                 log: Path) -> None:
        self.name = name
        self.command = command
        self.address = address
        self.ports = ports
        self.log = log
        self._child: subprocess.Popen[bytes] | None = None

    @property
    def pgid(self) -> int:
        if self._child is None:
            raise StackError(f"{self.name} is not running")
        return self._child.pid

    def start(self, timeout: float = 60.0) -> OwnProcess:
        with self.log.open("ab") as out:
            self._child = subprocess.Popen(
                self.command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                cwd=self.log.parent, start_new_session=True,
            )
        self.wait_healthy(timeout)
        return self

    def healthy(self) -> bool:
        """A real request answered (``redis_spanner.infra.local.stack.healthy``)."""
        return healthy(Component(self.name, self.address, ports=self.ports))

    def wait_healthy(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if self._child is None or self._child.poll() is not None:
                raise StackError(f"{self.name} exited during start-up; see {self.log}")
            if time.monotonic() > deadline:
                raise StackError(f"{self.name} not healthy after {timeout:g}s; see {self.log}")
            time.sleep(0.05)

    def pause(self) -> None:
        pause_group(self.pgid)

    def resume(self) -> None:
        resume_group(self.pgid)

    @contextmanager
    def paused(self) -> Iterator[None]:
        with paused(self.pgid):
            yield

    def kill(self) -> None:
        """SIGKILL the whole group and wait until none of it is left."""
        self._signal_until_gone((signal.SIGKILL,))

    def restart(self, timeout: float = 60.0) -> None:
        self.kill()
        self.start(timeout)

    def stop(self) -> None:
        """Stop the group for good (resumed first, in case a fault left it frozen)."""
        if self._child is None:
            return
        with suppress(ProcessLookupError):
            resume_group(self.pgid)
        self._signal_until_gone((signal.SIGTERM, signal.SIGKILL))
        self._child = None

    def _signal_until_gone(self, signals: Sequence[signal.Signals]) -> None:
        if self._child is None:
            return
        signal_group(self.name, self._child.pid, signals)
        self._child.wait(timeout=STOP_GRACE_SECONDS)

    def __enter__(self) -> OwnProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def redis_server(directory: Path) -> OwnProcess:
    """A throwaway redis-server on a free port: nothing saved, nothing appended."""
    return _own(REDIS, redis_launch(directory), directory)


def pubsub_emulator(directory: Path) -> OwnProcess:
    return _own(PUBSUB, pubsub_launch(), directory)


def spanner_emulator(directory: Path, *, fault_injection: bool = False) -> OwnProcess:
    """A Spanner emulator; with ``fault_injection`` it aborts commits at random, as Spanner
    may, so that callers prove their retries."""
    flags = ("--enable_fault_injection",) if fault_injection else ()
    return _own(SPANNER, spanner_launch(*flags), directory)


def _own(name: str, launch: Launch, directory: Path) -> OwnProcess:
    command, address, ports = launch
    port = next(iter(ports.values()))
    return OwnProcess(name, command, address, ports, directory / f"{name}-{port}.log")


def flush_redis(url: str) -> None:
    """Drop every key, as a failover to an empty replica or an operator's FLUSHALL would."""
    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        client.flushall()
    finally:
        client.close()


# --- consumer faults -----------------------------------------------------------------------------

class FailingBatches:
    """Stands in front of a consumer's processor and fails its next ``n`` batches whole.

    A failed batch is nacked message by message, as the core does when Redis stays out of
    reach past its retries, so Pub/Sub redelivers each message after its backoff.
    """

    def __init__(self, processor: Processor) -> None:
        self._processor = processor
        self._lock = threading.Lock()
        self._failing = 0
        self.failed = 0

    def fail_next(self, batches: int) -> None:
        with self._lock:
            self._failing += batches

    def process(self, batch: Sequence[Inbound]) -> list[Outcome]:
        with self._lock:
            fail = self._failing > 0
            if fail:
                self._failing -= 1
                self.failed += 1
        if not fail:
            return self._processor.process(batch)
        error = TransientError("injected fault: the batch failed")
        return [Outcome(message, Disposition.NACK, error=error) for message in batch]


# --- poison messages -----------------------------------------------------------------------------

VALID_ENVELOPE = {
    "schema_version": 1,
    "event_id": "0badc0de-0000-4000-8000-000000000000",
    "type": "row.changed",
    "table": "Accounts",
    "key": ["poison"],
    "commit_ts": "2020-01-01T00:00:00.000000001Z",
}


_DROP = object()


def _with(**changes: object) -> bytes:
    body = {**VALID_ENVELOPE, **changes}
    return json.dumps({k: v for k, v in body.items() if v is not _DROP}).encode()


@dataclass(frozen=True)
class Poison:
    """A message no consumer can apply, and the ``dl_reason`` it must be dead-lettered with."""

    kind: str
    data: bytes
    reason: str


POISON: tuple[Poison, ...] = (
    Poison("not-json", b"\x00\xffnot json", "undecodable"),
    Poison("not-an-object", b'["a", "list"]', "undecodable"),
    Poison("missing-field", _with(commit_ts=_DROP), "invalid"),
    Poison("bad-timestamp", _with(commit_ts="yesterday"), "invalid"),
    Poison("unknown-type", _with(type="row.exploded"), "unknown-type"),
    Poison("future-schema", _with(schema_version=99), "unsupported-schema-version"),
    Poison("far-future-version", _with(commit_ts="2999-01-01T00:00:00Z"), "version-ahead"),
    Poison("undeclared-table", _with(table="Invoices"), "key-refused"),
    Poison("key-outside-namespace", _with(key=["../../etc"]), "key-refused"),
)


def publish_raw(publisher: pubsub_v1.PublisherClient, topic_path: str, data: bytes,
                **attributes: str) -> str:
    """Publish bytes as they are (no envelope, no validation); returns the message id."""
    return str(publisher.publish(topic_path, data, **attributes).result(timeout=30))

