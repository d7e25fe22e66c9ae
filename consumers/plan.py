"""Turn a batch of events into the fewest cache writes: one per key, at the newest version."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from redis_spanner.schemas.keys import Action, KeyTarget


@dataclass(frozen=True, slots=True)
class Plan:
    keys: dict[str, KeyTarget]
    """The write each key gets: the newest of the batch's targets for it."""
    coalesced: int
    """Targets folded into another one for the same key."""

    def by_action(self, action: Action) -> list[KeyTarget]:
        return [k for k in self.keys.values() if k.action is action]


def coalesce(targets: Iterable[KeyTarget]) -> Plan:
    """Keep the newest version per key. At equal versions a rewarm wins: it also replaces the
    value, and its snapshot is read at or after that version."""
    keys: dict[str, KeyTarget] = {}
    seen = 0
    for target in targets:
        seen += 1
        key = target.cache_key.key
        current = keys.get(key)
        if current is None or _newer(target, current):
            keys[key] = target
    return Plan(keys, seen - len(keys))


def _newer(a: KeyTarget, b: KeyTarget) -> bool:
    if a.version != b.version:
        return a.version > b.version
    return a.action is Action.REWARM and b.action is not Action.REWARM
