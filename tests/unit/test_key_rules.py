"""The rules of key templates and catalogs: what a template may declare, what a key may
contain, how keys parse back, and how refusals quote hostile input (bounded, for logs)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis_spanner.schemas.catalog import ACCOUNT, DEMO
from redis_spanner.schemas.errors import KeyRefused
from redis_spanner.schemas.events import INT64_MAX, INT64_MIN, MAX_KEY_PART_LENGTH
from redis_spanner.schemas.keys import Action, Catalog, KeyTemplate, Trigger

CATALOG = Catalog("rsc", DEMO)
ROW = {"entity": "Things", "key_columns": ("Id",), "triggers": (Trigger("Things", 1, (0,)),),
       "columns": ("Name",)}


REFUSED_TYPE = ("template 'thing': key type {} is refused: cache keys are built from STRING or "
                "INT64 primary-key parts only (a TIMESTAMP or BYTES key column cannot address a "
                "cache key; key the template by another column)")


def template(**changes: object) -> KeyTemplate:
    return KeyTemplate(**{"name": "thing", **ROW, **changes})  # type: ignore[arg-type]


def test_key_types_default_to_strings_one_per_column() -> None:
    """Without declared key types every key column is a STRING."""
    assert template(key_columns=("A", "B"), triggers=()).key_types == ("STRING", "STRING")


@pytest.mark.parametrize(("changes", "message"), [
    ({"key_types": ("STRING", "STRING")}, "template 'thing': one key type per key column"),
    ({"key_types": ("FLOAT64",)}, REFUSED_TYPE.format("FLOAT64")),
    ({"key_types": ("TIMESTAMP",)}, REFUSED_TYPE.format("TIMESTAMP")),
    ({"key_types": ("BYTES",)}, REFUSED_TYPE.format("BYTES")),
    ({"key_columns": ("A", "B"), "key_types": ("TIMESTAMP", "BYTES"), "triggers": ()},
     REFUSED_TYPE.format("BYTES, TIMESTAMP")),
    ({"key_columns": ("A", "B"), "key_types": ("INT64", "BYTES"), "triggers": ()},
     REFUSED_TYPE.format("BYTES")),
    ({"name": "Thing"}, "template name 'Thing' must match ^[a-z][a-z0-9-]{0,47}$"),
    ({"name": "x" * 49}, f"template name {'x' * 49!r} must match ^[a-z][a-z0-9-]{{0,47}}$"),
    ({"query": "SELECT 1"}, "template 'thing' needs exactly one of columns or query"),
    ({"columns": ()}, "template 'thing' needs exactly one of columns or query"),
    ({"columns": (), "query": "SELECT 1", "version_column": "At"},
     "template 'thing': version_column is for row templates"),
    ({"triggers": (Trigger("Things", 2, (0, 1)),)},
     "template 'thing': trigger Things maps 2 parts onto 1"),
])
def test_a_template_that_cannot_work_is_refused_at_declaration(
    changes: dict[str, object], message: str
) -> None:
    """Each mistake is refused with a message that names the template and the rule."""
    with pytest.raises(ValueError) as refused:
        template(**changes)
    assert str(refused.value) == message


def test_valid_templates_are_accepted() -> None:
    """Types and names at the edges of the rules are accepted."""
    assert template(key_types=("INT64",)).key_types == ("INT64",)
    assert template(key_columns=("A", "B"), key_types=("STRING", "INT64"),
                    triggers=()).key_types == ("STRING", "INT64")
    assert template(name="a" + "-" * 47).name == "a" + "-" * 47
    assert template(version_column="At").version_column == "At"


def test_a_catalog_refuses_bad_namespaces_and_duplicate_names() -> None:
    with pytest.raises(ValueError, match=r"^namespace 'Rsc' must match \^\[a-z\]"):
        Catalog("Rsc", DEMO)
    with pytest.raises(ValueError, match=r"^template 'account' declared twice$"):
        Catalog("rsc", [ACCOUNT, ACCOUNT])


def test_a_catalog_lists_its_templates_and_tables() -> None:
    assert list(CATALOG) == list(DEMO)
    assert CATALOG.tables == {"Accounts", "Teams", "Members"}


@given(st.text(min_size=1, max_size=200) | st.text(min_size=49, max_size=200))
def test_unknown_template_names_are_quoted_at_most_48_characters(name: str) -> None:
    if name in {t.name for t in DEMO}:
        return
    with pytest.raises(KeyRefused) as refused:
        CATALOG.template(name)
    assert str(refused.value) == f"no key template named {name[:48]!r}"


@given(st.text(max_size=200) | st.text(min_size=65, max_size=200))
def test_tables_without_templates_are_quoted_at_most_64_characters(table: str) -> None:
    if table in CATALOG.tables:
        return
    with pytest.raises(KeyRefused) as refused:
        CATALOG.keys_for_row(table, ["a"])
    assert str(refused.value) == f"table {table[:64]!r} has no key templates"


def test_wrong_arity_names_the_table_and_both_counts() -> None:
    with pytest.raises(KeyRefused, match=r"^table 'Accounts' keys have 1 part\(s\), got 2$"):
        CATALOG.keys_for_row("Accounts", ["a", "b"])


def test_a_row_feeds_every_key_built_from_it_as_rewarms() -> None:
    """Backfill walks a table's rows: a Teams row feeds the team and its member list."""
    keys = CATALOG.keys_for_row("Teams", [7])
    assert [k.key for k in keys] == ["rsc:team:{Teams:7}", "rsc:team-members:{Teams:7}"]
    targets = CATALOG._route("Teams", (7,), Action.REWARM, 0)
    assert [t.action for t in targets] == [Action.REWARM, Action.REWARM]


