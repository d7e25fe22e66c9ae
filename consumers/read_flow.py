"""What a read-through does, written once for the sync and the asyncio client.

``get_many`` is a generator that yields the I/O it needs (``Request``s) and receives each answer;
it does no I/O itself. ``CacheClient`` runs it with blocking calls, ``AsyncCacheClient`` with
awaits, so both clients take the same decisions:

- A fill carries its snapshot's read timestamp as version and goes through the guard, so a fill
  older than a tombstone (a reader that read before a commit whose invalidation landed) is
  refused and cannot bring the stale value back.
- A fill whose snapshot is older than half the tombstone TTL is not written at all: the
  tombstone that would refuse it may already have expired.
- Thundering herds: on a miss a caller takes a short per-key fill lease (SET NX PX). One caller
  fills; the others wait briefly for its value, then read Spanner themselves without filling.
- ``verify=True`` serves a cached value only after a Spanner read confirms the row has not
  changed since the cached version: a version-only read for row templates with a
  ``version_column``, a full read compared with the cached value otherwise.
- Entries the guard did not write (another Redis type, a hash without a version, a malformed
  version, state or value, a version far in the future) are misses, never an error.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis_spanner.consumers import metrics
from redis_spanner.consumers.read_requests import (
    AcquireLeases,
    Flow,
    RawEntries,
    ReadRows,
    ReadVersions,
    ReleaseLeases,
    Sleep,
    Write,
)
from redis_spanner.schemas import versions
from redis_spanner.schemas.cache import (
    DEFAULT_TOMBSTONE_TTL_SECONDS,
    FIELD_DATA,
    FIELD_STATE,
    FIELD_VERSION,
    FOREIGN_TYPE,
    STATE_TOMBSTONE,
    Applied,
    CacheOp,
    Entry,
    encode_value,
    foreign_kind,
)
from redis_spanner.schemas.keys import CacheKey

log = logging.getLogger(__name__)

NANOS = 1_000_000_000


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


@dataclass(frozen=True)
class FillPolicy:
    max_snapshot_age_ns: int = DEFAULT_TOMBSTONE_TTL_SECONDS * NANOS // 2
    """A fill whose snapshot is older than this is served but not written (half the tombstone
    TTL: a tombstone that would refuse it must still be there when it lands)."""
    future_skew_ns: int = int(versions.DEFAULT_MAX_SKEW_SECONDS * NANOS)
    """A cached version further ahead of the clock than this was not written by the guard
    (``REDIS_SPANNER_MAX_VERSION_SKEW_SECONDS``, as for the consumer's guard)."""
    clock: Callable[[], int] = field(default=time.time_ns)
    """Nanoseconds since the epoch, the scale of Spanner commit timestamps."""

    @classmethod
    def for_tombstone_ttl(
        cls, seconds: float, max_skew_seconds: float = versions.DEFAULT_MAX_SKEW_SECONDS,
    ) -> FillPolicy:
        return cls(max_snapshot_age_ns=int(seconds * NANOS) // 2,
                   future_skew_ns=int(max_skew_seconds * NANOS))


# --- decisions --------------------------------------------------------------------------


def entry_of(fields: Mapping[str, str] | str,
             policy: FillPolicy) -> tuple[Entry | None, str | None]:
    """The entry in ``fields`` as the guard writes it, or ``(None, why)`` for anything else:
    a foreign entry by the guard's own rules (``foreign_kind``, the same allowed skew), or a
    value that is not JSON. Nothing stored is ``(None, None)``: a plain miss."""
    if not fields or fields == "none":
        return None, None
    kind = foreign_kind(fields, policy.clock() + policy.future_skew_ns)
    if kind is not None or isinstance(fields, str):
        return None, kind or FOREIGN_TYPE
    version = int(fields[FIELD_VERSION])
    if fields.get(FIELD_STATE) == STATE_TOMBSTONE:
        return Entry(version, True, None), None
    data = fields[FIELD_DATA]
    try:
        json.loads(data)
    except ValueError:
        return None, "malformed-value"
    return Entry(version, False, data), None


@dataclass
class Lookup:
    """One Redis read of a batch of keys, sorted into hits and misses."""

    reads: dict[str, Read] = field(default_factory=dict)
    held: dict[str, Entry] = field(default_factory=dict)
    misses: list[CacheKey] = field(default_factory=list)
    foreign: set[str] = field(default_factory=set)


def look_up(keys: Sequence[CacheKey], raws: Sequence[Mapping[str, str] | str],
            policy: FillPolicy) -> Lookup:
    found = Lookup()
    for key, fields in zip(keys, raws, strict=True):
        entry, why = entry_of(fields, policy)
        if why is not None:
            found.foreign.add(key.key)
            log.warning("read-through: %s holds an entry the guard did not write (%s); "
                        "read as a miss", key.key, why)
        if entry is not None and not entry.tombstone:
            found.reads[key.key] = Read(key.key, entry.value(), entry.version, hit=True)
            found.held[key.key] = entry
        else:
            found.misses.append(key)
    metrics.READS.labels("foreign").inc(len(found.foreign))
    return found


def stale_hits(hits: Sequence[CacheKey], held: Mapping[str, Entry],
               latest: Mapping[str, int | None], values: Mapping[str, Any]) -> list[CacheKey]:
    """The hits that Spanner's versions (``latest``, for templates with a version column) or
    values (``values``, for the others) show to be out of date."""
    stale = []
    for key in hits:
        entry = held[key.key]
        if key.template.version_column:
            commit = latest[key.key]
            gone = commit is None and entry.value() is not None
            if gone or (commit is not None and commit > entry.version):
                stale.append(key)
        elif entry.data != encode_value(values[key.key]):
            stale.append(key)
    return stale


def too_old(version: int, policy: FillPolicy) -> bool:
    """A snapshot this old may predate a tombstone that has already expired."""
    return policy.clock() - version > policy.max_snapshot_age_ns


# --- the flow ---------------------------------------------------------------------------


def get_many(keys: Sequence[CacheKey], verify: bool, leases: LeasePolicy,
             fills: FillPolicy) -> Flow:
    """One Redis round trip for all keys; one Spanner snapshot for the misses."""
    found = look_up(keys, (yield RawEntries([k.key for k in keys])), fills)
    misses = list(found.misses)
    if verify and found.held:
        hits = [k for k in keys if k.key in found.held]
        versioned = [k for k in hits if k.template.version_column]
        others = [k for k in hits if not k.template.version_column]
        latest = (yield ReadVersions(versioned))[0] if versioned else {}
        values = (yield ReadRows(others))[0] if others else {}
        stale = stale_hits(hits, found.held, latest, values)
        for key in stale:
            del found.reads[key.key]
        metrics.READS.labels("unconfirmed").inc(len(stale))
        misses += stale
    reads = found.reads
    if misses:
        reads.update((yield from _fill(misses, found.foreign, not verify, leases, fills)))
    metrics.READS.labels("hit").inc(len(keys) - len(misses))
    metrics.READS.labels("miss").inc(len(misses))
    return [reads[k.key] for k in keys]


def _fill(misses: list[CacheKey], foreign: set[str], wait: bool, leases: LeasePolicy,
          fills: FillPolicy) -> Flow:
    """Fill the keys whose lease this call takes. For the others, wait for the holder's
    value, or (``wait=False``, as verify needs: the holder may have read before a commit
    this caller must see) read Spanner straight away, without filling."""
    token = uuid.uuid4().hex
    owned = yield AcquireLeases([k.lease_key for k in misses], token, leases.ttl_ms)
    mine = [k for k, got in zip(misses, owned, strict=True) if got]
    theirs = [k for k, got in zip(misses, owned, strict=True) if not got]
    reads: dict[str, Read] = {}
    if mine:
        try:
            values, version = yield ReadRows(mine)
            written = yield from _write(mine, values, version, foreign, fills)
        finally:
            yield ReleaseLeases([k.lease_key for k in mine], token)
        for key in mine:
            reads[key.key] = Read(key.key, values[key.key], version, hit=False,
                                  filled=key.key in written)
    if theirs:
        reads.update((yield from _wait_for(theirs, leases, fills)) if wait
                     else (yield from _read_only(theirs)))
    return reads


def _write(keys: list[CacheKey], values: Mapping[str, Any], version: int, foreign: set[str],
           fills: FillPolicy) -> Flow:
    """Write a fill through the guard; the keys written. A key holding a foreign entry is
    written on its own, and a refusal there is no error: the caller still gets the value."""
    if too_old(version, fills):
        age = (fills.clock() - version) / NANOS
        log.warning("read-through: not filling %d key(s): snapshot is %.1fs old, over half the "
                    "tombstone TTL", len(keys), age)
        metrics.READS.labels("fill_too_old").inc(len(keys))
        return set()
    ops = [CacheOp.set(k.key, version, values[k.key]) for k in keys]
    plain = [op for op in ops if op.key not in foreign]
    odd = [op for op in ops if op.key in foreign]
    applied: list[Applied] = (yield Write(plain)) if plain else []
    if odd:
        answer = yield Write(odd, tolerant=True)
        applied += answer or []
    written = {a.op.key for a in applied if a.applied}
    metrics.READS.labels("fill_refused").inc(len(ops) - len(written))
    return written


def _wait_for(keys: list[CacheKey], leases: LeasePolicy, fills: FillPolicy) -> Flow:
    """Wait briefly for the lease holders' values; read the rest without filling."""
    reads: dict[str, Read] = {}
    pending = list(keys)
    deadline = time.monotonic() + leases.wait_ms / 1000
    while pending and time.monotonic() < deadline:
        yield Sleep(leases.poll_ms / 1000)
        raws = yield RawEntries([k.key for k in pending])
        waiting = []
        for key, fields in zip(pending, raws, strict=True):
            entry, _ = entry_of(fields, fills)
            if entry is not None and not entry.tombstone:
                reads[key.key] = Read(key.key, entry.value(), entry.version, hit=True)
            else:
                waiting.append(key)
        pending = waiting
    metrics.READS.labels("lease_wait").inc(len(keys))
    if pending:
        reads.update((yield from _read_only(pending)))
    return reads


def _read_only(keys: list[CacheKey]) -> Flow:
    values, version = yield ReadRows(keys)
    return {k.key: Read(k.key, values[k.key], version, hit=False) for k in keys}
