"""The read-through's decisions, shared by both clients: which Redis entries are the guard's,
when a fill is too old to write, and which hits verify finds stale."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis_spanner.consumers.read_flow import NANOS, FillPolicy, entry_of, stale_hits, too_old
from redis_spanner.schemas import versions
from redis_spanner.schemas.cache import Entry, encode_value
from redis_spanner.schemas.catalog import DEMO
from redis_spanner.schemas.keys import Catalog

NOW = 1_800_000_000 * NANOS
POLICY = FillPolicy(max_snapshot_age_ns=300 * NANOS, future_skew_ns=60 * NANOS,
                    clock=lambda: NOW)
V = versions.encode(NOW - NANOS)
CATALOG = Catalog("rsc", DEMO)


def test_the_guards_own_entries_are_read_as_written() -> None:
    """A value and a tombstone as the guard writes them parse to their entry."""
    assert entry_of({"v": V, "s": "v", "d": '{"a":1}'}, POLICY) == (
        Entry(NOW - NANOS, False, '{"a":1}'), None)
    assert entry_of({"v": V, "s": "t"}, POLICY) == (Entry(NOW - NANOS, True, None), None)
    assert entry_of({}, POLICY) == (None, None)


@pytest.mark.parametrize(("fields", "why"), [
    ({"type": "string"}, "unversioned"),
    ({"d": "{}"}, "unversioned"),
    ({"v": "abc", "s": "v", "d": "{}"}, "bad-version"),
    ({"v": "12", "s": "v", "d": "{}"}, "bad-version"),
    ({"v": "-" + V[1:], "s": "v", "d": "{}"}, "bad-version"),
    ({"v": "\uff11" * 20, "s": "v", "d": "{}"}, "bad-version"),  # full-width digits
    ({"v": versions.encode(NOW + 61 * NANOS), "s": "v", "d": "{}"}, "future-version"),
    ({"v": V, "s": "x", "d": "{}"}, "bad-state"),
    ({"v": V, "d": "{}"}, "bad-state"),
    ({"v": V, "s": "v"}, "bad-state"),
    ({"v": V, "s": "v", "d": "{nope"}, "malformed-value"),
])
def test_anything_else_is_a_foreign_entry_with_its_reason(fields: dict[str, str],
                                                          why: str) -> None:
    """Each way an entry can differ from the guard's layout is named, and none is served."""
    assert entry_of(fields, POLICY) == (None, why)


@given(st.dictionaries(st.sampled_from(["v", "s", "d", "x"]), st.text(max_size=30)))
def test_no_hash_content_makes_the_decision_raise(fields: dict[str, str]) -> None:
    """Whatever a hash holds, deciding on it never raises."""
    entry, why = entry_of(fields, POLICY)
    assert (entry is None) or (why is None)


def test_a_fill_is_too_old_past_half_the_tombstone_ttl() -> None:
    """The bound is half the tombstone TTL, measured from the snapshot's read timestamp."""
    policy = FillPolicy.for_tombstone_ttl(10)
    clocked = FillPolicy(policy.max_snapshot_age_ns, clock=lambda: NOW)
    assert not too_old(NOW - 5 * NANOS, clocked)
    assert too_old(NOW - 5 * NANOS - 1, clocked)
    assert not too_old(NOW + NANOS, clocked)


def test_verify_finds_stale_hits_by_version_or_by_value() -> None:
    """A versioned row is stale once its commit is newer or the row is gone; a template without
    a version column is stale when Spanner's value differs."""
    account = [CATALOG.key(CATALOG.template("account"), [n]) for n in ("a", "b", "c")]
    team = CATALOG.key(CATALOG.template("team"), [7])
    held = {account[0].key: Entry(10, False, encode_value({"B": 1})),
            account[1].key: Entry(10, False, encode_value({"B": 1})),
            account[2].key: Entry(10, False, encode_value({"B": 1})),
            team.key: Entry(10, False, encode_value({"Name": "x"}))}
    latest = {account[0].key: 10, account[1].key: 11, account[2].key: None}
    stale = stale_hits([*account, team], held, latest, {team.key: {"Name": "y"}})
    assert [k.key for k in stale] == [account[1].key, account[2].key, team.key]
    assert stale_hits([team], held, {}, {team.key: {"Name": "x"}}) == []
