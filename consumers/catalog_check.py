"""Check a key catalog against the live Spanner schema, so a mistake stops the process at start
instead of dead-lettering events at run time.

The schema comes from INFORMATION_SCHEMA; each query template is planned by Spanner (PLAN mode:
nothing is read) with its ``@k0``, ``@k1``... parameters typed as its key types.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from google.api_core import exceptions
from google.cloud.spanner_v1 import ExecuteSqlRequest
from redis_spanner.consumers.spanner_rows import _PARAM_TYPES
from redis_spanner.schemas.errors import CatalogError, TransientError
from redis_spanner.schemas.keys import Catalog, KeyTemplate
from redis_spanner.schemas.spanner_errors import translate

_KEY_TYPES = ("STRING", "INT64")
_SAMPLE = {"STRING": "x", "INT64": 0}


@dataclass
class Table:
    """One table of the live schema: its columns' Spanner types and its primary key."""

    columns: dict[str, str] = field(default_factory=dict)
    primary_key: list[str] = field(default_factory=list)


def base_type(spanner_type: str) -> str:
    """``STRING(64)`` -> ``STRING``; ``ARRAY<INT64>`` stays as it is."""
    return spanner_type if spanner_type.startswith("ARRAY") else spanner_type.split("(")[0]


def schema_problems(catalog: Catalog, tables: Mapping[str, Table]) -> list[str]:
    """What in the catalog the schema contradicts, one sentence each (empty: it matches)."""
    problems: list[str] = []
    for template in catalog:
        problems.extend(f"template {template.name!r}: {p}"
                        for p in _template_problems(template, tables))
    return problems


def _template_problems(template: KeyTemplate, tables: Mapping[str, Table]) -> Iterable[str]:
    entity = tables.get(template.entity)
    if entity is None:
        yield f"entity table {template.entity} does not exist"
    else:
        for column, kind in zip(template.key_columns, template.key_types, strict=True):
            actual = entity.columns.get(column)
            if actual is None:
                yield f"key column {template.entity}.{column} does not exist"
            elif base_type(actual) != kind:
                yield f"key column {template.entity}.{column} is {actual}, the template says {kind}"
        if template.query is None:
            if list(template.key_columns) != entity.primary_key:
                yield (f"key_columns {list(template.key_columns)} must be the primary key of "
                       f"{template.entity}, {entity.primary_key}")
            for column in (*template.columns, *filter(None, [template.version_column])):
                if column not in entity.columns:
                    yield f"column {template.entity}.{column} does not exist"
            if template.version_column and (
                    base_type(entity.columns.get(template.version_column, "TIMESTAMP"))
                    != "TIMESTAMP"):
                yield f"version_column {template.version_column} is not a TIMESTAMP"
    for trigger in template.triggers:
        table = tables.get(trigger.table)
        if table is None:
            yield f"trigger table {trigger.table} does not exist"
            continue
        if len(table.primary_key) != trigger.arity:
            yield (f"trigger {trigger.table} says arity {trigger.arity}, its primary key has "
                   f"{len(table.primary_key)} column(s): {table.primary_key}")
            continue
        for column in table.primary_key:
            kind = base_type(table.columns[column])
            if kind not in _KEY_TYPES:
                yield (f"primary key column {trigger.table}.{column} is {kind}: events carry "
                       "STRING or INT64 key parts only, so this table cannot trigger a template")
        for part, expected in zip(trigger.parts, template.key_types, strict=True):
            column = table.primary_key[part]
            kind = base_type(table.columns[column])
            if kind in _KEY_TYPES and kind != expected:
                yield (f"trigger {trigger.table} maps {column} ({kind}) onto a {expected} "
                       "key part")


def read_schema(database: Any, timeout: float = 30.0) -> dict[str, Table]:
    """Every user table of the database with its column types and primary key."""
    tables: dict[str, Table] = {}
    try:
        with database.snapshot(multi_use=True) as snapshot:
            columns = snapshot.execute_sql(
                "SELECT TABLE_NAME, COLUMN_NAME, SPANNER_TYPE FROM INFORMATION_SCHEMA.COLUMNS "
                "WHERE TABLE_SCHEMA = '' ORDER BY TABLE_NAME, ORDINAL_POSITION",
                timeout=timeout)
            for table, column, kind in columns:
                tables.setdefault(table, Table()).columns[column] = kind
            keys = snapshot.execute_sql(
                "SELECT TABLE_NAME, COLUMN_NAME FROM INFORMATION_SCHEMA.INDEX_COLUMNS "
                "WHERE TABLE_SCHEMA = '' AND INDEX_TYPE = 'PRIMARY_KEY' "
                "ORDER BY TABLE_NAME, ORDINAL_POSITION", timeout=timeout)
            for table, column in keys:
                if table in tables:
                    tables[table].primary_key.append(column)
    except exceptions.NotFound as e:
        raise CatalogError(f"Spanner database {getattr(database, 'name', '?')} not found "
                           "(REDIS_SPANNER_INSTANCE, REDIS_SPANNER_DATABASE)") from e
    except Exception as e:
        raise translate(e, "reading the Spanner schema") from e
    return tables


def query_problems(catalog: Catalog, database: Any, timeout: float = 30.0) -> list[str]:
    """Each query template planned by Spanner with its typed key parameters."""
    problems = []
    for template in catalog:
        if template.query is None:
            continue
        params = {f"k{n}": _SAMPLE[kind] for n, kind in enumerate(template.key_types)}
        types = {f"k{n}": _PARAM_TYPES[kind] for n, kind in enumerate(template.key_types)}
        try:
            with database.snapshot() as snapshot:
                list(snapshot.execute_sql(template.query, params=params, param_types=types,
                                          query_mode=ExecuteSqlRequest.QueryMode.PLAN,
                                          timeout=timeout))
        except exceptions.InvalidArgument as e:
            problems.append(f"template {template.name!r}: query does not plan: {e.message}")
        except Exception as e:
            translated = translate(e, "planning a catalog query")
            if isinstance(translated, TransientError):
                raise translated from e
            problems.append(f"template {template.name!r}: query does not plan: {e}")
    return problems


def check_catalog(catalog: Catalog, database: Any, source: str) -> None:
    """Raise one ``CatalogError`` naming ``source`` and every problem; return if it matches."""
    tables = read_schema(database)
    problems = schema_problems(catalog, tables)
    if not problems:
        problems = query_problems(catalog, database)
    if problems:
        raise CatalogError(f"catalog {source} does not match the database: "
                           + "; ".join(problems))