def test_scan_patterns_cover_the_namespace_or_one_template() -> None:
    assert CATALOG.pattern() == "rsc:*:{*}"
    assert CATALOG.pattern(CATALOG.template("team")) == "rsc:team:{*}"


def test_a_key_knows_its_fill_lease() -> None:
    key = CATALOG.key(CATALOG.template("account"), ["a"])
    assert key.lease_key == "rsc:account:{Accounts:a}:lease"


@pytest.mark.parametrize(("key", "message"), [
    ("other:account:{Accounts:x}", "is not a key of namespace 'rsc'"),
    ("rsc:account:{Accounts:x", "is not a key of namespace 'rsc'"),
    ("rsc:account:Accounts:x}", "is not a key of namespace 'rsc'"),
    ("rsc:account:{Teams:x}", "entity does not match template 'account'"),
    ("rsc:team:{Teams:x}", "does not match template 'team'"),
    ("rsc:team:{Teams:7:8}", "does not match template 'team'"),
    ("rsc:team:{Teams:07}", "does not round-trip"),
    ("rsc:account:{Accounts:a:{b}", "does not match template 'account'"),
    ("rsc:nope:{Teams:7}", "no key template named 'nope'"),
])
def test_parse_refuses_what_key_would_not_build(key: str, message: str) -> None:
    """Each refusal quotes the key first, then says why."""
    with pytest.raises(KeyRefused) as refused:
        CATALOG.parse(key)
    text = str(refused.value)
    if message.startswith("no key template"):
        assert text == message
    else:
        assert text.startswith(repr(key)) and text.endswith(message), text


def test_parse_reads_string_parts_as_strings_and_int_parts_as_ints() -> None:
    """A STRING part that looks like a number stays a string; braces inside the tag are
    split at the first one."""
    assert CATALOG.parse("rsc:account:{Accounts:7}").parts == ("7",)
    assert CATALOG.parse("rsc:team:{Teams:7}").parts == (7,)


@given(st.text(min_size=81, max_size=300))
def test_refusals_quote_at_most_80_characters_of_a_key(tail: str) -> None:
    """A hostile key is quoted, in any refusal, by its first 80 characters only."""
    for key in ("rsc:" + tail, "rsc:account:{Teams:" + tail + "}",
                "rsc:team:{Teams:" + tail + "}"):
        with pytest.raises(KeyRefused) as refused:
            CATALOG.parse(key)
        text = str(refused.value)
        if text.startswith("no key template"):
            continue
        assert text.startswith(repr(key[:80])), text


def test_int64_parts_reach_both_ends_of_the_range() -> None:
    """The smallest and largest INT64 are valid team ids; one past either end is refused."""
    team = CATALOG.template("team")
    for part in (INT64_MIN, INT64_MAX):
        assert CATALOG.key(team, [part]).parts == (part,)
    for part in (INT64_MIN - 1, INT64_MAX + 1):
        with pytest.raises(KeyRefused):
            CATALOG.key(team, [part])


def test_a_part_of_the_wrong_type_names_its_column() -> None:
    with pytest.raises(KeyRefused) as refused:
        CATALOG.key(CATALOG.template("team"), ["7"])
    assert str(refused.value) == "key part for TeamId must be INT64"


def test_a_refused_part_is_quoted_with_the_rule() -> None:
    """A refused key part is quoted (its first 40 characters of repr) beside the rule."""
    with pytest.raises(KeyRefused) as refused:
        CATALOG.key(CATALOG.template("account"), ["a*" * 30])
    assert str(refused.value) == (
        f"key part {repr('a*' * 30)[:40]} refused: integers or 1-{MAX_KEY_PART_LENGTH} "
        "characters of [A-Za-z0-9._@-] only")


def test_the_wrong_number_of_parts_is_refused_with_both_counts() -> None:
    with pytest.raises(KeyRefused) as refused:
        CATALOG.key(CATALOG.template("account"), ["a", "b"])
    assert str(refused.value) == "template 'account' takes 1 key part(s), got 2"
