"""A catalog that does not match the live schema is refused at start with one line naming the
file and the problem, by `catalog check` and by every consumer command, never dead-lettered at
run time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from redis_spanner.consumers.catalog_check import check_catalog
from redis_spanner.schemas.catalog import load_catalog
from redis_spanner.schemas.errors import CatalogError
from redis_spanner.schemas.settings import Settings, get_settings

from tests.cli import invoke
from tests.integration.shop import SHOP_CATALOG, shop

__all__ = ["shop"]  # the fixture

CUSTOMER = {"name": '"customer"', "entity": '"Customers"',
            "key_columns": '["Region", "CustomerId"]', "key_types": '["STRING", "INT64"]',
            "columns": '["Name"]', "version_column": '"UpdatedAt"'}
ORDERS = {"name": '"customer-orders"', "entity": '"Customers"',
          "key_columns": '["Region", "CustomerId"]', "key_types": '["STRING", "INT64"]',
          "query": '"SELECT OrderId, Total FROM Orders WHERE Region = @k0 AND CustomerId = @k1"',
          "triggers": '[{ table = "Orders", arity = 3, parts = [0, 1] }]'}


def toml(*templates: dict[str, str]) -> str:
    return "".join("[[template]]\n" + "".join(f"{k} = {v}\n" for k, v in t.items() if v)
                   for t in templates)


MISMATCHES = {
    "missing entity": (toml({**CUSTOMER, "entity": '"Customer"'}),
                       "entity table Customer does not exist"),
    "key type": (toml({**CUSTOMER, "key_types": '["STRING", "STRING"]'}),
                 "Customers.CustomerId is INT64, the template says STRING"),
    "missing key column": (toml({**CUSTOMER, "key_columns": '["Region", "Id"]'}),
                           "key column Customers.Id does not exist"),
    "not the primary key": (toml({**CUSTOMER, "key_columns": '["CustomerId", "Region"]',
                                  "key_types": '["INT64", "STRING"]'}),
                            "must be the primary key of Customers"),
    "missing column": (toml({**CUSTOMER, "columns": '["Name", "Email"]'}),
                       "column Customers.Email does not exist"),
    "version column type": (toml({**CUSTOMER, "version_column": '"Name"'}),
                            "version_column Name is not a TIMESTAMP"),
    "trigger arity": (toml({**ORDERS, "triggers":
                            '[{ table = "Orders", arity = 2, parts = [0, 1] }]'}),
                      "trigger Orders says arity 2, its primary key has 3"),
    "missing trigger table": (toml({**ORDERS, "triggers":
                                    '[{ table = "Order", arity = 3, parts = [0, 1] }]'}),
                              "trigger table Order does not exist"),
    "trigger part type": (toml({**ORDERS, "triggers":
                                '[{ table = "Orders", arity = 3, parts = [1, 0] }]'}),
                          "maps CustomerId (INT64) onto a STRING key part"),
    "timestamp key": (toml({"name": '"sensor"', "entity": '"Readings"',
                            "key_columns": '["SensorId"]',
                            "query": '"SELECT Value FROM Readings WHERE SensorId = @k0"',
                            "triggers": '[{ table = "Readings", arity = 2, parts = [0] }]'}),
                      "Readings.ReadAt is TIMESTAMP: events carry STRING or INT64"),
    "unknown column in query": (toml({**ORDERS, "query": '"SELECT Nope FROM Orders WHERE '
                                      'Region = @k0 AND CustomerId = @k1"'}),
                                "query does not plan"),
    "parameter type in query": (toml({**ORDERS, "key_columns": '["Region", "Name"]',
                                      "key_types": '["STRING", "STRING"]', "triggers":
                                      '[{ table = "Orders", arity = 3, parts = [0, 2] }]'}),
                                "query does not plan"),
}


@pytest.mark.parametrize("case", sorted(MISMATCHES))
def test_each_kind_of_mismatch_is_named(
    case: str, settings: Settings, shop: Any, tmp_path: Path
) -> None:
    """Tables, key columns and their types, the primary key, columns, the version column,
    trigger arity and key types, TIMESTAMP keys and queries that do not plan are each refused
    with the file and the template named."""
    text, expected = MISMATCHES[case]
    path = tmp_path / "catalog.toml"
    path.write_text(text)
    catalog = load_catalog(str(path), settings.namespace)
    with pytest.raises(CatalogError) as refused:
        check_catalog(catalog, shop, str(path))
    message = str(refused.value)
    assert expected in message
    assert str(path) in message and "template '" in message


def test_the_shipped_example_matches_its_schema(settings: Settings, shop: Any) -> None:
    """The control: the example catalog and its schema agree, queries plan and nothing is
    raised."""
    check_catalog(load_catalog(str(SHOP_CATALOG), settings.namespace), shop, "shop")


@pytest.mark.parametrize("command", [["worker"], ["verify"], ["rewarm", "--table", "Customers"],
                                     ["catalog", "check"]])
def test_consumer_commands_refuse_a_mismatched_catalog_at_start(
    command: list[str], settings: Settings, shop: Any, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """worker, verify and rewarm exit 2 before consuming anything (catalog check exits 1: a
    mismatch found), with one line naming the file and the problem and no traceback."""
    path = tmp_path / "bad.toml"
    path.write_text(toml({**CUSTOMER, "columns": '["Email"]'}))
    monkeypatch.setenv("REDIS_SPANNER_CATALOG", str(path))
    get_settings.cache_clear()
    result = invoke(*command)
    assert result.exit_code == (1 if command[0] == "catalog" else 2), result.stderr
    assert result.stderr.count("\n") == 1
    assert str(path) in result.stderr and "Customers.Email does not exist" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_serve_refuses_a_catalog_it_cannot_read(
    settings: Settings, shop: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """serve exits 2 with one line naming the file when the catalog is not TOML."""
    path = tmp_path / "broken.toml"
    path.write_text("[[template]\nname = ")
    monkeypatch.setenv("REDIS_SPANNER_CATALOG", str(path))
    monkeypatch.setenv("REDIS_SPANNER_PUSH_AUTH", "off")
    get_settings.cache_clear()
    result = invoke("serve")
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and str(path) in result.stderr
    assert "not TOML" in result.stderr


def test_a_database_that_is_not_there_is_one_line_naming_it(
    settings: Settings, stack: object
) -> None:
    """The start-up check against a database that does not exist names it and the settings,
    exit 2, no traceback."""
    result = invoke("verify")
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert f"databases/{settings.database} not found (REDIS_SPANNER_INSTANCE, " in result.stderr
