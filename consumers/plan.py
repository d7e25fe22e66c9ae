"""Turn a batch of events into the fewest cache writes: one per key, at the newest version."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from redis_spanner.schemas.keys import Action, CacheKey, KeyTarget


@dataclass(frozen=True, slots=True)
class KeyPlan:
    cache_key: CacheKey
    action: Action
    version: int


@dataclass(frozen=True, slots=True)
class Plan:
    keys: dict[str, KeyPlan]
    coalesced: int
    """Targets folded into another one for the same key."""

    def by_action(self, action: Action) -> list[KeyPlan]:
        return [k for k in self.keys.values() if k.action is action]


def coalesce(targets: Iterable[KeyTarget]) -> Plan:
    """Keep the newest version per key. At equal versions a rewarm wins: it also replaces the
    value, and its snapshot is read at or after that version."""
    keys: dict[str, KeyPlan] = {}
    seen = 0
    for target in targets:
        seen += 1
        key = target.cache_key.key
        current = keys.get(key)
        candidate = KeyPlan(target.cache_key, target.action, target.version)
        if current is None or _newer(candidate, current):
            keys[key] = candidate
    return Plan(keys, seen - len(keys))


def _newer(a: KeyPlan, b: KeyPlan) -> bool:
    if a.version != b.version:
        return a.version > b.version
    return a.action is Action.REWARM and b.action is not Action.REWARM
