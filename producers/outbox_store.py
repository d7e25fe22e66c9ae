"""The relay's Spanner adapter: pending outbox rows, their deletion, and shard leases.

Lease times are Spanner's own (``CURRENT_TIMESTAMP()``), so relays on machines with skewed
clocks agree on who holds a shard.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import spanner
from google.cloud.spanner_v1 import param_types
from redis_spanner.producers.outbox import OUTBOX_SHARDS, OUTBOX_TABLE
from redis_spanner.producers.outbox_rows import (
    COLUMNS,
    OutboxRow,
    Pending,
    PoisonRow,
    Position,
    QuarantinedRow,
    classify,
)
from redis_spanner.producers.spanner import run_transaction
from redis_spanner.schemas.spanner_errors import translate
from redis_spanner.schemas.spanner_keys import PrimaryKeys

__all__ = ["Claim", "OutboxRow", "Pending", "PoisonRow", "SpannerOutbox"]
READ_TIMEOUT = 10.0
QUARANTINE_CHUNK = 50
"""Poison rows moved per transaction (one batch of DML statements)."""
"""Seconds one read may take: a Spanner that stopped answering is an error, not a hang."""


@dataclass(frozen=True, slots=True)
class Claim:
    shards: frozenset[int]
    share: int
    """The fair share this relay aimed for: fewer shards means others still hold the rest."""


_LEASES = """
SELECT Shard, Owner, ExpiresAt > CURRENT_TIMESTAMP() AS Live FROM OutboxLease
"""
_TAKE = """
INSERT OR UPDATE INTO OutboxLease (Shard, Owner, ExpiresAt)
SELECT s, @owner, TIMESTAMP_ADD(CURRENT_TIMESTAMP(), INTERVAL @ms MILLISECOND)
FROM UNNEST(@shards) AS s
"""
_ANNOUNCE = """
INSERT OR UPDATE INTO OutboxRelay (Owner, ExpiresAt)
VALUES (@owner, TIMESTAMP_ADD(CURRENT_TIMESTAMP(), INTERVAL @ms MILLISECOND))
"""
_RELAYS = "SELECT Owner FROM OutboxRelay WHERE ExpiresAt > CURRENT_TIMESTAMP()"
_FORGET = """
DELETE FROM OutboxRelay
WHERE Owner = @owner OR ExpiresAt < TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 1 HOUR)
"""
_DROP = "DELETE FROM OutboxLease WHERE Owner = @owner AND Shard IN UNNEST(@shards)"
_SHARDS = param_types.Array(param_types.INT64)
_QUARANTINE = """
INSERT OR UPDATE INTO OutboxQuarantine (Shard, EventId, EventType, TableName, KeyJson, Payload,
                                        SchemaVersion, CommitTs, Reason, QuarantinedAt)
SELECT Shard, EventId, EventType, TableName, KeyJson, Payload, SchemaVersion, CommitTs, @reason,
       CURRENT_TIMESTAMP()
FROM Outbox WHERE Shard = @shard AND EventId = @event_id
"""
_UNQUEUE = "DELETE FROM Outbox WHERE Shard = @shard AND EventId = @event_id"
_QUARANTINED = """
SELECT Shard, EventId, EventType, TableName, SchemaVersion, CommitTs, Reason, QuarantinedAt,
       SUBSTR(KeyJson, 1, 200), LENGTH(KeyJson), LENGTH(Payload)
