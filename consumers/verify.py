"""Compare cache entries with Spanner at one read timestamp (the coherence oracle)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from consumers.core import RowReader
from consumers.readthrough import CacheReader
from schemas.cache import encode_value
from schemas.keys import CacheKey


class Verdict(StrEnum):
    FRESH = "fresh"
    STALE = "stale"
    TOMBSTONE = "tombstone"
    GONE = "gone"


@dataclass(frozen=True, slots=True)
class Checked:
    key: str
    verdict: Verdict
    cached_version: int | None
    read_version: int


def compare(keys: Sequence[CacheKey], cache: CacheReader, rows: RowReader) -> list[Checked]:
    """Read the entries first, then Spanner: a value that differs from the later snapshot is
    stale only if the snapshot holds no newer commit than the entry could have seen, which the
    caller guarantees by comparing after quiescence."""
    if not keys:
        return []
    entries = cache.get([k.key for k in keys])
    values, read_version = rows.read(keys)
    out: list[Checked] = []
    for key, entry in zip(keys, entries, strict=True):
        if entry is None:
            verdict = Verdict.GONE
        elif entry.tombstone:
            verdict = Verdict.TOMBSTONE
        elif entry.data == encode_value(values[key.key]):
            verdict = Verdict.FRESH
        else:
            verdict = Verdict.STALE
        out.append(Checked(key.key, verdict, entry.version if entry else None, read_version))
    return out
