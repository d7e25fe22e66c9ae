"""Key templates build keys only from declared prefixes and validated primary-key parts;
an event can never address a key outside its namespace."""

from __future__ import annotations

import fnmatch

import pytest
from redis_spanner.schemas.catalog import DEMO
from redis_spanner.schemas.envelope import Event
from redis_spanner.schemas.errors import KeyRefused
from redis_spanner.schemas.events import EventType
from redis_spanner.schemas.keys import Action, Catalog, hash_tag, internal_key, is_internal

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


def test_internal_keys_are_no_template_keys_and_keep_their_hash_tag() -> None:
    """The consumers' own keys can't be parsed as, or collide with, a template's keys; one
    built with a key's hash tag lands in that key's slot, and the namespace's pattern of
    cached keys never matches one."""
    account = CATALOG.key(CATALOG.template("account"), ["a-1"]).key
    probe = internal_key("rsc", "heal-probe", hash_tag(account))
    assert probe == "rsc:_heal-probe{Accounts:a-1}" and is_internal(probe, "rsc")
    assert not is_internal(account, "rsc") and not is_internal(probe, "other")
    assert internal_key("rsc", "heal-probe") == "rsc:_heal-probe"
    assert hash_tag(probe) == hash_tag(account) == "Accounts:a-1"
    assert hash_tag("rsc:_heal-probe") is None and hash_tag("a{}b") is None
    assert not fnmatch.fnmatchcase(probe, CATALOG.pattern())
    with pytest.raises(KeyRefused):
        CATALOG.parse(probe)
