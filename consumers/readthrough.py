"""Read-through cache client for services: Redis first, Spanner on a miss, guarded fill.

A fill carries its snapshot's read timestamp as version and goes through the same guard as the
consumer's writes, so a fill older than a tombstone (a reader that read before a commit whose
invalidation already landed) is refused and cannot bring the stale value back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from consumers.core import CacheWriter, RowReader
from schemas.cache import CacheOp, Entry
from schemas.keys import CacheKey, Catalog


class CacheReader(CacheWriter, Protocol):
    def get(self, keys: Sequence[str]) -> list[Entry | None]: ...


@dataclass(frozen=True, slots=True)
class Read:
    key: str
    value: Any
    version: int
    hit: bool
    """True when Redis served the value; False when it came from Spanner."""
    filled: bool = False
    """True when this read's Spanner value was written to Redis."""


class ReadThrough:
    def __init__(self, catalog: Catalog, cache: CacheReader, rows: RowReader) -> None:
        self._catalog = catalog
        self._cache = cache
        self._rows = rows

    def key(self, template: str, *parts: object) -> CacheKey:
        return self._catalog.key(self._catalog.template(template), parts)

    def get(self, template: str, *parts: object) -> Any:
        return self.get_many([self.key(template, *parts)])[0].value

    def get_many(self, keys: Sequence[CacheKey]) -> list[Read]:
        """One Redis round trip for all keys; one Spanner snapshot for all misses."""
        entries = self._cache.get([k.key for k in keys])
        reads: dict[str, Read] = {}
        misses: list[CacheKey] = []
        for key, entry in zip(keys, entries, strict=True):
            if entry is not None and not entry.tombstone:
                reads[key.key] = Read(key.key, entry.value(), entry.version, hit=True)
            else:
                misses.append(key)
        if misses:
            values, version = self._rows.read(misses)
            applied = self._cache.apply(
                [CacheOp.set(k.key, version, values[k.key]) for k in misses]
            )
            for key, result in zip(misses, applied, strict=True):
                reads[key.key] = Read(key.key, values[key.key], version, hit=False,
                                      filled=result.applied)
        return [reads[k.key] for k in keys]
