"""TOML catalogs load into the same templates as a Python module, and every malformed file is
one CatalogError naming the file and what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis_spanner.schemas.catalog import DEMO, load_catalog
from redis_spanner.schemas.errors import CatalogError
from redis_spanner.schemas.keys import Action

DEMO_TOML = '''
[[template]]
name = "account"
entity = "Accounts"
key_columns = ["AccountId"]
columns = ["Owner", "Balance"]
version_column = "UpdatedAt"

[[template]]
name = "team"
entity = "Teams"
key_columns = ["TeamId"]
key_types = ["INT64"]
columns = ["Name"]

[[template]]
name = "team-members"
entity = "Teams"
key_columns = ["TeamId"]
key_types = ["INT64"]
action = "rewarm"
query = "SELECT MemberId, Role FROM Members WHERE TeamId = @k0 ORDER BY MemberId"
triggers = [{ table = "Members", arity = 2, parts = [0] },
            { table = "Teams", arity = 1, parts = [0] }]
'''

GOOD = '''[[template]]
name = "account"
entity = "Accounts"
key_columns = ["AccountId"]
columns = ["Owner"]
'''


def test_a_toml_file_declares_what_the_demo_module_does(tmp_path: Path) -> None:
    """The demo's catalog written as TOML loads into equal templates, triggers defaulting to
    the entity's own key."""
    path = tmp_path / "demo.toml"
    path.write_text(DEMO_TOML)
    assert tuple(load_catalog(str(path), "rsc")) == tuple(DEMO)


def test_module_specs_still_load() -> None:
    """`module:NAME` keeps working; a spec that is neither a file nor a module is refused."""
    assert tuple(load_catalog("redis_spanner.schemas.catalog:DEMO", "rsc")) == tuple(DEMO)
    for spec in ("nowhere", "redis_spanner.schemas.catalog:NOPE", "no.such.module:X"):
        with pytest.raises(CatalogError, match="catalog"):
            load_catalog(spec, "rsc")


def test_an_existing_path_without_the_suffix_is_a_file(tmp_path: Path) -> None:
    """Any existing path is read as TOML, whatever its name (a mounted ConfigMap key)."""
    path = tmp_path / "catalog"
    path.write_text(GOOD)
    [template] = load_catalog(str(path), "rsc")
    assert template.action is Action.INVALIDATE and template.triggers[0].table == "Accounts"


BROKEN = {
    "not toml": ("[[template]\n", "not TOML"),
    "missing file": (None, "cannot read it"),
    "no templates": ('namespace = "rsc"\n', "declares no [[template]]"),
    "other namespace": ('namespace = "other"\n' + GOOD, "REDIS_SPANNER_NAMESPACE is 'rsc'"),
    "unknown top key": ("templates = 1\n" + GOOD, "unknown top-level key(s) templates"),
    "unknown template key": (GOOD + 'colums = ["x"]\n', "unknown key(s) colums"),
    "missing name": (GOOD.replace('name = "account"\n', ""), "name is missing"),
    "wrong type": (GOOD.replace('"Accounts"', "7"), "entity must be a str"),
    "empty columns": (GOOD.replace('["Owner"]', "[]"), "columns must be a non-empty array"),
    "bad action": (GOOD + 'action = "refresh"\n', "action must be 'invalidate' or 'rewarm'"),
    "both columns and query": (GOOD + 'query = "SELECT 1"\n', "exactly one of columns or query"),
    "timestamp key": (GOOD + 'key_types = ["TIMESTAMP"]\n', "key type TIMESTAMP is refused"),
    "bytes key": (GOOD + 'key_types = ["BYTES"]\n', "key type BYTES is refused"),
    "bad name": (GOOD.replace('"account"', '"Account Name"'), "template name"),
    "trigger out of range": (GOOD + 'triggers = [{ table = "A", arity = 1, parts = [3] }]\n',
                             "parts must be indexes"),
    "trigger bool arity": (GOOD + 'triggers = [{ table = "A", arity = true, parts = [0] }]\n',
                           "arity must be a int"),
    "trigger width": (GOOD + 'triggers = [{ table = "A", arity = 2, parts = [0, 1] }]\n',
                      "maps 2 parts onto 1"),
    "twice": (GOOD + GOOD, "declared twice"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_every_malformed_file_is_one_error_naming_it(case: str, tmp_path: Path) -> None:
    """Syntax, structure, types, enum values, key types and template rules are each refused
    with the path in the message, never a traceback from deeper down."""
    text, expected = BROKEN[case]
    path = tmp_path / "catalog.toml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(CatalogError) as refused:
        load_catalog(str(path), "rsc")
    assert str(path) in str(refused.value)
    assert expected in str(refused.value)
