"""Outbox rows written the way a writer in another language writes them: plain SQL DML, with
whatever values it has, so the relay meets rows no Python ``record`` call would produce."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from google.cloud.spanner_v1 import param_types
from redis_spanner.producers.spanner import run_transaction

INSERT = """
INSERT INTO Outbox (Shard, EventId, EventType, TableName, KeyJson, Payload, SchemaVersion,
                    CommitTs)
VALUES (ABS(MOD(FARM_FINGERPRINT(@event_id), 16)), @event_id, @event_type, @table, @key_json,
        @payload, @schema_version, PENDING_COMMIT_TIMESTAMP())
"""
TYPES = {"event_id": param_types.STRING, "event_type": param_types.STRING,
         "table": param_types.STRING, "key_json": param_types.STRING,
         "payload": param_types.STRING, "schema_version": param_types.INT64}


@dataclass(frozen=True)
class SqlRow:
    """The values of one INSERT; the defaults make a valid row.changed event."""

    key_json: str | None = '["acct-001"]'
    payload: str | None = None
    event_type: str | None = "row.changed"
    table: str | None = "Accounts"
    schema_version: int | None = 1
    event_id: str | None = None

    def params(self) -> dict[str, Any]:
        return {"event_id": self.event_id or str(uuid.uuid4()), "event_type": self.event_type,
                "table": self.table, "key_json": self.key_json, "payload": self.payload,
                "schema_version": self.schema_version}


def insert(database: Any, *rows: SqlRow) -> list[str]:
    """Insert ``rows`` in one read-write transaction, as DML; returns their event ids."""
    params = [row.params() for row in rows]

    def work(tx: Any) -> None:
        for values in params:
            tx.execute_update(INSERT, params=values, param_types=TYPES)

    run_transaction(database, work)
    return [str(values["event_id"]) for values in params]


def quarantined(database: Any) -> dict[str, str]:
    """Reason by event id, of every row in OutboxQuarantine."""
    with database.snapshot() as snapshot:
        return {str(event_id): str(reason) for event_id, reason in snapshot.execute_sql(
            "SELECT EventId, Reason FROM OutboxQuarantine")}


def outbox_ids(database: Any) -> set[str]:
    with database.snapshot() as snapshot:
        return {str(row[0]) for row in snapshot.execute_sql("SELECT EventId FROM Outbox")}


def insert_many(database: Any, count: int) -> list[str]:
    """``count`` valid rows in one commit, as mutations: many rows fast, for load, not shape."""
    from google.cloud import spanner
    from redis_spanner.producers.outbox import OUTBOX_COLUMNS, OUTBOX_TABLE, shard_of

    ids = [str(uuid.uuid4()) for _ in range(count)]
    values = [[shard_of(i), i, "row.changed", "Accounts", f'["acct-{n:05d}"]', None, 1,
               spanner.COMMIT_TIMESTAMP, None] for n, i in enumerate(ids)]
    run_transaction(database, lambda tx: tx.insert(OUTBOX_TABLE, OUTBOX_COLUMNS, values))
    return ids
