"""The consumers' one touch point with google-cloud-spanner: read the values behind cache keys.

All keys of one call are read in one strong multi-use snapshot, so every value carries the same
read timestamp, which becomes its version in Redis. Row templates are read with one key-set read
per template; derived (query) templates run their query once per key, in the same snapshot.

Values come back as the client decodes them, with two corrections, by column type: BYTES as the
raw bytes (the client hands over their base64 text), and JSON as the plain JSON tree it holds
(the client's ``JsonObject`` is a dict whatever it holds: an array or a scalar included).
"""

from __future__ import annotations

import base64
import json
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from google.cloud import spanner
from google.cloud.spanner_v1 import JsonObject, TypeCode, param_types
from redis_spanner.schemas import versions
from redis_spanner.schemas.errors import PermanentError, TransientError
from redis_spanner.schemas.keys import CacheKey, KeyTemplate
from redis_spanner.schemas.settings import Settings
from redis_spanner.schemas.spanner_errors import translate
from redis_spanner.schemas.spanner_keys import PrimaryKeys

_PARAM_TYPES = {"STRING": param_types.STRING, "INT64": param_types.INT64}


def open_database(settings: Settings) -> Any:
    client = spanner.Client(project=settings.project)
    return client.instance(settings.instance).database(
        settings.database, database_role=settings.spanner_database_role)


class SpannerRows:
    def __init__(self, database: Any) -> None:
        self._db = database

    def read(self, keys: Sequence[CacheKey]) -> tuple[dict[str, Any], int]:
        """Values by Redis key (``None`` for a missing row) and the snapshot's version."""
        try:
            return self._read(keys)
        except Exception as e:
            raise translate(e, "spanner read") from e

    def read_versions(self, keys: Sequence[CacheKey]) -> tuple[dict[str, int | None], int]:
        """Version-only read of row templates with a ``version_column``: each key's last commit
        timestamp (``None`` for a missing row) and the snapshot's version."""
        try:
            return self._read_versions(keys)
        except Exception as e:
            raise translate(e, "spanner read") from e

    def _read_versions(self, keys: Sequence[CacheKey]) -> tuple[dict[str, int | None], int]:
        found: dict[str, int | None] = {k.key: None for k in keys}
        by_template: dict[KeyTemplate, list[CacheKey]] = defaultdict(list)
        for key in keys:
            if key.template.version_column is None:
                raise ValueError(f"template {key.template.name!r} has no version_column")
            by_template[key.template].append(key)
        read_ts = None
        with self._db.snapshot(multi_use=True) as snapshot:
            for template, group in by_template.items():
                by_parts = {k.parts: k.key for k in group}
                result = snapshot.read(
                    template.entity,
                    columns=[*template.key_columns, template.version_column],
                    keyset=PrimaryKeys(keys=[list(p) for p in by_parts]),
                )
                width = len(template.key_columns)
                for row in result:
                    redis_key = by_parts.get(tuple(row[:width]))
                    if redis_key is not None and row[width] is not None:
                        found[redis_key] = versions.from_datetime(row[width])
                read_ts = read_ts or _read_timestamp(result)
        if read_ts is None:
            raise TransientError("spanner returned no read timestamp")
        return found, versions.from_datetime(read_ts)

    def _read(self, keys: Sequence[CacheKey]) -> tuple[dict[str, Any], int]:
        values: dict[str, Any] = {}
        by_template: dict[KeyTemplate, list[CacheKey]] = defaultdict(list)
        for key in keys:
            by_template[key.template].append(key)
        read_ts = None
        with self._db.snapshot(multi_use=True) as snapshot:
            for template, group in by_template.items():
                for result, found in self._template(snapshot, template, group):
                    values.update(found)
                    if read_ts is None:
                        read_ts = _read_timestamp(result)
            if read_ts is None:  # nothing to read: still give the caller a version
                result = snapshot.execute_sql("SELECT 1")
                list(result)
                read_ts = _read_timestamp(result)
        if read_ts is None:
            raise TransientError("spanner returned no read timestamp")
        return values, versions.from_datetime(read_ts)

    def _template(
        self, snapshot: Any, template: KeyTemplate, keys: list[CacheKey]
    ) -> list[tuple[Any, dict[str, Any]]]:
        if template.query is None:
            return [_read_rows(snapshot, template, keys)]
        return [_run_query(snapshot, template, key) for key in keys]


def _read_rows(
    snapshot: Any, template: KeyTemplate, keys: list[CacheKey]
) -> tuple[Any, dict[str, Any]]:
    columns = [*template.key_columns, *template.columns]
    result = snapshot.read(
        template.entity, columns=columns, keyset=PrimaryKeys(keys=[list(k.parts) for k in keys])
    )
    by_parts = {k.parts: k.key for k in keys}
    found: dict[str, Any] = dict.fromkeys(by_parts.values())
    width = len(template.key_columns)
    rows = list(result)
    if rows:
        convert = _converters(result.fields[width:])
        for row in rows:
            key = by_parts.get(tuple(row[:width]))
            if key is not None:
                found[key] = {name: c(cell) for name, c, cell
                              in zip(template.columns, convert, row[width:], strict=True)}
    return result, found


