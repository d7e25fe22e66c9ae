"""Backfill: walk a table (or a key range of it) in Spanner and rewarm every key it feeds.

For a cold cache or after a Redis flush. Writes go through the guard at each batch's read
timestamp, so a backfill racing live invalidations never lowers a version.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from redis_spanner.consumers.core import CacheWriter, RowReader
from redis_spanner.schemas.cache import CacheOp
from redis_spanner.schemas.errors import KeyRefused
from redis_spanner.schemas.keys import CacheKey, Catalog


class Walker(Protocol):
    def walk(self, table: str, prefix: str | None = None, batch: int = 200
             ) -> Iterator[list[tuple[Any, ...]]]: ...


@dataclass
class BackfillReport:
    rows: int = 0
    keys: int = 0
    written: int = 0
    superseded: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "keys": self.keys, "written": self.written,
                "superseded": self.superseded, "seconds": round(self.seconds, 3)}


def backfill(
    walker: Walker,
    rows: RowReader,
    cache: CacheWriter,
    catalog: Catalog,
    table: str,
    *,
    prefix: str | None = None,
    rate: float | None = None,
    batch: int = 200,
    on_rows: Callable[[int], None] | None = None,
) -> BackfillReport:
    """Rewarm the keys of ``table``'s rows, at most ``rate`` rows per second."""
    if table not in catalog.tables:
        raise KeyRefused(f"table {table!r} feeds no declared key template")
    report = BackfillReport()
    start = time.monotonic()
    for chunk in walker.walk(table, prefix, batch):
        keys = _unique(k for row in chunk for k in catalog.keys_for_row(table, row))
        values, version = rows.read(keys)
        results = cache.apply([CacheOp.set(k.key, version, values[k.key]) for k in keys])
        report.rows += len(chunk)
        report.keys += len(keys)
        report.written += sum(1 for r in results if r.applied)
        report.superseded += sum(1 for r in results if not r.applied)
        if on_rows:
            on_rows(len(chunk))
        if rate:
            ahead = report.rows / rate - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)
    report.seconds = time.monotonic() - start
    return report


def _unique(keys: Iterable[CacheKey]) -> list[CacheKey]:
    return list({k.key: k for k in keys}.values())
