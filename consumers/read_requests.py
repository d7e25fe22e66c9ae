"""The I/O a read-through asks its driver for (``redis_spanner.consumers.read_flow``): each
request names one call on the cache or the row reader; the driver answers with its result."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from redis_spanner.schemas.cache import CacheOp
from redis_spanner.schemas.keys import CacheKey


@dataclass(frozen=True, slots=True)
class RawEntries:
    """The hash fields at each key (``LeasingCache.raw``)."""

    keys: list[str]


@dataclass(frozen=True, slots=True)
class ReadRows:
    """The values of ``keys`` and the snapshot's version (``RowReader.read``)."""

    keys: list[CacheKey]


@dataclass(frozen=True, slots=True)
class ReadVersions:
    """Each key's last commit timestamp (``VersionReader.read_versions``)."""

    keys: list[CacheKey]


@dataclass(frozen=True, slots=True)
class AcquireLeases:
    lease_keys: list[str]
    token: str
    ttl_ms: int


@dataclass(frozen=True, slots=True)
class ReleaseLeases:
    lease_keys: list[str]
    token: str


@dataclass(frozen=True, slots=True)
class Write:
    """Guarded writes (``CacheWriter.apply``). With ``tolerant``, a failure answers ``None``
    instead of raising: used for keys that hold an entry the guard did not write."""

    ops: list[CacheOp]
    tolerant: bool = False


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


Request = RawEntries | ReadRows | ReadVersions | AcquireLeases | ReleaseLeases | Write | Sleep
Flow = Generator[Request, Any, Any]