def _run_query(snapshot: Any, template: KeyTemplate, key: CacheKey) -> tuple[Any, dict[str, Any]]:
    params = {f"k{i}": part for i, part in enumerate(key.parts)}
    types = {f"k{i}": _PARAM_TYPES[t] for i, t in enumerate(template.key_types)}
    result = snapshot.execute_sql(template.query, params=params, param_types=types)
    rows = list(result)
    if not rows:
        return result, {key.key: []}
    names = [field.name for field in result.fields]
    convert = _converters(result.fields)
    return result, {key.key: [
        {name: c(cell) for name, c, cell in zip(names, convert, row, strict=True)}
        for row in rows]}


Converter = Callable[[Any], Any]


def _converters(fields: Any) -> list[Converter]:
    return [_converter(field.type_) for field in fields]


def _converter(kind: Any) -> Converter:
    """How to correct a cell of a Spanner type (see the module docstring); NULL stays None."""
    code = kind.code
    if code == TypeCode.BYTES:
        return lambda cell: None if cell is None else base64.b64decode(cell)
    if code == TypeCode.JSON:
        return _json_tree
    if code == TypeCode.ARRAY:
        item = _converter(kind.array_element_type)
        return lambda cell: None if cell is None else [item(c) for c in cell]
    if code == TypeCode.STRUCT:
        parts = _converters(kind.struct_type.fields)
        return lambda cell: None if cell is None else [
            c(v) for c, v in zip(parts, cell, strict=True)]
    return lambda cell: cell


def _json_tree(cell: Any) -> Any:
    if not isinstance(cell, JsonObject):
        return cell
    text = cell.serialize()
    return None if text is None else json.loads(text)


def _read_timestamp(result: Any) -> Any:
    """google-cloud-spanner exposes the read timestamp on the first result's metadata."""
    metadata = getattr(result, "metadata", None)
    if metadata is None or not metadata.transaction:
        return None
    return metadata.transaction.read_timestamp or None


_PRIMARY_KEY = """
SELECT c.COLUMN_NAME, c.SPANNER_TYPE FROM INFORMATION_SCHEMA.INDEX_COLUMNS AS i
JOIN INFORMATION_SCHEMA.COLUMNS AS c
  ON c.TABLE_NAME = i.TABLE_NAME AND c.COLUMN_NAME = i.COLUMN_NAME
  AND c.TABLE_SCHEMA = i.TABLE_SCHEMA
WHERE i.TABLE_SCHEMA = '' AND i.TABLE_NAME = @table AND i.INDEX_NAME = 'PRIMARY_KEY'
ORDER BY i.ORDINAL_POSITION
"""


class TableWalker:
    """Streams a table's primary keys in key order, for backfills."""

    def __init__(self, database: Any) -> None:
        self._db = database

    def primary_key(self, table: str) -> list[tuple[str, str]]:
        with self._db.snapshot() as snapshot:
            rows = list(snapshot.execute_sql(
                _PRIMARY_KEY, params={"table": table}, param_types={"table": param_types.STRING}
            ))
        if not rows:
            raise PermanentError(f"table {table!r} not found in the database")
        return [(name, kind) for name, kind in rows]

    def count(self, table: str, prefix: str | None = None) -> int:
        """How many rows a walk will visit (for progress; not part of the walk's snapshot)."""
        where, params, types = self._filter(table, prefix)
        with self._db.snapshot() as snapshot:
            rows = snapshot.execute_sql(
                f"SELECT COUNT(*) FROM `{table}`{where}", params=params, param_types=types
            )
            return int(next(iter(rows))[0])

    def walk(
        self, table: str, prefix: str | None = None, batch: int = 200
    ) -> Iterator[list[tuple[Any, ...]]]:
        """The table's primary keys in key order, in batches, streamed from one snapshot."""
        names = ", ".join(f"`{name}`" for name, _ in self.primary_key(table))
        where, params, types = self._filter(table, prefix)
        with self._db.snapshot() as snapshot:
            result = snapshot.execute_sql(
                f"SELECT {names} FROM `{table}`{where} ORDER BY {names}",
                params=params, param_types=types,
            )
            chunk: list[tuple[Any, ...]] = []
            for row in result:
                chunk.append(tuple(row))
                if len(chunk) >= batch:
                    yield chunk
                    chunk = []
            if chunk:
                yield chunk

    def _filter(
        self, table: str, prefix: str | None
    ) -> tuple[str, dict[str, Any], dict[str, Any]]:
        if prefix is None:
            return "", {}, {}
        first, kind = self.primary_key(table)[0]
        if not kind.startswith("STRING"):
            raise PermanentError(
                f"a key prefix needs a STRING first key column; {table}.{first} is {kind}"
            )
        return (f" WHERE STARTS_WITH(`{first}`, @prefix)", {"prefix": prefix},
                {"prefix": param_types.STRING})
