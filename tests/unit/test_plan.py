"""Coalescing folds a batch's targets to one write per key at the newest version."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
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


targets = st.lists(
    st.builds(target, st.sampled_from("abc"), st.integers(1, 5), st.sampled_from(Action)),
    min_size=1, max_size=20,
)
"""Targets over a few keys and versions, so duplicates and ties are frequent."""


@settings(max_examples=300, deadline=None)
@given(data=st.data(), batch=targets)
def test_any_order_and_duplication_gives_the_same_plan(
    data: st.DataObject, batch: list[KeyTarget]
) -> None:
    """Whatever the order and however often a target repeats, each key is planned once, at
    its newest version, as a rewarm if any target at that version asks for one; and every
    other target of the key counts as coalesced."""
    replayed = batch + data.draw(st.lists(st.sampled_from(batch), max_size=10))
    order = data.draw(st.permutations(replayed), label="order")
    plan = coalesce(order)
    expected: dict[str, tuple[int, Action]] = {}
    for key in {t.cache_key.key for t in batch}:
        mine = [t for t in batch if t.cache_key.key == key]
        newest = max(t.version for t in mine)
        rewarm = any(t.action is Action.REWARM for t in mine if t.version == newest)
        expected[key] = (newest, Action.REWARM if rewarm else Action.INVALIDATE)
    assert {k: (p.version, p.action) for k, p in plan.keys.items()} == expected
    assert all(p.cache_key.key == k for k, p in plan.keys.items())
    assert plan.coalesced == len(order) - len(expected)
    assert plan == coalesce(sorted(order, key=lambda t: (t.cache_key.key, t.version)))


def test_an_older_target_seen_last_does_not_replace_a_newer_one() -> None:
    """The newest version is kept, not the last one seen: an invalidation delivered late
    cannot pull the planned version back."""
    plan = coalesce([target("a", 9), target("a", 3)])
    assert [p.version for p in plan.keys.values()] == [9]
    plan = coalesce([target("a", 9, Action.REWARM), target("a", 9)])
    assert plan.by_action(Action.REWARM)[0].version == 9
