"""Key templates declared in a TOML file, so the stock container serves any schema.

    namespace = "shop"            # optional: must equal REDIS_SPANNER_NAMESPACE when given

    [[template]]
    name = "order"
    entity = "Orders"
    key_columns = ["CustomerId", "OrderId"]
    key_types = ["INT64", "STRING"]       # optional: all STRING when absent
    columns = ["Status", "Total"]          # a row template ...
    version_column = "UpdatedAt"           # optional, row templates only
    action = "invalidate"                  # or "rewarm"; optional

    [[template]]
    name = "order-lines"
    entity = "Orders"
    key_columns = ["CustomerId", "OrderId"]
    key_types = ["INT64", "STRING"]
    query = "SELECT LineNo, Sku FROM OrderLines WHERE CustomerId = @k0 AND OrderId = @k1"
    action = "rewarm"
    triggers = [{ table = "OrderLines", arity = 3, parts = [0, 1] },
                { table = "Orders", arity = 2, parts = [0, 1] }]

A template without ``triggers`` is reached by events on its entity, whose keys are its key
columns. Every mistake is a ``CatalogError`` naming the file and the template; the catalog is
checked against the live schema by ``redis_spanner.consumers.catalog_check``.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from redis_spanner.schemas.errors import CatalogError
from redis_spanner.schemas.keys import Action, Catalog, KeyTemplate, Trigger

_TEMPLATE_KEYS = {"name", "entity", "key_columns", "key_types", "columns", "query",
                  "version_column", "action", "triggers"}
_TRIGGER_KEYS = {"table", "arity", "parts"}


def is_catalog_file(spec: str) -> bool:
    """A spec naming a file (``.toml``, or any existing path) rather than ``module:NAME``."""
    return spec.endswith(".toml") or Path(spec).is_file()


def load_catalog_file(path: Path | str, namespace: str) -> Catalog:
    """Read and check a TOML catalog; ``CatalogError`` names the file and what is wrong."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise CatalogError(f"catalog {path}: cannot read it: {e.strerror or e}") from e
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise CatalogError(f"catalog {path}: not TOML: {e}") from e
    try:
        return parse_catalog(data, namespace)
    except (CatalogError, ValueError) as e:
        raise CatalogError(f"catalog {path}: {e}") from e


def parse_catalog(data: Mapping[str, Any], namespace: str) -> Catalog:
    unknown = sorted(set(data) - {"namespace", "template"})
    if unknown:
        raise CatalogError(f"unknown top-level key(s) {', '.join(unknown)} "
                           "(expected 'namespace' and [[template]] tables)")
    declared = data.get("namespace", namespace)
    if declared != namespace:
        raise CatalogError(f"declares namespace {declared!r} but REDIS_SPANNER_NAMESPACE is "
                           f"{namespace!r}")
    tables = data.get("template")
    if not isinstance(tables, list) or not tables:
        raise CatalogError("declares no [[template]]")
    return Catalog(namespace, tuple(_template(n, t) for n, t in enumerate(tables, start=1)))


def _template(number: int, table: Any) -> KeyTemplate:
    where = f"template #{number}"
    if not isinstance(table, dict):
        raise CatalogError(f"{where} must be a table")
    if isinstance(table.get("name"), str):
        where = f"template {table['name']!r}"
    unknown = sorted(set(table) - _TEMPLATE_KEYS)
    if unknown:
        raise CatalogError(f"{where}: unknown key(s) {', '.join(unknown)}")
    name = _required(table, "name", str, where)
    entity = _required(table, "entity", str, where)
    key_columns = _strings(table, "key_columns", where, required=True)
    key_types = _strings(table, "key_types", where)
    columns = _strings(table, "columns", where)
    query = _optional(table, "query", str, where)
    version_column = _optional(table, "version_column", str, where)
    action_name = _optional(table, "action", str, where) or Action.INVALIDATE.value
    try:
        action = Action(action_name)
    except ValueError:
        raise CatalogError(f"{where}: action must be 'invalidate' or 'rewarm', "
                           f"not {action_name!r}") from None
    raw_triggers = table.get("triggers")
    if raw_triggers is None:
        triggers: tuple[Trigger, ...] = (
            Trigger(entity, arity=len(key_columns), parts=tuple(range(len(key_columns)))),)
    elif isinstance(raw_triggers, list) and raw_triggers:
        triggers = tuple(_trigger(where, t) for t in raw_triggers)
    else:
        raise CatalogError(f"{where}: triggers must be a non-empty array of tables")
    try:
        return KeyTemplate(name=name, entity=entity, key_columns=key_columns,
                           triggers=triggers, action=action, columns=columns, query=query,
                           key_types=key_types, version_column=version_column)
    except ValueError as e:
        raise CatalogError(str(e)) from None


def _trigger(where: str, raw: Any) -> Trigger:
    if not isinstance(raw, dict):
        raise CatalogError(f"{where}: each trigger must be a table {{table, arity, parts}}")
    unknown = sorted(set(raw) - _TRIGGER_KEYS)
    if unknown:
        raise CatalogError(f"{where}: unknown trigger key(s) {', '.join(unknown)}")
    table = _required(raw, "table", str, where)
    arity = _required(raw, "arity", int, f"{where}, trigger {table}")
    parts = raw.get("parts")
    if (not isinstance(parts, list) or not all(type(p) is int for p in parts)
            or not all(0 <= p < arity for p in parts)):
        raise CatalogError(f"{where}, trigger {table}: parts must be indexes into its "
                           f"{arity} key part(s)")
    if arity < 1:
        raise CatalogError(f"{where}, trigger {table}: arity must be at least 1")
    return Trigger(table, arity=arity, parts=tuple(parts))


def _required(table: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    value = _optional(table, key, kind, where)
    if value is None:
        raise CatalogError(f"{where}: {key} is missing")
    return value


def _optional(table: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    value = table.get(key)
    # bool is an int in Python: refuse `true` where a number is meant.
    if value is not None and type(value) is not kind:
        raise CatalogError(f"{where}: {key} must be a {kind.__name__}, not {value!r}")
    return value


def _strings(table: Mapping[str, Any], key: str, where: str,
             required: bool = False) -> tuple[str, ...]:
    value = table.get(key)
    if value is None and not required:
        return ()
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise CatalogError(f"{where}: {key} must be a non-empty array of strings")
    return tuple(value)
