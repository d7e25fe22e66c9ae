"""A service with its own schema adopts the pipeline without editing the package: its database
already holds data, `provision --existing` adds only the outbox tables, a TOML catalog names its
keys, and the stock relay and worker carry its writes to Redis."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from google.cloud import spanner
from redis_spanner.consumers.pubsub import PullSubscription
from redis_spanner.consumers.worker import Consumer, PullWorker
from redis_spanner.infra.provision.run import provision, teardown
from redis_spanner.infra.spanner.ddl import SCHEMA_PATH, load_schema
from redis_spanner.producers.outbox import record
from redis_spanner.producers.runner import build_relay
from redis_spanner.producers.spanner import run_transaction
from redis_spanner.schemas import versions
from redis_spanner.schemas.events import EventType
from redis_spanner.schemas.settings import Settings, get_settings

from tests.cli import invoke
from tests.integration.shop import SHOP_CATALOG, SHOP_DDL, shop, tables
from tests.redis_text import text_hash
from tests.waiting import wait_until

__all__ = ["shop"]  # the fixture

def test_existing_database_gets_only_the_outbox_and_its_data_stays(
    settings: Settings, shop: Any
) -> None:
    """`provision --existing` applies the outbox and relay tables to the service's database and
    nothing else: its tables and rows are untouched and no demo table appears; it is idempotent."""
    result = invoke("provision", "--existing", "--json")
    assert result.exit_code == 0, result.stderr + result.stdout
    report = json.loads(result.stdout.strip().splitlines()[-1])
    [row] = [r for r in report["resources"] if r["kind"] == "spanner database"]
    pipeline = [s.name for s in load_schema(SCHEMA_PATH)]
    assert row["action"] == "updated"
    assert row["details"] == [f"applied CREATE TABLE {name}" for name in pipeline]
    assert tables(shop) == {"Customers", "Orders", "Readings", *pipeline}
    with shop.snapshot() as snapshot:
        assert list(snapshot.execute_sql("SELECT Name FROM Customers")) == [["ada"]]

    again = invoke("provision", "--existing", "--json")
    assert again.exit_code == 0
    assert '"action": "unchanged"' in again.stdout


def test_existing_is_required_to_exist(settings: Settings, stack: object) -> None:
    """With --existing, a database that is not there is one line naming it, exit 1, and
    nothing is created."""
    result = invoke("provision", "--existing")
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1
    assert f"databases/{settings.database} does not exist (REDIS_SPANNER_DATABASE)" in (
        result.stderr)
    assert "Traceback" not in result.stderr


def test_writes_of_a_foreign_schema_reach_redis_through_the_stock_pipeline(
    settings: Settings, shop: Any
) -> None:
    """Composite STRING+INT64 keys, an interleaved child table and a derived key over its rows
    work end to end with a TOML catalog: a customer change tombstones its row key at the
    commit version, an order insert rewarms the customer's order list with the new rows."""
    provision(get_settings(), create_database=False)
    configured = get_settings()
    check = invoke("catalog", "check")
    assert check.exit_code == 0, check.stderr
    assert "2 template(s) match" in check.stdout

    consumer = Consumer.from_settings(configured)
    relay, publisher = build_relay(configured)
    pull = PullWorker(PullSubscription(configured.subscription_path), consumer.processor,
                      streams=1)
    stop = threading.Event()
    loops = [threading.Thread(target=loop, args=(stop,), daemon=True)
             for loop in (relay.run, pull.run)]
    for loop in loops:
        loop.start()
    store = redis.Redis.from_url(configured.require_redis_url(), decode_responses=True)
    try:
        def write(tx: Any) -> None:
            tx.update("Customers", ("Region", "CustomerId", "Name", "UpdatedAt"),
                      [["eu", 7, "ada l.", spanner.COMMIT_TIMESTAMP]])
            record(tx, EventType.ROW_CHANGED, "Customers", ("eu", 7))
            tx.insert("Orders", ("Region", "CustomerId", "OrderId", "Total"),
                      [["eu", 7, "o-2", 250]])
            record(tx, EventType.ROW_CHANGED, "Orders", ("eu", 7, "o-2"))

        _, committed = run_transaction(shop, write)
        version = f"{versions.from_datetime(committed):020d}"
        ns = configured.namespace
        row_key = f"{ns}:customer:{{Customers:eu:7}}"
        list_key = f"{ns}:customer-orders:{{Customers:eu:7}}"

        def reached(key: str) -> Callable[[], dict[str, str] | None]:
            def probe() -> dict[str, str] | None:
                entry = text_hash(store, key)
                return entry if entry and entry["v"] >= version else None

            return probe

        row = wait_until(reached(row_key), timeout=60)
        assert row == {"v": version, "s": "t"}
        orders = wait_until(reached(list_key), timeout=60)
        assert orders["s"] == "v"
        assert json.loads(orders["d"]) == [{"OrderId": "o-1", "Total": 100},
                                           {"OrderId": "o-2", "Total": 250}]
    finally:
        stop.set()
        for loop in loops:
            loop.join(timeout=30)
        publisher.close()
        consumer.close()
        store.close()


