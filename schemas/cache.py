"""The layout of a cache entry in Redis and the compare-and-set guard that writes it.

An entry is a hash at its key (see ``redis_spanner.schemas.keys``):

    v  version, 20-digit nanoseconds (``redis_spanner.schemas.versions.encode``)
    s  "v" for a value, "t" for a tombstone left by an invalidation
    d  the value as JSON (values only)

Every write goes through ``GUARD``: it applies only when its version is strictly newer than the
entry's, so a duplicate or older event, or a fill from an older snapshot, is a no-op. Values
live at most ``cache_ttl``; tombstones ``tombstone_ttl``, which must exceed the slowest fill.

A key of the namespace may hold something the guard did not write (an outside client, an older
release). Such a **foreign** entry is one of the ``FOREIGN_*`` kinds; the guard overwrites it
like an empty key and says which kind it found, and readers treat it as a miss. A version
further ahead than the allowed skew (``versions.ceiling``) is foreign too: honouring it would
refuse every genuine write to the key.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from redis_spanner.schemas import values, versions

FIELD_VERSION = "v"
FIELD_STATE = "s"
FIELD_DATA = "d"
STATE_VALUE = "v"
STATE_TOMBSTONE = "t"

OP_INVALIDATE = "inv"
OP_SET = "set"

FOREIGN_TYPE = "wrong-type"
"""Another Redis type (string, list, set, zset, stream...) at the key."""
FOREIGN_UNVERSIONED = "unversioned"
"""A hash without a version field."""
FOREIGN_BAD_VERSION = "bad-version"
"""A version field that is not a 20-digit number."""
FOREIGN_FUTURE = "future-version"
"""A version further ahead of the clock than the allowed skew."""
FOREIGN_BAD_STATE = "bad-state"
"""A versioned hash whose state is neither a tombstone nor a value with its data."""
FOREIGN_KINDS = (FOREIGN_TYPE, FOREIGN_UNVERSIONED, FOREIGN_BAD_VERSION, FOREIGN_FUTURE,
                 FOREIGN_BAD_STATE)

# KEYS[1] entry; ARGV: op, version (fixed width), data, ttl in ms, ceiling (fixed width).
# Returns {applied (1|0), version held before the call or "", foreign kind overwritten or ""}.
# Never raises for what the key holds: a foreign entry is overwritten like an empty key.
GUARD = """
local cur = false
local foreign = ''
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind == 'hash' then
  local held = redis.call('HMGET', KEYS[1], 'v', 's')
  cur = held[1]
  if not cur then
    foreign = 'unversioned'
  elseif string.len(cur) ~= 20 or string.find(cur, '%D') then
    foreign = 'bad-version'
  elseif cur > ARGV[5] then
    foreign = 'future-version'
  elseif not (held[2] == 't' or (held[2] == 'v' and redis.call('HEXISTS', KEYS[1], 'd') == 1))
  then
    foreign = 'bad-state'
  end
elseif kind ~= 'none' then
  foreign = 'wrong-type'
end
if foreign ~= '' then
  cur = false
elseif cur and cur >= ARGV[2] then
  return {0, cur, ''}
end
redis.call('DEL', KEYS[1])
if ARGV[1] == 'inv' then
  redis.call('HSET', KEYS[1], 'v', ARGV[2], 's', 't')
else
  redis.call('HSET', KEYS[1], 'v', ARGV[2], 's', 'v', 'd', ARGV[3])
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {1, cur or '', foreign}
"""

# KEYS[1] a fill lease; ARGV[1] the holder's token. Deletes the lease only if still held.
LEASE_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


@functools.cache
def batched(script: str, width: int) -> str:
    """``script``, written for one key (``KEYS[1]``, ``ARGV[1..width]``), run for every key of
    a single call: key ``i`` takes ``ARGV[(i-1)*width+1 .. i*width]``, and the call returns
    the list of the single-key replies in key order. One call of this form costs Redis and the
    client far less than one call per key; on a single server its keys may hash anywhere (Redis
    Cluster would refuse them unless they share a slot)."""
    body = re.sub(r"ARGV\[(\d+)\]", r"ARGV[b + \1]", script.replace("KEYS[1]", "KEYS[i]"))
    return (f"local function one(i, b)\n{body.strip(chr(10))}\nend\n"
            "local out = {}\n"
            f"for i = 1, #KEYS do\n  out[i] = one(i, (i - 1) * {width})\nend\n"
            "return out\n")


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


def foreign_kind(fields: Mapping[str, str] | str, ceiling: int) -> str | None:
    """Which ``FOREIGN_*`` kind an entry is, or None for one the guard wrote (or an empty key).
    ``fields`` is the key's hash, or the name of its Redis type when it is not a hash; the
    same rules as ``GUARD``."""
    if isinstance(fields, str):
        return None if fields == "none" else FOREIGN_TYPE
    if not fields:
        return None
    version = fields.get(FIELD_VERSION)
    if version is None:
        return FOREIGN_UNVERSIONED
    if len(version) != versions.VERSION_WIDTH or not version.isascii() or not version.isdigit():
        return FOREIGN_BAD_VERSION
    if int(version) > ceiling:
        return FOREIGN_FUTURE
    state = fields.get(FIELD_STATE)
    if state == STATE_TOMBSTONE or (state == STATE_VALUE and FIELD_DATA in fields):
        return None
    return FOREIGN_BAD_STATE


def parse_entry(fields: Mapping[str, str] | str, ceiling: int | None = None) -> Entry | None:
    """The entry the guard wrote, or None for an empty key or a foreign entry (a miss).
    ``ceiling`` defaults to this clock plus the default skew."""
    if ceiling is None:
        ceiling = versions.ceiling(versions.DEFAULT_MAX_SKEW_SECONDS)
    if isinstance(fields, str) or not fields or foreign_kind(fields, ceiling) is not None:
        return None
    return Entry(
        version=int(fields[FIELD_VERSION]),
        tombstone=fields.get(FIELD_STATE) == STATE_TOMBSTONE,
        data=fields.get(FIELD_DATA),
    )


def encode_value(value: Any) -> str:
    """The cached form of a value read from Spanner (see ``redis_spanner.schemas.values``)."""
    return values.encode(value)


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
    foreign: str | None = None
    """The ``FOREIGN_*`` kind the write replaced, if the key held a foreign entry."""
