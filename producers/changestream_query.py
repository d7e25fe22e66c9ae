"""The change-stream reader's Spanner adapter: the ``READ_<stream>`` query and what the reader
needs to know of the schema (the stream, its retention, each table's primary-key order).

Google-cloud-spanner runs the table-valued function as a streaming query in a single-use
snapshot; records arrive as the partition produces them, a heartbeat at least every
``HEARTBEAT_MS``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator, Mapping
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud.spanner_v1 import TypeCode, param_types
from redis_spanner.producers.changestream import Record, records
from redis_spanner.schemas.errors import CheckpointExpired, PermanentError
from redis_spanner.schemas.spanner_errors import translate

HEARTBEAT_MS = 1000
DEFAULT_RETENTION = dt.timedelta(days=1)
"""Spanner's retention when the stream sets no ``retention_period``."""

_IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,127}$")
_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_STREAM = """
SELECT COUNT(*) FROM INFORMATION_SCHEMA.CHANGE_STREAMS
WHERE CHANGE_STREAM_CATALOG = '' AND CHANGE_STREAM_SCHEMA = '' AND CHANGE_STREAM_NAME = @name
"""
_RETENTION = """
SELECT OPTION_VALUE FROM INFORMATION_SCHEMA.CHANGE_STREAM_OPTIONS
WHERE CHANGE_STREAM_NAME = @name AND OPTION_NAME = 'retention_period'
"""
_KEY_ORDER = """
SELECT TABLE_NAME, COLUMN_NAME FROM INFORMATION_SCHEMA.INDEX_COLUMNS
WHERE INDEX_TYPE = 'PRIMARY_KEY' AND TABLE_SCHEMA = '' ORDER BY TABLE_NAME, ORDINAL_POSITION
"""


def parse_duration(text: str) -> dt.timedelta:
    """A retention period as Spanner writes it: ``36h``, ``7d``, ``1440m``, ``86400s``."""
    match = _DURATION.fullmatch(text.strip().strip("'\"").lower())
    if match is None:
        raise ValueError(f"not a retention period: {text[:40]!r}")
    return dt.timedelta(seconds=int(match[1]) * _UNITS[match[2]])


class ChangeStreamQuery:
    def __init__(self, database: Any, stream: str) -> None:
        if not _IDENTIFIER.fullmatch(stream):
            raise PermanentError(f"change stream name {stream[:64]!r} is not a Spanner "
                                 "identifier (REDIS_SPANNER_CHANGE_STREAM)")
        self._db = database
        self.stream = stream
        self._sql = (f"SELECT ChangeRecord FROM READ_{stream}(start_timestamp => @start, "
                     "end_timestamp => @end, partition_token => @token, "
                     f"heartbeat_milliseconds => {HEARTBEAT_MS})")

    def check(self) -> None:
        """Raise ``PermanentError`` naming the stream if the database has no such stream."""
        params = {"name": self.stream}
        types = {"name": param_types.STRING}
        found = self._single(_STREAM, params, types)
        if not found or not found[0]:
            raise PermanentError(
                f"the database has no change stream {self.stream} (REDIS_SPANNER_CHANGE_STREAM):"
                " create it with 'REDIS_SPANNER_SOURCE=changestream redis-spanner provision'")

    def retention(self) -> dt.timedelta:
        found = self._single(_RETENTION, {"name": self.stream}, {"name": param_types.STRING})
        return DEFAULT_RETENTION if found is None else parse_duration(str(found[0]))

    def key_order(self) -> dict[str, list[str]]:
        order: dict[str, list[str]] = {}
        for table, column in self._rows(_KEY_ORDER, {}, {}):
            order.setdefault(table, []).append(column)
        return order

    def read(self, token: str | None, start: dt.datetime, end: dt.datetime) -> Iterator[Record]:
        """The records of one partition (the initial query when ``token`` is None) from
        ``start`` (inclusive) to ``end``, as they arrive."""
        params = {"start": start, "end": end, "token": token}
        types = {"start": param_types.TIMESTAMP, "end": param_types.TIMESTAMP,
                 "token": param_types.STRING}
        try:
            with self._db.snapshot() as snapshot:
                results = snapshot.execute_sql(self._sql, params=params, param_types=types)
                for row in results:
                    value = _plain(row[0], results.fields[0].type_)
                    yield from records(value)
        except gexc.OutOfRange as e:
            raise CheckpointExpired(
                f"change stream {self.stream}: Spanner no longer holds changes from "
                f"{start.isoformat()} (its retention period has passed): {e.message}") from e
        except Exception as e:
            raise translate(e, f"change stream {self.stream}") from e

    def _single(self, sql: str, params: Mapping[str, Any], types: Mapping[str, Any]
                ) -> list[Any] | None:
        rows = self._rows(sql, params, types)
        return rows[0] if rows else None

    def _rows(self, sql: str, params: Mapping[str, Any], types: Mapping[str, Any]
              ) -> list[list[Any]]:
        try:
            with self._db.snapshot() as snapshot:
                return [list(r) for r in snapshot.execute_sql(
                    sql, params=dict(params), param_types=dict(types))]
        except Exception as e:
            raise translate(e) from e


def _plain(value: Any, type_: Any) -> Any:
    """A value with its structs as dicts of their field names (the client gives lists)."""
    if value is None:
        return None
    if type_.code == TypeCode.ARRAY:
        return [_plain(v, type_.array_element_type) for v in value]
    if type_.code == TypeCode.STRUCT:
        fields = type_.struct_type.fields
        return {f.name: _plain(v, f.type_) for f, v in zip(fields, value, strict=True)}
    return value
