"""Change-stream partitions in Spanner: their leases, checkpoints and parentage.

Every change-stream relay shares these rows (infra/spanner/changestream.sql). Lease times are
Spanner's own (``CURRENT_TIMESTAMP()``), so relays with skewed clocks agree on who reads what.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from google.cloud.spanner_v1 import param_types
from redis_spanner.producers.changestream import ChildPartition
from redis_spanner.producers.spanner import run_transaction
from redis_spanner.schemas.spanner_errors import translate

ROOT = ""
"""The token stored for the initial query, which is run with ``partition_token => NULL``."""


@dataclass(frozen=True, slots=True)
class Partition:
    token: str
    checkpoint: dt.datetime

    @property
    def query_token(self) -> str | None:
        return None if self.token == ROOT else self.token


_ROOT = """
INSERT OR IGNORE INTO ChangeStreamPartition
  (StreamName, Token, Parents, StartTs, Checkpoint, Finished)
VALUES (@stream, '', [], CURRENT_TIMESTAMP(), CURRENT_TIMESTAMP(), FALSE)
"""
_CHILD = """
INSERT OR IGNORE INTO ChangeStreamPartition
  (StreamName, Token, Parents, StartTs, Checkpoint, Finished)
VALUES (@stream, @token, @parents, @start, @start, FALSE)
"""
_ANNOUNCE = """
INSERT OR UPDATE INTO ChangeStreamReader (StreamName, Owner, ExpiresAt)
VALUES (@stream, @owner, TIMESTAMP_ADD(CURRENT_TIMESTAMP(), INTERVAL @ms MILLISECOND))
"""
_READERS = """
SELECT Owner FROM ChangeStreamReader
WHERE StreamName = @stream AND ExpiresAt > CURRENT_TIMESTAMP()
"""
_PARTITIONS = """
SELECT Token, Parents, Checkpoint, Finished, Owner,
       IFNULL(LeaseExpiresAt > CURRENT_TIMESTAMP(), FALSE) AS Live
FROM ChangeStreamPartition WHERE StreamName = @stream
"""
_TAKE = """
UPDATE ChangeStreamPartition
SET Owner = @owner, LeaseExpiresAt = TIMESTAMP_ADD(CURRENT_TIMESTAMP(), INTERVAL @ms MILLISECOND)
WHERE StreamName = @stream AND Token IN UNNEST(@tokens)
"""
_DROP = """
UPDATE ChangeStreamPartition SET Owner = NULL, LeaseExpiresAt = NULL
WHERE StreamName = @stream AND Owner = @owner AND Token IN UNNEST(@tokens)
"""
_CHECKPOINT = """
UPDATE ChangeStreamPartition SET Checkpoint = @ts, Finished = @finished
WHERE StreamName = @stream AND Token = @token AND Owner = @owner AND Checkpoint <= @ts
  AND LeaseExpiresAt > CURRENT_TIMESTAMP()
"""
_FORGET = """
DELETE FROM ChangeStreamReader
WHERE StreamName = @stream
  AND (Owner = @owner OR ExpiresAt < TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 1 HOUR))
"""
_RELEASE = """
UPDATE ChangeStreamPartition SET Owner = NULL, LeaseExpiresAt = NULL
WHERE StreamName = @stream AND Owner = @owner
"""
_FORGET_FINISHED = """
DELETE FROM ChangeStreamPartition
WHERE StreamName = @stream AND Finished AND Token != ''
  AND Checkpoint < TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 1 DAY)