FROM OutboxQuarantine ORDER BY QuarantinedAt DESC, Shard, EventId LIMIT @limit
"""
_COLUMNS = "Shard, EventId, EventType, TableName, KeyJson, Payload, SchemaVersion, CommitTs"
_REQUEUE = f"""
INSERT INTO Outbox ({_COLUMNS})
SELECT {_COLUMNS} FROM OutboxQuarantine WHERE EventId IN UNNEST(@ids)
"""
_RELEASE_QUARANTINED = "DELETE FROM OutboxQuarantine WHERE EventId IN UNNEST(@ids)"
_IDS = {"ids": param_types.Array(param_types.STRING)}
_ROW_PARAMS = {"shard": param_types.INT64, "event_id": param_types.STRING,
               "reason": param_types.STRING}


class SpannerOutbox:
    def __init__(self, database: Any) -> None:
        self._db = database

    def read(self, shards: set[int], limit: int, skip: Collection[str] = frozenset(),
             after: Position | None = None) -> Pending:
        """Up to ``limit`` pending rows of ``shards`` in key order (shard, then event id),
        from the start or after ``after``: messages to publish and poison to move aside. Rows
        whose event id is in ``skip`` (published already) count toward ``limit`` but are not
        decoded or returned.

        A read is one key-range read with a limit, so Spanner stops after ``limit`` rows: its
        cost does not grow with the backlog (a query ordered by commit time would sort every
        pending row of the shards on each read). A row committed behind ``after`` is found by
        the next read from the start."""
        ranges = [_range(shard, after) for shard in sorted(shards)
                  if after is None or shard >= after.shard]
        if not ranges:
            return Pending([], [], None, full=False)
        found: list[OutboxRow | PoisonRow] = []
        last: list[Any] = []
        count = 0
        try:
            with self._db.snapshot() as snapshot:
                for values in snapshot.read(OUTBOX_TABLE, COLUMNS, spanner.KeySet(ranges=ranges),
                                            limit=limit, timeout=READ_TIMEOUT):
                    count += 1
                    last = values
                    if values[1] not in skip:
                        found.append(classify(values))
        except Exception as e:
            raise translate(e) from e
        return Pending([r for r in found if isinstance(r, OutboxRow)],
                       [r for r in found if isinstance(r, PoisonRow)],
                       _position(last), full=count >= limit)

    def pending(self, shards: set[int], limit: int) -> list[OutboxRow]:
        """The messages among the oldest pending rows of ``shards``."""
        return self.read(shards, limit).rows

    def quarantine(self, rows: list[PoisonRow]) -> None:
        """Move poison rows to OutboxQuarantine with their reason, in the transaction that
        deletes them from Outbox: a row is in exactly one of the two tables."""

        for start in range(0, len(rows), QUARANTINE_CHUNK):
            self._quarantine(rows[start:start + QUARANTINE_CHUNK])

    def _quarantine(self, rows: list[PoisonRow]) -> None:
        statements = []
        for row in rows:
            params = {"shard": row.shard, "event_id": row.event_id, "reason": row.reason}
            statements += [(_QUARANTINE, params, _ROW_PARAMS), (_UNQUEUE, params, _ROW_PARAMS)]

        def work(tx: Any) -> None:
            status, _ = tx.batch_update(statements, timeout=READ_TIMEOUT)
            if status.code:  # as the exception the call would raise: Aborted is retried
                raise gexc.from_grpc_status(status.code, status.message)

        run_transaction(self._db, work, attempts=3, seconds=5.0)

    def requeue(self, event_ids: list[str]) -> int:
        """Move quarantined rows (fixed in place with SQL) back to Outbox, with their event id
        and commit timestamp, in one transaction. Returns how many moved."""

        def work(tx: Any) -> int:
            moved = int(tx.execute_update(_REQUEUE, params={"ids": event_ids},
                                          param_types=_IDS, timeout=READ_TIMEOUT))
            tx.execute_update(_RELEASE_QUARANTINED, params={"ids": event_ids},
                              param_types=_IDS, timeout=READ_TIMEOUT)
            return moved

        try:
            moved, _ = run_transaction(self._db, work, attempts=3, seconds=10.0)
        except Exception as e:
            raise translate(e) from e
        return moved

    def quarantined(self, limit: int) -> list[QuarantinedRow]:
        """The most recently quarantined rows, newest first."""
        try:
            with self._db.snapshot() as snapshot:
                return [QuarantinedRow.of(list(r)) for r in snapshot.execute_sql(
                    _QUARANTINED, params={"limit": limit},
                    param_types={"limit": param_types.INT64}, timeout=READ_TIMEOUT,
                )]
        except Exception as e:
            raise translate(e) from e

    def delete(self, rows: list[OutboxRow]) -> None:
        """Delete published rows; a short retry budget, since the caller tries again later."""
        keys = PrimaryKeys(keys=[[r.shard, r.event_id] for r in rows])
        run_transaction(self._db, lambda tx: tx.delete(OUTBOX_TABLE, keys), attempts=3,
                        seconds=1.0)

    def backlog(self) -> tuple[int, dt.datetime | None]:
        """Pending rows and the commit time of the oldest one."""
        try:
            with self._db.snapshot() as snapshot:
                count, oldest = next(iter(snapshot.execute_sql(
                    "SELECT COUNT(*), MIN(CommitTs) FROM Outbox", timeout=READ_TIMEOUT
                )))
                return int(count), oldest
        except Exception as e:
            raise translate(e) from e

    def live_relays(self) -> int:
        """How many relays announced themselves and have not expired (a read, no lock)."""
        try:
            with self._db.snapshot() as snapshot:
                rows = snapshot.execute_sql(f"SELECT COUNT(*) FROM ({_RELAYS})",
                                            timeout=READ_TIMEOUT)
                return int(next(iter(rows))[0])
        except Exception as e:
            raise translate(e) from e

    def claim(self, owner: str, lease_seconds: float) -> Claim:
        """Renew this owner's leases and take free ones up to a fair share of the shards."""

        owner_ms = {"owner": param_types.STRING, "ms": param_types.INT64}

        def work(tx: Any) -> Claim:
            tx.execute_update(
                _ANNOUNCE,
                params={"owner": owner, "ms": int(lease_seconds * 1000)},
                param_types=owner_ms, timeout=READ_TIMEOUT,
            )
            live: dict[int, str] = {}
            for shard, holder, is_live in tx.execute_sql(_LEASES, timeout=READ_TIMEOUT):
                if is_live:
                    live[shard] = holder
            owners = {row[0] for row in tx.execute_sql(_RELAYS, timeout=READ_TIMEOUT)} | {owner}
            share = math.ceil(OUTBOX_SHARDS / len(owners))
            mine = sorted(s for s, o in live.items() if o == owner)
            free = [s for s in range(OUTBOX_SHARDS) if s not in live]
            keep = (mine + free)[:share]
            shed = [s for s in mine if s not in keep]
            if keep:
                tx.execute_update(
                    _TAKE,
                    params={"owner": owner, "ms": int(lease_seconds * 1000), "shards": keep},
                    param_types={**owner_ms, "shards": _SHARDS},
                )
            if shed:
                self._drop(tx, owner, shed)
            return Claim(frozenset(keep), share)

        claim, _ = run_transaction(self._db, work)
        return claim

    def release(self, owner: str) -> None:
        def work(tx: Any) -> None:
            self._drop(tx, owner, list(range(OUTBOX_SHARDS)))
            tx.execute_update(
                _FORGET, params={"owner": owner}, param_types={"owner": param_types.STRING}
            )

        # A short budget: this runs on the way out, and unreleased leases expire anyway.
        run_transaction(self._db, work, attempts=2, seconds=2.0)

    @staticmethod
    def _drop(tx: Any, owner: str, shards: list[int]) -> None:
        tx.execute_update(
            _DROP,
            params={"owner": owner, "shards": shards},
            param_types={"owner": param_types.STRING, "shards": _SHARDS},
        )


def _range(shard: int, after: Position | None) -> spanner.KeyRange:
    """Every key of ``shard``, or those after ``after`` when it is in that shard."""
    if after is not None and after.shard == shard:
        return spanner.KeyRange(start_open=[shard, after.event_id], end_closed=[shard])
    return spanner.KeyRange(start_closed=[shard], end_closed=[shard])


def _position(values: list[Any]) -> Position | None:
    """The reading position of a row as read, if its key columns can make one."""
    if len(values) < 2:
        return None
    shard, event_id = values[0], values[1]
    if not (isinstance(shard, int) and isinstance(event_id, str)):
        return None
    return Position(shard, event_id)
