"""Outbox rows that can never become a message, written with plain SQL as another language's
writer would: the relay moves each to OutboxQuarantine with its reason, and keeps publishing
the rows around it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
from google.cloud.spanner_v1 import param_types
from redis_spanner.infra.local.processes import free_ports
from redis_spanner.producers.outbox_store import SpannerOutbox
from redis_spanner.producers.runner import build_relay
from redis_spanner.producers.spanner import run_transaction
from redis_spanner.schemas.events import MAX_MESSAGE_BYTES
from redis_spanner.schemas.settings import Settings

from tests.outbox_sql import SqlRow, insert, outbox_ids, quarantined
from tests.waiting import wait_until

DEEP = 100_000
POISON: dict[str, tuple[SqlRow, str]] = {
    "key-not-json": (SqlRow(key_json='["acct-001"'), "undecodable"),
    "key-not-array": (SqlRow(key_json='{"AccountId": "acct-001"}'), "invalid"),
    "key-empty": (SqlRow(key_json="[]"), "invalid"),
    "key-json-null": (SqlRow(key_json="null"), "invalid"),
    "key-part-null": (SqlRow(key_json="[null]"), "invalid"),
    "key-part-float": (SqlRow(key_json="[1.5]"), "invalid"),
    "key-nested-deep": (SqlRow(key_json="[" * DEEP + "]" * DEEP), "undecodable"),
    "key-too-many-parts": (SqlRow(key_json=json.dumps(list(range(50)))), "invalid"),
    "payload-not-json": (SqlRow(payload="{'single': 'quotes'}"), "undecodable"),
    "payload-not-object": (SqlRow(payload="[1, 2]"), "invalid"),
    "payload-nested-deep": (SqlRow(payload='{"a":' * DEEP + "1" + "}" * DEEP), "undecodable"),
    # Within the column's 2.5 Mi characters, but each one is six bytes of JSON on the wire.
    "payload-over-pubsub-limit": (
        SqlRow(payload=json.dumps({"blob": "\u00e9" * (MAX_MESSAGE_BYTES // 6 + 1)},
                                  ensure_ascii=False)), "too-large"),
    "unknown-event-type": (SqlRow(event_type="row.exploded"), "unknown-type"),
    "unsupported-schema-version": (SqlRow(schema_version=7), "unsupported-schema-version"),
    "bad-event-id": (SqlRow(event_id="not an id!"), "invalid"),
    "bad-table-name": (SqlRow(table="1; DROP TABLE"), "invalid"),
}
NULLS: dict[str, tuple[SqlRow, str]] = {
    f"null-{column}": (SqlRow(**{field: None}), "invalid")
    for column, field in (("EventType", "event_type"), ("TableName", "table"),
                          ("KeyJson", "key_json"), ("SchemaVersion", "schema_version"))
}


def loosen_outbox(database: Any) -> None:
    """Drop NOT NULL from the required columns, as an older or hand-made schema might have."""
    database.update_ddl([
        "ALTER TABLE Outbox ALTER COLUMN EventType STRING(64)",
        "ALTER TABLE Outbox ALTER COLUMN TableName STRING(128)",
        "ALTER TABLE Outbox ALTER COLUMN KeyJson STRING(MAX)",
        "ALTER TABLE Outbox ALTER COLUMN SchemaVersion INT64",
    ]).result(timeout=60)


def assert_in_exactly_one_table(database: Any, ids: set[str]) -> None:
    """At one read timestamp, each row is pending or quarantined, never both nor neither."""
    with database.snapshot(multi_use=True) as snapshot:
        pending = [str(r[0]) for r in snapshot.execute_sql("SELECT EventId FROM Outbox")]
        moved = [str(r[0]) for r in snapshot.execute_sql(
            "SELECT EventId FROM OutboxQuarantine")]
    where = [(event_id, pending.count(event_id) + moved.count(event_id)) for event_id in ids]
    assert all(count == 1 for _, count in where), where


@pytest.mark.timeout(180)
def test_poison_rows_are_quarantined_with_their_reason_and_the_rows_around_them_flow(
    provisioned: Settings, database: Any, running: Any, received: Callable[[], set[str]]
) -> None:
    """Every kind of row that cannot become a message (malformed, absurdly nested, over
    Pub/Sub's limit, unknown type or schema version, a NULL where a value is required) ends in
    OutboxQuarantine with its reason and leaves the Outbox, in the same transaction; valid rows
    written before, between and after them are all published; the relay never stops."""
    loosen_outbox(database)
    cases = {**POISON, **NULLS}
    good: list[str] = []
    poison: dict[str, str] = {}
    for name, (row, _) in cases.items():
        good += insert(database, SqlRow(key_json='["acct-002"]'))
        (event_id,) = insert(database, row)
        poison[event_id] = name
    good += insert(database, *[SqlRow(key_json=f'["acct-{n:03d}"]') for n in range(20)])

    relay, _ = build_relay(provisioned)
    running(relay.run)

    def drained() -> bool:
        assert_in_exactly_one_table(database, set(poison))
        return set(good) <= received() and not outbox_ids(database)

    wait_until(drained, timeout=90, interval=0.1)
    reasons = quarantined(database)
    assert set(reasons) == set(poison), "quarantined rows differ from the poison rows"
    for event_id, reason in reasons.items():
        expected = cases[poison[event_id]][1]
        assert reason.startswith(f"{expected}:"), (poison[event_id], reason)
    assert not set(poison) & received(), "a poison row was published"

    later = insert(database, SqlRow(), SqlRow(event_type="nope"), SqlRow())
    wait_until(lambda: {later[0], later[2]} <= received(), timeout=30, interval=0.2)
    wait_until(lambda: later[1] in quarantined(database), timeout=30)
    assert relay.quarantined == len(poison) + 1


@pytest.mark.timeout(120)
def test_outbox_quarantine_command_lists_rows_with_reasons_and_reports_outages_in_one_line(
    provisioned: Settings, database: Any, tmp_path: Any
) -> None:
    """``redis-spanner outbox quarantine`` says when nothing is quarantined, lists each
    quarantined row with its reason (``--json`` too); ``outbox requeue`` sends a row fixed in
    place back to the outbox under its event id, and says when no row matches; for both, a
    Spanner that refuses connections or never answers is one line naming the cause, the
    database and the address, and exit status 1 (as for every command), never a
    traceback."""
    command = [sys.executable, "-m", "redis_spanner.infra.cli", "outbox", "quarantine"]
    empty = subprocess.run([*command, "--json"], capture_output=True, text=True, timeout=60)
    assert empty.returncode == 0, empty.stderr
    assert json.loads(empty.stdout.splitlines()[-1]) == {"quarantined": []}
    assert "no quarantined outbox rows" in empty.stderr

    bad = insert(database, SqlRow(key_json="{"), SqlRow(event_type="row.exploded"))
    insert(database, SqlRow())
    store = SpannerOutbox(database)
    store.quarantine(store.read(set(range(16)), 10).poison)
    listed = subprocess.run([*command, "--json"], capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    rows = {r["event_id"]: r for r in json.loads(listed.stdout.splitlines()[-1])["quarantined"]}
    assert set(rows) == set(bad)
    assert rows[bad[0]]["reason"].startswith("undecodable:")
    assert rows[bad[1]]["reason"].startswith("unknown-type:")
    assert rows[bad[1]]["event_type"] == "row.exploded" and rows[bad[0]]["key_head"] == "{"
    human = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert bad[0] in human.stdout and "2 quarantined row(s)" in human.stdout

    run_transaction(database, lambda tx: tx.execute_update(
        "UPDATE OutboxQuarantine SET KeyJson = '[\"acct-009\"]' WHERE EventId = @id",
        params={"id": bad[0]}, param_types={"id": param_types.STRING}))
    requeue = [sys.executable, "-m", "redis_spanner.infra.cli", "outbox", "requeue"]
    fixed = subprocess.run([*requeue, "--id", bad[0]], capture_output=True, text=True,
                           timeout=60)
    assert fixed.returncode == 0 and "requeued 1 of 1" in fixed.stdout, fixed.stderr
    assert bad[0] in outbox_ids(database) and set(quarantined(database)) == {bad[1]}
    assert store.read(set(range(16)), 10).poison == [], "the fixed row is still poison"
    unknown = subprocess.run([*requeue, "--id", "no-such-event"], capture_output=True,
                             text=True, timeout=60)
    assert unknown.returncode == 1 and "no quarantined row" in unknown.stderr, unknown.stderr

    (port,) = free_ports(1)
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        mute = silent.getsockname()[1]
        for address, cause in ((f"127.0.0.1:{port}", "cannot reach the Spanner emulator"),
                               (f"127.0.0.1:{mute}", "no answer within 3s")):
            for args in (command, [*requeue, "--id", bad[1]]):
                env = {**os.environ, "SPANNER_EMULATOR_HOST": address}
                started = time.monotonic()
                down = subprocess.run([*args, "--timeout", "3"], capture_output=True,
                                      text=True, timeout=60, env=env)
                assert time.monotonic() - started < 30, "the command did not bound its wait"
                assert down.returncode == 1, down.stderr
                assert len(down.stderr.strip().splitlines()) == 1, down.stderr
                assert down.stderr.startswith("error: ") and cause in down.stderr, down.stderr
                assert provisioned.database in down.stderr and address in down.stderr
                assert "Traceback" not in down.stderr
