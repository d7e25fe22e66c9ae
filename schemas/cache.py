"""The layout of a cache entry in Redis and the compare-and-set guard that writes it.

An entry is a hash at its key (see ``redis_spanner.schemas.keys``):

    v  version, 20-digit nanoseconds (``redis_spanner.schemas.versions.encode``)
    s  "v" for a value, "t" for a tombstone left by an invalidation
    d  the value as JSON (values only)

Every write goes through ``GUARD``: it applies only when its version is strictly newer than the
entry's, so a duplicate or older event, or a fill from an older snapshot, is a no-op. Values
live at most ``cache_ttl``; tombstones ``tombstone_ttl``, which must exceed the slowest fill.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
from dataclasses import dataclass
from typing import Any

from redis_spanner.schemas import versions

FIELD_VERSION = "v"
FIELD_STATE = "s"
FIELD_DATA = "d"
STATE_VALUE = "v"
STATE_TOMBSTONE = "t"

OP_INVALIDATE = "inv"
OP_SET = "set"

# KEYS[1] entry; ARGV: op, version (fixed width), data, ttl in ms.
# Returns {applied (1|0), version held before the call or ""}.
GUARD = """
local cur = redis.call('HGET', KEYS[1], 'v')
if cur and cur >= ARGV[2] then
  return {0, cur}
end
redis.call('DEL', KEYS[1])
if ARGV[1] == 'inv' then
  redis.call('HSET', KEYS[1], 'v', ARGV[2], 's', 't')
else
  redis.call('HSET', KEYS[1], 'v', ARGV[2], 's', 'v', 'd', ARGV[3])
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {1, cur or ''}
"""

# KEYS[1] a fill lease; ARGV[1] the holder's token. Deletes the lease only if still held.
LEASE_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

DEFAULT_CACHE_TTL_SECONDS = 24 * 3600
DEFAULT_TOMBSTONE_TTL_SECONDS = 600


@dataclass(frozen=True, slots=True)
class Entry:
    """What Redis holds for one key."""

    version: int
    tombstone: bool
    data: str | None

    def value(self) -> Any:
        return None if self.data is None else json.loads(self.data)


def parse_entry(fields: dict[str, str]) -> Entry | None:
    if not fields or FIELD_VERSION not in fields:
        return None
    return Entry(
        version=int(fields[FIELD_VERSION]),
        tombstone=fields.get(FIELD_STATE) == STATE_TOMBSTONE,
        data=fields.get(FIELD_DATA),
    )


def encode_value(value: Any) -> str:
    """JSON for a value read from Spanner (rows as objects, derived values as lists)."""
    return json.dumps(value, default=_json_default, separators=(",", ":"), sort_keys=True)


def _json_default(obj: object) -> object:
    if isinstance(obj, dt.datetime):
        return versions.to_rfc3339(versions.from_datetime(obj))
    if isinstance(obj, dt.date):
        return obj.isoformat()
    if isinstance(obj, bytes):
        return base64.b64encode(obj).decode()
    if isinstance(obj, decimal.Decimal):
        return str(obj)
    raise TypeError(f"cannot cache a value of type {type(obj).__name__}")


@dataclass(frozen=True, slots=True)
class CacheOp:
    """One guarded write: tombstone (``OP_INVALIDATE``) or value (``OP_SET``) at ``version``."""

    key: str
    op: str
    version: int
    data: str | None = None

    @classmethod
    def invalidate(cls, key: str, version: int) -> CacheOp:
        return cls(key, OP_INVALIDATE, version)

    @classmethod
    def set(cls, key: str, version: int, value: Any) -> CacheOp:
        return cls(key, OP_SET, version, encode_value(value))


@dataclass(frozen=True, slots=True)
class Applied:
    """The guard's answer for one op: whether it wrote, and the version it found."""

    op: CacheOp
    applied: bool
    previous: int | None
