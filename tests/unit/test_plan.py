"""Coalescing folds a batch's targets to one write per key at the newest version."""

from __future__ import annotations

from redis_spanner.consumers.plan import coalesce
from redis_spanner.schemas.catalog import DEMO
from redis_spanner.schemas.keys import Action, Catalog, KeyTarget

CATALOG = Catalog("rsc", DEMO)
ACCOUNT = CATALOG.template("account")


def target(part: str, version: int, action: Action = Action.INVALIDATE) -> KeyTarget:
    return KeyTarget(CATALOG.key(ACCOUNT, [part]), action, version)


def test_newest_version_per_key_wins_whatever_the_order() -> None:
    """Out-of-order and duplicate targets collapse to the newest, and are counted."""
    plan = coalesce([target("a", 5), target("a", 9), target("a", 7), target("a", 9),
                     target("b", 1)])
    assert {k: p.version for k, p in plan.keys.items()} == {
        "rsc:account:{Accounts:a}": 9, "rsc:account:{Accounts:b}": 1,
    }
    assert plan.coalesced == 3


def test_rewarm_wins_a_tie() -> None:
    """At equal versions a rewarm replaces an invalidation (its snapshot covers it)."""
    plan = coalesce([target("a", 5), target("a", 5, Action.REWARM)])
    assert plan.by_action(Action.REWARM)[0].version == 5
    assert not plan.by_action(Action.INVALIDATE)
