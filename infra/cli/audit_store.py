"""The audit trail's one touch point with Spanner: the ``AuditLog`` table (schema.sql)."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Callable
from typing import Any

from google.cloud import spanner
from google.cloud.spanner_v1 import param_types
from redis_spanner.infra.cli.audit_trail import AuditRecord, Store
from redis_spanner.schemas.errors import TransientError
from redis_spanner.schemas.settings import Settings
from redis_spanner.schemas.spanner_errors import translate

TABLE = "AuditLog"
COLUMNS = ("AuditId", "RecordedAt", "Principal", "Action", "Details", "Outcome", "Error")
WRITE_SECONDS = 15.0


class SpannerAuditLog:
    def __init__(self, database: Any) -> None:
        self._db = database

    def write(self, record: AuditRecord) -> None:
        """Insert the record at the commit timestamp; retried while Spanner is busy."""
        from redis_spanner.producers.spanner import run_transaction

        row = (record.audit_id, spanner.COMMIT_TIMESTAMP, record.principal, record.action,
               json.dumps(dict(record.details), default=str, sort_keys=True), record.outcome,
               record.error)
        run_transaction(self._db, lambda tx: tx.insert(TABLE, COLUMNS, [row]), attempts=10,
                        seconds=10.0)

    def since(self, since: dt.datetime | None, limit: int) -> list[AuditRecord]:
        """The records from ``since`` on (all when None), oldest first, at most ``limit``
        (the newest ones when there are more)."""
        where, params, types = "", {"limit": limit}, {"limit": param_types.INT64}
        if since is not None:
            where = "WHERE RecordedAt >= @since"
            params["since"] = since  # type: ignore[assignment]
            types["since"] = param_types.TIMESTAMP
        sql = (f"SELECT {', '.join(COLUMNS)} FROM {TABLE} {where} "
               "ORDER BY RecordedAt DESC, AuditId LIMIT @limit")
        try:
            with self._db.snapshot() as snapshot:
                rows = list(snapshot.execute_sql(sql, params=params, param_types=types,
                                                 timeout=30))
        except Exception as e:
            raise translate(e, "spanner read of AuditLog") from e
        return [_record(row) for row in reversed(rows)]


def _record(row: list[Any]) -> AuditRecord:
    audit_id, at, who, action, details, outcome, error = row
    try:
        parsed = json.loads(details)
    except ValueError:
        parsed = {"unparsed": details}
    return AuditRecord(audit_id, who, action, parsed if isinstance(parsed, dict) else
                       {"value": parsed}, outcome, error, at)


def store_in_spanner(settings: Settings) -> Store:
    """Write records to the settings' database, each within ``WRITE_SECONDS``."""
    def store(record: AuditRecord) -> None:
        from redis_spanner.infra.cli.reachability import SPANNER, require_reachable
        from redis_spanner.producers.spanner import open_database

        require_reachable(settings, SPANNER)
        _within(lambda: SpannerAuditLog(open_database(settings)).write(record), WRITE_SECONDS,
                f"writing to {TABLE} in database {settings.database}")

    return store


def _within(call: Callable[[], None], seconds: float, what: str) -> None:
    failed: list[BaseException] = []
    done = threading.Event()

    def run() -> None:
        try:
            call()
        except BaseException as e:
            failed.append(e)
        finally:
            done.set()

    threading.Thread(target=run, daemon=True).start()
    if not done.wait(seconds):
        raise TransientError(f"{what}: no answer within {seconds:g}s")
    if failed:
        raise translate(failed[0], what) from failed[0]