"""
"""Finished partitions are kept a day for inspection. A parent that is gone counts as finished,
so a merged child whose parent was forgotten is still read (after its other parents)."""
_OLDEST = """
SELECT MIN(Checkpoint) FROM ChangeStreamPartition WHERE StreamName = @stream AND NOT Finished
"""
_TOKENS = param_types.Array(param_types.STRING)
_TYPES = {"stream": param_types.STRING, "owner": param_types.STRING, "ms": param_types.INT64,
          "tokens": _TOKENS, "token": param_types.STRING, "parents": _TOKENS,
          "start": param_types.TIMESTAMP, "ts": param_types.TIMESTAMP,
          "finished": param_types.BOOL}


class SpannerPartitions:
    def __init__(self, database: Any, stream: str) -> None:
        self._db = database
        self._stream = stream

    def ensure_root(self) -> None:
        """Start the stream now unless some relay already started it (then: its checkpoints)."""
        self._write(_ROOT)

    def claim(self, owner: str, lease_seconds: float) -> list[Partition]:
        """Renew this owner's leases and take free, ready partitions up to a fair share.

        A partition is ready once every parent it names has finished: the children of a
        merge wait for all their parents, so no change is read out of order."""
        ms = int(lease_seconds * 1000)

        def work(tx: Any) -> list[Partition]:
            self._update(tx, _ANNOUNCE, owner=owner, ms=ms)
            self._update(tx, _FORGET_FINISHED)
            readers = {row[0] for row in self._query(tx, _READERS)} | {owner}
            rows = list(self._query(tx, _PARTITIONS))
            finished = {row[0] for row in rows if row[3]}
            known = {row[0] for row in rows}
            ready = [row for row in rows if not row[3]
                     and all(p in finished or p not in known for p in row[1] or ())]
            share = math.ceil(len(ready) / len(readers))
            mine = [row for row in ready if row[4] == owner and row[5]]
            free = [row for row in ready if not row[5]]
            keep = (mine + free)[:share]
            shed = [row[0] for row in mine if row not in keep]
            if keep:
                self._update(tx, _TAKE, owner=owner, ms=ms, tokens=[row[0] for row in keep])
            if shed:
                self._update(tx, _DROP, owner=owner, tokens=shed)
            return [Partition(row[0], row[2]) for row in keep]

        claimed, _ = run_transaction(self._db, work)
        return claimed

    def add_children(self, children: Sequence[ChildPartition], start: dt.datetime) -> None:
        """Record child partitions; each parent of a merge reports the same child once."""
        def work(tx: Any) -> None:
            for child in children:
                self._update(tx, _CHILD, token=child.token, parents=list(child.parents),
                             start=start)

        run_transaction(self._db, work)

    def checkpoint(self, owner: str, token: str, ts: dt.datetime, *, finished: bool = False
                   ) -> bool:
        """Move the partition's checkpoint forward; False when this owner lost its lease."""
        def work(tx: Any) -> int:
            return int(self._update(tx, _CHECKPOINT, owner=owner, token=token, ts=ts,
                                    finished=finished))

        updated, _ = run_transaction(self._db, work)
        return updated == 1

    def release(self, owner: str) -> None:
        def work(tx: Any) -> None:
            self._update(tx, _RELEASE, owner=owner)
            self._update(tx, _FORGET, owner=owner)

        run_transaction(self._db, work)

    def oldest_checkpoint(self) -> dt.datetime | None:
        """The checkpoint of the partition furthest behind (the stream's lag)."""
        try:
            with self._db.snapshot() as snapshot:
                rows = snapshot.execute_sql(_OLDEST, params={"stream": self._stream},
                                            param_types={"stream": param_types.STRING})
                value: dt.datetime | None = next(iter(rows))[0]
                return value
        except Exception as e:
            raise translate(e) from e

    def _write(self, sql: str, **params: Any) -> None:
        run_transaction(self._db, lambda tx: self._update(tx, sql, **params))

    def _update(self, tx: Any, sql: str, **params: Any) -> int:
        params["stream"] = self._stream
        return int(tx.execute_update(sql, params=params,
                                     param_types={k: _TYPES[k] for k in params}))

    def _query(self, tx: Any, sql: str) -> Any:
        return tx.execute_sql(sql, params={"stream": self._stream},
                              param_types={"stream": param_types.STRING})