def test_catalog_keys_prints_what_an_event_on_a_row_addresses(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`catalog keys` routes a row like the consumer does: an order addresses its customer's
    derived key (rewarm), a customer both keys, a delete only invalidates; a refused part is
    one line and exit 2."""
    monkeypatch.setenv("REDIS_SPANNER_CATALOG", str(SHOP_CATALOG))
    get_settings.cache_clear()
    ns = settings.namespace
    order = invoke("catalog", "keys", "Orders", "eu", "7", "o-1")
    assert order.exit_code == 0, order.stderr
    assert order.stdout.splitlines() == [
        f"{ns}:customer-orders:{{Customers:eu:7}}\tcustomer-orders\trewarm"]
    deleted = invoke("catalog", "keys", "Customers", "eu", "7",
                                       "--type", "row.deleted", "--json")
    assert json.loads(deleted.stdout.splitlines()[-1]) == [
        {"key": f"{ns}:customer:{{Customers:eu:7}}", "template": "customer",
         "action": "invalidate"},
        {"key": f"{ns}:customer-orders:{{Customers:eu:7}}", "template": "customer-orders",
         "action": "invalidate"},
    ]
    for bad in (["Customers", "eu", "seven"], ["Customers", "e u", "7"], ["Readings", "s-1"]):
        refused = invoke("catalog", "keys", *bad)
        assert refused.exit_code == 2, bad
        assert refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr


def test_own_ddl_from_the_settings_joins_the_outbox_in_a_new_database(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """REDIS_SPANNER_DDL names a service's DDL: a new database gets the outbox tables and the
    service's, and still no demo table."""
    monkeypatch.setenv("REDIS_SPANNER_DDL", str(SHOP_DDL))
    get_settings.cache_clear()
    try:
        result = invoke("provision")
        assert result.exit_code == 0, result.stderr
        database = spanner.Client(project=settings.project, disable_builtin_metrics=True
                                  ).instance(settings.instance).database(settings.database)
        pipeline = {s.name for s in load_schema(SCHEMA_PATH)}
        assert tables(database) == {*pipeline, "Customers", "Orders", "Readings"}
    finally:
        teardown(get_settings())


@pytest.mark.parametrize("case", ["declaration", "ddl file", "ddl statement", "ddl twice"])
def test_bad_declaration_or_ddl_is_one_line_and_exit_2(
    case: str, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A declaration or DDL file that is missing, holds a statement other than CREATE, or
    creates an outbox table again stops provision before any call, naming the file."""
    bad = tmp_path / "bad.sql"
    args = ["provision"]
    if case == "declaration":
        monkeypatch.setenv("REDIS_SPANNER_DECLARATION", str(tmp_path / "pipeline.json"))
        expected = f"cannot read the declaration {tmp_path / 'pipeline.json'}"
    elif case == "ddl file":
        args += ["--ddl", str(bad)]
        expected = f"cannot read the DDL file {bad}"
    elif case == "ddl statement":
        bad.write_text("ALTER TABLE Customers ADD COLUMN Email STRING(64);")
        args += ["--ddl", str(bad)]
        expected = f"{bad}: statement 1 creates no named object"
    else:
        bad.write_text("CREATE TABLE Outbox (Id INT64) PRIMARY KEY (Id);")
        args += ["--ddl", str(bad)]
        expected = "created by more than one DDL file: TABLE outbox"
    get_settings.cache_clear()
    result = invoke(*args)
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and expected in result.stderr
