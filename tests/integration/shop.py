"""A service's own schema and catalog (infra/examples/shop), in a database that already holds
its rows before the pipeline is added."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.cloud import spanner
from redis_spanner.infra.provision.run import teardown
from redis_spanner.infra.spanner.ddl import load_schema
from redis_spanner.schemas.settings import Settings, get_settings

SHOP = Path(__file__).parents[2] / "infra" / "examples" / "shop"
SHOP_DDL = SHOP / "schema.sql"
SHOP_CATALOG = SHOP / "catalog.toml"


def tables(database: Any) -> set[str]:
    with database.snapshot() as snapshot:
        rows = snapshot.execute_sql(
            "SELECT TABLE_NAME FROM INFORMATION_SCHEMA.TABLES WHERE TABLE_SCHEMA = ''")
        return {row[0] for row in rows}


@pytest.fixture
def shop(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The service's existing database: its own tables and rows, no outbox, and the TOML
    catalog named by REDIS_SPANNER_CATALOG."""
    client = spanner.Client(project=settings.project, disable_builtin_metrics=True)
    instance = client.instance(
        settings.instance,
        configuration_name=f"projects/{settings.project}/instanceConfigs/emulator-config",
        node_count=1)
    if not instance.exists():
        instance.create().result(timeout=60)
    database = instance.database(settings.database,
                                 ddl_statements=[s.text for s in load_schema(SHOP_DDL)])
    database.create().result(timeout=60)
    with database.batch() as batch:
        batch.insert("Customers", ("Region", "CustomerId", "Name", "UpdatedAt"),
                     [["eu", 7, "ada", spanner.COMMIT_TIMESTAMP]])
        batch.insert("Orders", ("Region", "CustomerId", "OrderId", "Total"),
                     [["eu", 7, "o-1", 100]])
    monkeypatch.setenv("REDIS_SPANNER_CATALOG", str(SHOP_CATALOG))
    get_settings.cache_clear()
    yield database
    teardown(get_settings())
    client.close()
