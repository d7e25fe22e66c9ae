"""Thread-safe counts of what the demo's writers, relay, consumer and readers did."""

from __future__ import annotations

import statistics
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from redis_spanner.consumers.messages import Outcome


class Published(Protocol):
    """An outbox row or a change-stream event: both carry the event id."""

    @property
    def event_id(self) -> str: ...


@dataclass
class Tally:
    committed: set[str] = field(default_factory=set)
    published: set[str] = field(default_factory=set)
    applied: set[str] = field(default_factory=set)
    dead_lettered: Counter[str] = field(default_factory=Counter)
    dead_lettered_ids: set[str] = field(default_factory=set)
    lags: list[float] = field(default_factory=list)
    reads: int = 0
    hits: int = 0
    stale_reads: int = 0
    checked_reads: int = 0
    write_errors: int = 0
    checked_by_group: Counter[str] = field(default_factory=Counter)
    stale_by_group: Counter[str] = field(default_factory=Counter)
    """Checked and stale reads by the key's writers (``fast_path`` or ``outbox_only``), when the
    demo splits its keys between them."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def on_commit(self, event_id: str) -> None:
        with self._lock:
            self.committed.add(event_id)

    def on_published(self, rows: Sequence[Published]) -> None:
        with self._lock:
            self.published.update(r.event_id for r in rows)

    def on_outcomes(self, outcomes: list[Outcome]) -> None:
        now = time.time()
        with self._lock:
            for outcome in outcomes:
                message = outcome.message
                if outcome.dead_letter_reason:
                    event_id = message.attributes.get("event_id", message.message_id)
                    if event_id not in self.dead_lettered_ids:
                        self.dead_lettered_ids.add(event_id)
                        self.dead_lettered[outcome.dead_letter_reason] += 1
                elif (
                    outcome.event
                    and outcome.disposition == "ack"
                    and outcome.event.event_id not in self.applied
                ):
                    self.applied.add(outcome.event.event_id)
                    self.lags.append(now - outcome.event.version / 1e9)

    def on_read(self, hit: bool, checked: bool = False, stale: bool = False,
                group: str | None = None) -> None:
        with self._lock:
            self.reads += 1
            self.hits += hit
            self.checked_reads += checked
            self.stale_reads += stale
            if group is not None:
                self.checked_by_group[group] += checked
                self.stale_by_group[group] += stale

    def stale_by(self) -> dict[str, dict[str, float | int | None]]:
        """Per group: stale reads, checked reads and their ratio."""
        with self._lock:
            groups = sorted(self.checked_by_group)
            return {g: {"stale_reads": self.stale_by_group[g],
                        "checked_reads": self.checked_by_group[g],
                        "stale_ratio": (round(self.stale_by_group[g] / self.checked_by_group[g], 4)
                                        if self.checked_by_group[g] else None)}
                    for g in groups}

    def unaccounted(self) -> set[str]:
        with self._lock:
            return self.committed - self.applied - self.dead_lettered_ids

    def lag_ms(self) -> dict[str, float | None]:
        with self._lock:
            lags = sorted(self.lags)
        if not lags:
            return {"p50": None, "p99": None, "max": None}
        return {
            "p50": round(statistics.median(lags) * 1000, 1),
            "p99": round(_percentile(lags, 0.99) * 1000, 1),
            "max": round(lags[-1] * 1000, 1),
        }


def _percentile(ordered: list[float], q: float) -> float:
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]
