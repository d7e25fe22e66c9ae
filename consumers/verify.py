"""Compare cache entries with Spanner at one read timestamp: the coherence oracle.

An entry is **stale** when it holds a value, its version is older than the snapshot, and the
value differs from the snapshot's: the cached JSON is decoded and checked against the typed
Spanner value by ``consumers.value_check``, which shares no code with the encoder that wrote it.
Entries written after the snapshot can't be judged and count as fresh. **Orphaned** keys sit in
the namespace but match no declared template; **foreign** ones hold what the guard did not
write (``redis_spanner.schemas.cache.FOREIGN_KINDS``). ``repair`` rewrites stale and foreign
entries with the snapshot's value through the same guard (never lowering a version; a value
with no cached form becomes a tombstone) and deletes orphaned keys; what is still stale or
foreign afterwards is reported as remaining.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from redis_spanner.consumers.core import RowReader
from redis_spanner.consumers.value_check import cached_matches
from redis_spanner.schemas.cache import CacheOp, Entry, foreign_kind, parse_entry
from redis_spanner.schemas.errors import KeyRefused, UncacheableValue
from redis_spanner.schemas.keys import LEASE_SUFFIX, CacheKey, Catalog, is_internal


class Verdict(StrEnum):
    FRESH = "fresh"
    STALE = "stale"
    TOMBSTONE = "tombstone"
    NEWER = "newer"
    """Written after the snapshot: nothing to compare with."""
    GONE = "gone"
    """Expired or deleted between the scan and the read."""


class InspectableCache(Protocol):
    def scan(self, pattern: str, count: int = ...) -> Iterable[str]: ...
    def raw(self, keys: Sequence[str]) -> list[dict[str, str] | str]: ...
    def ceiling(self) -> int: ...
    def get(self, keys: Sequence[str]) -> list[Entry | None]: ...
    def apply(self, ops: Sequence[CacheOp]) -> list[Any]: ...
    def delete(self, keys: Sequence[str]) -> int: ...


@dataclass(frozen=True, slots=True)
class Checked:
    key: str
    verdict: Verdict
    cached_version: int | None
    read_version: int


@dataclass
class VerifyReport:
    checked: int = 0
    verdicts: Counter[str] = field(default_factory=Counter)
    stale: list[str] = field(default_factory=list)
    orphaned: list[str] = field(default_factory=list)
    foreign: dict[str, str] = field(default_factory=dict)
    """Foreign entries: key -> kind (``redis_spanner.schemas.cache.FOREIGN_KINDS``)."""
    repaired: int = 0
    deleted: int = 0
    remaining_stale: list[str] = field(default_factory=list)
    remaining_foreign: list[str] = field(default_factory=list)
    read_version: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "fresh": self.verdicts[Verdict.FRESH] + self.verdicts[Verdict.NEWER],
            "tombstones": self.verdicts[Verdict.TOMBSTONE],
            "stale": len(self.stale),
            "orphaned": len(self.orphaned),
            "foreign": len(self.foreign),
            "foreign_kinds": dict(Counter(self.foreign.values())),
            "repaired": self.repaired,
            "deleted": self.deleted,
            "stale_remaining": len(self.remaining_stale),
            "foreign_remaining": len(self.remaining_foreign),
            "read_version": self.read_version,
            "stale_keys": self.stale[:100],
            "foreign_keys": dict(list(self.foreign.items())[:100]),
        }


def compare(
    keys: Sequence[CacheKey],
    cache: Any,
    rows: RowReader,
    entries: Sequence[Entry | None] | None = None,
) -> list[Checked]:
    """Read the entries (unless the caller already did), then Spanner in one snapshot, and
    judge each entry."""
    if not keys:
        return []
    if entries is None:
        entries = cache.get([k.key for k in keys])
    values, read_version = rows.read(keys)
    return [
        Checked(key.key, _judge(entry, values[key.key], read_version),
                entry.version if entry else None, read_version)
        for key, entry in zip(keys, entries, strict=True)
    ]


def _judge(entry: Entry | None, value: Any, read_version: int) -> Verdict:
    if entry is None:
        return Verdict.GONE
    if entry.tombstone:
        return Verdict.TOMBSTONE
    if entry.version >= read_version:
        return Verdict.NEWER
    return Verdict.FRESH if cached_matches(entry.data, value) else Verdict.STALE


def verify(
    cache: InspectableCache,
    catalog: Catalog,
    rows: RowReader,
    *,
    sample: int | None = None,
    repair: bool = False,
    rng: random.Random | None = None,
) -> VerifyReport:
    report = VerifyReport()
    keys, report.orphaned = _scan(cache, catalog, sample, rng or random.Random())
    raw = cache.raw([k.key for k in keys])
    ceiling = cache.ceiling()
    versioned: list[CacheKey] = []
    entries: list[Entry | None] = []
    foreign: list[CacheKey] = []
    for key, fields in zip(keys, raw, strict=True):
        if (kind := foreign_kind(fields, ceiling)) is not None:
            report.foreign[key.key] = kind
            foreign.append(key)
        elif (entry := parse_entry(fields, ceiling)) is not None:
            versioned.append(key)
            entries.append(entry)
    checked = compare(versioned, cache, rows, entries)
    report.checked = len(keys) + len(report.orphaned)
    report.verdicts.update(c.verdict for c in checked)
    report.stale = [c.key for c in checked if c.verdict is Verdict.STALE]
    report.read_version = checked[0].read_version if checked else None
    report.remaining_stale = list(report.stale)
    report.remaining_foreign = list(report.foreign)
    if repair:
        stale = set(report.stale)
        _repair(cache, rows, report, [k for k in versioned if k.key in stale], foreign)
    return report


def _scan(
    cache: InspectableCache, catalog: Catalog, sample: int | None, rng: random.Random
) -> tuple[list[CacheKey], list[str]]:
    """The namespace's keys (a uniform sample of them if asked), parsed, and the orphans."""
    chosen: list[str] = []
    seen = 0
    for key in cache.scan(f"{catalog.namespace}:*"):
        if key.endswith(LEASE_SUFFIX) or is_internal(key, catalog.namespace):
            continue
        seen += 1
        if sample is None or len(chosen) < sample:
            chosen.append(key)
        elif (slot := rng.randrange(seen)) < sample:  # reservoir sampling
            chosen[slot] = key
    keys: list[CacheKey] = []
    orphaned: list[str] = []
    for key in chosen:
        try:
            keys.append(catalog.parse(key))
        except KeyRefused:
            orphaned.append(key)
    return keys, orphaned


def _repair(
    cache: InspectableCache,
    rows: RowReader,
    report: VerifyReport,
    stale: list[CacheKey],
    foreign: list[CacheKey],
) -> None:
    """Stale and foreign entries get the snapshot's value through the guard, which overwrites
    a foreign entry and never lowers a version; orphaned keys are deleted."""
    wrong = [*stale, *foreign]
    if wrong:
        values, version = rows.read(wrong)
        results = cache.apply([_fresh(k.key, version, values[k.key]) for k in wrong])
        report.repaired = sum(1 for r in results if r.applied)
        recheck = compare(stale, cache, rows)
        report.remaining_stale = [c.key for c in recheck if c.verdict is Verdict.STALE]
        ceiling = cache.ceiling()
        report.remaining_foreign = [
            k.key for k, fields in zip(foreign, cache.raw([k.key for k in foreign]), strict=True)
            if foreign_kind(fields, ceiling) is not None
        ]
    report.deleted = cache.delete(report.orphaned)


def _fresh(key: str, version: int, value: Any) -> CacheOp:
    try:
        return CacheOp.set(key, version, value)
    except UncacheableValue:
        return CacheOp.invalidate(key, version)
