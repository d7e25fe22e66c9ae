"""In-memory stand-ins for unit tests of pure logic.

``MemoryCache`` passes the guard and lease contract of tests/cache_contract.py that the real
``RedisCache`` passes (tests/redis/test_redis_cache.py); ``MemoryRows`` passes the read
contract of tests/rows_contract.py that the real ``SpannerRows`` passes on the emulator.
``MemoryDeadLetters`` only records what the core sends and fails on demand: it claims nothing
about Pub/Sub.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from redis_spanner.consumers.messages import Inbound
from redis_spanner.schemas import versions
from redis_spanner.schemas.cache import (
    FIELD_DATA,
    FIELD_STATE,
    FIELD_VERSION,
    OP_INVALIDATE,
    STATE_TOMBSTONE,
    STATE_VALUE,
    Applied,
    CacheOp,
    Entry,
)
from redis_spanner.schemas.errors import PermanentError, TransientError
from redis_spanner.schemas.keys import CacheKey


class MemoryCache:
    """The guard's semantics over a dict; fill leases expire after their TTL on ``clock``."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.entries: dict[str, Entry] = {}
        self.fail_next = 0
        self.round_trips = 0
        self.leases: dict[str, tuple[str, float]] = {}
        """Token and expiry (on ``clock``) by lease key."""
        self._clock = clock

    def apply(self, ops: Sequence[CacheOp]) -> list[Applied]:
        self.round_trips += 1
        if self.fail_next:
            self.fail_next -= 1
            raise TransientError("memory cache told to fail")
        out = []
        for op in ops:
            current = self.entries.get(op.key)
            if current is not None and current.version >= op.version:
                out.append(Applied(op, False, current.version))
                continue
            self.entries[op.key] = Entry(op.version, op.op == OP_INVALIDATE,
                                         None if op.op == OP_INVALIDATE else op.data)
            out.append(Applied(op, True, current.version if current else None))
        return out

    def get(self, keys: Sequence[str]) -> list[Entry | None]:
        return [self.entries.get(k) for k in keys]

    def raw(self, keys: Sequence[str]) -> list[dict[str, str] | str]:
        """Each entry's hash fields, as Redis holds them (empty where nothing is stored)."""
        out: list[dict[str, str] | str] = []
        for entry in self.get(keys):
            fields = {} if entry is None else {
                FIELD_VERSION: versions.encode(entry.version),
                FIELD_STATE: STATE_TOMBSTONE if entry.tombstone else STATE_VALUE}
            if entry is not None and entry.data is not None:
                fields[FIELD_DATA] = entry.data
            out.append(fields)
        return out

    def acquire_leases(self, lease_keys: Sequence[str], token: str, ttl_ms: int) -> list[bool]:
        self._expire_leases()
        taken = []
        for key in lease_keys:
            taken.append(key not in self.leases)
            self.leases.setdefault(key, (token, self._clock() + ttl_ms / 1000))
        return taken

    def release_leases(self, lease_keys: Sequence[str], token: str) -> None:
        self._expire_leases()
        for key in lease_keys:
            if key in self.leases and self.leases[key][0] == token:
                del self.leases[key]

    def _expire_leases(self) -> None:
        now = self._clock()
        for key in [k for k, (_, until) in self.leases.items() if until <= now]:
            del self.leases[key]


class MemoryRows:
    """Rows by Redis key, read at a version that the test moves forward."""

    def __init__(self, version: int = 1) -> None:
        self.values: dict[str, Any] = {}
        self.version = version
        self.commits: dict[str, int] = {}
        self.reads: list[list[str]] = []
        self.version_reads: list[list[str]] = []

    def read(self, keys: Sequence[CacheKey]) -> tuple[dict[str, Any], int]:
        self.reads.append([k.key for k in keys])
        return {k.key: self.values.get(k.key) for k in keys}, self.version

    def read_versions(self, keys: Sequence[CacheKey]) -> tuple[dict[str, int | None], int]:
        self.version_reads.append([k.key for k in keys])
        return {k.key: self.commits.get(k.key) for k in keys}, self.version


class MemoryDeadLetters:
    def __init__(self) -> None:
        self.sent: list[tuple[Inbound, PermanentError]] = []
        self.fail = False

    def send(self, message: Inbound, error: PermanentError) -> None:
        if self.fail:
            raise TransientError("dead-letter topic unavailable")
        self.sent.append((message, error))
