"""The relay's Spanner adapter: pending outbox rows, their deletion, and shard leases.

Lease times are Spanner's own (``CURRENT_TIMESTAMP()``), so relays on machines with skewed
clocks agree on who holds a shard.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass
from typing import Any

from google.cloud import spanner
from google.cloud.spanner_v1 import param_types
from redis_spanner.producers.outbox import OUTBOX_SHARDS, OUTBOX_TABLE
from redis_spanner.producers.spanner import run_transaction
from redis_spanner.schemas import versions
from redis_spanner.schemas.envelope import attributes_of, encode_fields
from redis_spanner.schemas.spanner_errors import translate


@dataclass(frozen=True, slots=True)
class OutboxRow:
    shard: int
    event_id: str
    data: bytes
    attributes: dict[str, str]
    commit_ts: dt.datetime


@dataclass(frozen=True, slots=True)
class Claim:
    shards: frozenset[int]
    share: int
    """The fair share this relay aimed for: fewer shards means others still hold the rest."""


_PENDING = """
SELECT Shard, EventId, EventType, TableName, KeyJson, Payload, SchemaVersion, CommitTs
FROM Outbox WHERE Shard IN UNNEST(@shards) ORDER BY CommitTs LIMIT @limit
"""
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


def to_row(values: list[Any]) -> OutboxRow:
    shard, event_id, event_type, table, key_json, payload, schema_version, commit_ts = values
    commit = versions.to_rfc3339(versions.from_datetime(commit_ts))
    try:
        key: Any = json.loads(key_json)
    except ValueError:
        key = key_json
    try:
        body: Any = None if payload is None else json.loads(payload)
    except ValueError:
        body = payload
    return OutboxRow(
        shard=shard,
        event_id=event_id,
        data=encode_fields(event_id, event_type, table, key, commit, body, schema_version),
        attributes=attributes_of(event_id, event_type, table, commit, schema_version),
        commit_ts=commit_ts,
    )


class SpannerOutbox:
    def __init__(self, database: Any) -> None:
        self._db = database

    def pending(self, shards: set[int], limit: int) -> list[OutboxRow]:
        try:
            with self._db.snapshot() as snapshot:
                rows = snapshot.execute_sql(
                    _PENDING,
                    params={"shards": sorted(shards), "limit": limit},
                    param_types={"shards": _SHARDS, "limit": param_types.INT64},
                )
                return [to_row(list(r)) for r in rows]
        except Exception as e:
            raise translate(e) from e

    def delete(self, rows: list[OutboxRow]) -> None:
        """Delete published rows; a short retry budget, since the caller tries again later."""
        keys = spanner.KeySet(keys=[[r.shard, r.event_id] for r in rows])
        run_transaction(self._db, lambda tx: tx.delete(OUTBOX_TABLE, keys), attempts=3,
                        seconds=1.0)

    def backlog(self) -> tuple[int, dt.datetime | None]:
        """Pending rows and the commit time of the oldest one."""
        try:
            with self._db.snapshot() as snapshot:
                count, oldest = next(iter(snapshot.execute_sql(
                    "SELECT COUNT(*), MIN(CommitTs) FROM Outbox"
                )))
                return int(count), oldest
        except Exception as e:
            raise translate(e) from e

    def live_relays(self) -> int:
        """How many relays announced themselves and have not expired (a read, no lock)."""
        try:
            with self._db.snapshot() as snapshot:
                rows = snapshot.execute_sql(f"SELECT COUNT(*) FROM ({_RELAYS})")
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
                param_types=owner_ms,
            )
            live: dict[int, str] = {}
            for shard, holder, is_live in tx.execute_sql(_LEASES):
                if is_live:
                    live[shard] = holder
            owners = {row[0] for row in tx.execute_sql(_RELAYS)} | {owner}
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

        run_transaction(self._db, work)

    @staticmethod
    def _drop(tx: Any, owner: str, shards: list[int]) -> None:
        tx.execute_update(
            _DROP,
            params={"owner": owner, "shards": shards},
            param_types={"owner": param_types.STRING, "shards": _SHARDS},
        )
