"""Read-through cache client for services: Redis first, Spanner on a miss, guarded fill.

A fill carries its snapshot's read timestamp as version and goes through the same guard as the
consumer's writes, so a fill older than a tombstone (a reader that read before a commit whose
invalidation already landed) is refused and cannot bring the stale value back.

Thundering herds: on a miss a caller takes a short per-key fill lease (SET NX PX). One caller
fills; the others wait briefly for its value, then read Spanner themselves without filling.

``verify=True`` serves a cached value only after a Spanner read confirms the row has not
changed since the cached version: a version-only read for row templates with a
``version_column``, a full read compared with the cached value otherwise.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from redis_spanner.consumers import metrics
from redis_spanner.consumers.core import CacheWriter, RowReader
from redis_spanner.schemas.cache import CacheOp, Entry, encode_value
from redis_spanner.schemas.keys import CacheKey, Catalog


class CacheReader(CacheWriter, Protocol):
    def get(self, keys: Sequence[str]) -> list[Entry | None]: ...


class LeasingCache(CacheReader, Protocol):
    def acquire_leases(self, lease_keys: Sequence[str], token: str, ttl_ms: int
                       ) -> list[bool]: ...
    def release_leases(self, lease_keys: Sequence[str], token: str) -> None: ...


class VersionReader(RowReader, Protocol):
    def read_versions(self, keys: Sequence[CacheKey]) -> tuple[dict[str, int | None], int]: ...


@dataclass(frozen=True, slots=True)
class Read:
    key: str
    value: Any
    version: int
    hit: bool
    """True when Redis served the value; False when it came from Spanner."""
    filled: bool = False
    """True when this read's Spanner value was written to Redis."""


@dataclass(frozen=True)
class LeasePolicy:
    ttl_ms: int = 2000
    """How long a fill lease lives if its holder never returns (crash, stall)."""
    wait_ms: int = 100
    """How long a caller that lost the lease waits for the holder's value."""
    poll_ms: int = 10


class ReadThrough:
    def __init__(
        self,
        catalog: Catalog,
        cache: LeasingCache,
        rows: VersionReader,
        leases: LeasePolicy = LeasePolicy(),
    ) -> None:
        self._catalog = catalog
        self._cache = cache
        self._rows = rows
        self._leases = leases

    def key(self, template: str, *parts: object) -> CacheKey:
        return self._catalog.key(self._catalog.template(template), parts)

    def get(self, template: str, *parts: object, verify: bool = False) -> Any:
        return self.get_many([self.key(template, *parts)], verify=verify)[0].value

    def get_many(self, keys: Sequence[CacheKey], *, verify: bool = False) -> list[Read]:
        """One Redis round trip for all keys; one Spanner snapshot for the misses."""
        entries = self._cache.get([k.key for k in keys])
        reads: dict[str, Read] = {}
        held: dict[str, Entry] = {}
        misses: list[CacheKey] = []
        for key, entry in zip(keys, entries, strict=True):
            if entry is not None and not entry.tombstone:
                reads[key.key] = Read(key.key, entry.value(), entry.version, hit=True)
                held[key.key] = entry
            else:
                misses.append(key)
        if verify and reads:
            misses += self._unconfirmed([k for k in keys if k.key in held], held, reads)
        if misses:
            reads.update(self._fill(misses, wait=not verify))
        metrics.READS.labels("hit").inc(len(keys) - len(misses))
        metrics.READS.labels("miss").inc(len(misses))
        return [reads[k.key] for k in keys]

    def _unconfirmed(
        self, hits: list[CacheKey], held: dict[str, Entry], reads: dict[str, Read]
    ) -> list[CacheKey]:
        """The hits Spanner can't confirm; they are dropped from ``reads``."""
        stale: list[CacheKey] = []
        versioned = [k for k in hits if k.template.version_column]
        if versioned:
            latest, _ = self._rows.read_versions(versioned)
            for key in versioned:
                commit, entry = latest[key.key], held[key.key]
                gone = commit is None and entry.value() is not None
                if gone or (commit is not None and commit > entry.version):
                    stale.append(key)
        others = [k for k in hits if not k.template.version_column]
        if others:
            values, _ = self._rows.read(others)
            stale += [k for k in others if held[k.key].data != encode_value(values[k.key])]
        for key in stale:
            del reads[key.key]
        metrics.READS.labels("unconfirmed").inc(len(stale))
        return stale

    def _fill(self, misses: list[CacheKey], *, wait: bool) -> dict[str, Read]:
        """Fill the keys whose lease this call takes. For the others, wait for the holder's
        value, or (``wait=False``, as verify needs: the holder may have read before a commit
        this caller must see) read Spanner straight away, without filling."""
        token = uuid.uuid4().hex
        lease_keys = [k.lease_key for k in misses]
        owned = self._cache.acquire_leases(lease_keys, token, self._leases.ttl_ms)
        mine = [k for k, got in zip(misses, owned, strict=True) if got]
        theirs = [k for k, got in zip(misses, owned, strict=True) if not got]
        reads: dict[str, Read] = {}
        if mine:
            try:
                values, version = self._rows.read(mine)
                applied = self._cache.apply(
                    [CacheOp.set(k.key, version, values[k.key]) for k in mine]
                )
            finally:
                self._cache.release_leases([k.lease_key for k in mine], token)
            for key, result in zip(mine, applied, strict=True):
                reads[key.key] = Read(key.key, values[key.key], version, hit=False,
                                      filled=result.applied)
        if theirs:
            reads.update(self._wait_for(theirs) if wait else self._read_only(theirs))
        return reads

    def _wait_for(self, keys: list[CacheKey]) -> dict[str, Read]:
        """Wait briefly for the lease holders' values; read the rest without filling."""
        reads: dict[str, Read] = {}
        pending = list(keys)
        deadline = time.monotonic() + self._leases.wait_ms / 1000
        while pending and time.monotonic() < deadline:
            time.sleep(self._leases.poll_ms / 1000)
            entries = self._cache.get([k.key for k in pending])
            waiting = []
            for key, entry in zip(pending, entries, strict=True):
                if entry is not None and not entry.tombstone:
                    reads[key.key] = Read(key.key, entry.value(), entry.version, hit=True)
                else:
                    waiting.append(key)
            pending = waiting
        metrics.READS.labels("lease_wait").inc(len(keys))
        if pending:
            reads.update(self._read_only(pending))
        return reads

    def _read_only(self, keys: list[CacheKey]) -> dict[str, Read]:
        values, version = self._rows.read(keys)
        return {k.key: Read(k.key, values[k.key], version, hit=False) for k in keys}
