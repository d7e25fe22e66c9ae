"""Key templates build keys only from declared prefixes and validated primary-key parts;
an event can never address a key outside its namespace."""

from __future__ import annotations

import pytest
from redis_spanner.schemas.catalog import DEMO
from redis_spanner.schemas.envelope import Event
from redis_spanner.schemas.errors import KeyRefused
from redis_spanner.schemas.events import EventType
from redis_spanner.schemas.keys import Action, Catalog

CATALOG = Catalog("rsc", DEMO)


def event(table: str, key: tuple[object, ...], kind: EventType = EventType.ROW_CHANGED) -> Event:
    return Event("0f8e2c1a-2222", kind, table, key, 10**18)  # type: ignore[arg-type]


def test_row_key_uses_a_hash_tag_per_entity() -> None:
    """One entity's keys share a Redis Cluster hash tag."""
    team = CATALOG.key(CATALOG.template("team"), [7])
    members = CATALOG.key(CATALOG.template("team-members"), [7])
    assert team.key == "rsc:team:{Teams:7}"
    assert members.key == "rsc:team-members:{Teams:7}"


def test_derived_key_is_reached_from_child_rows() -> None:
    """A Members event addresses its team's member list, and asks for a rewarm."""
    targets = CATALOG.targets(event("Members", (7, "bob")))
    assert [(t.cache_key.key, t.action) for t in targets] == [
        ("rsc:team-members:{Teams:7}", Action.REWARM)
    ]


def test_delete_always_invalidates() -> None:
    """row.deleted tombstones even keys whose rule is rewarm."""
    targets = CATALOG.targets(event("Members", (7, "bob"), EventType.ROW_DELETED))
    assert {t.action for t in targets} == {Action.INVALIDATE}


def test_rewarm_event_overrides_an_invalidate_rule() -> None:
    """row.rewarm asks for a rewarm whatever the template's rule says."""
    targets = CATALOG.targets(event("Accounts", ("a-1",), EventType.ROW_REWARM))
    assert [t.action for t in targets] == [Action.REWARM]


@pytest.mark.parametrize(
    "part",
    ["*", "a*", "?", "[a]", "a:b", "{x}", "rsc:account:{Accounts:x}", "x" * 129, "", " ", "é"],
)
def test_patterns_prefixes_and_overlong_ids_are_refused(part: str) -> None:
    """Glob characters, separators, hash-tag braces, other prefixes and overlong ids never
    become part of a key."""
    with pytest.raises(KeyRefused):
        CATALOG.key(CATALOG.template("account"), [part])


def test_undeclared_table_and_wrong_arity_are_refused() -> None:
    """Events for tables without templates, or with the wrong number of key parts, are refused."""
    with pytest.raises(KeyRefused):
        CATALOG.targets(event("Secrets", ("a",)))
    with pytest.raises(KeyRefused):
        CATALOG.targets(event("Accounts", ("a", "b")))


def test_key_types_are_enforced() -> None:
    """An INT64 key column takes integers only, a STRING column strings only."""
    with pytest.raises(KeyRefused):
        CATALOG.targets(event("Teams", ("7",)))
    with pytest.raises(KeyRefused):
        CATALOG.targets(event("Accounts", (7,)))


def test_parse_inverts_key() -> None:
    """Tools that walk Redis get back the template and typed parts of a key."""
    key = CATALOG.key(CATALOG.template("team-members"), [42])
    assert CATALOG.parse(key.key) == key
    with pytest.raises(KeyRefused):
        CATALOG.parse("other:account:{Accounts:x}")
    with pytest.raises(KeyRefused):
        CATALOG.parse("rsc:team:{Teams:x}")
