"""``redis-spanner catalog``: check the key catalog against the live schema, show the keys of a row.

``require_catalog`` is the same check run at the start of ``worker``, ``serve``, ``verify`` and
``rewarm``: a catalog that does not match the database stops them with one line and exit 2.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from redis_spanner.schemas.catalog import load_catalog
from redis_spanner.schemas.errors import CatalogError, KeyRefused, TransientError
from redis_spanner.schemas.events import EventType
from redis_spanner.schemas.keys import Catalog
from redis_spanner.schemas.settings import Settings, get_settings

catalog_app = typer.Typer(help="Check the key catalog; show the cache keys of a row.",
                          no_args_is_help=True)

CatalogSpec = Annotated[str | None, typer.Option(
    "--catalog", help="A .toml file or module:NAME (default: REDIS_SPANNER_CATALOG).")]


def _spanner_address(settings: Settings) -> str:
    return settings.spanner_emulator_host or "spanner.googleapis.com"


def _checked(settings: Settings, spec: str) -> Catalog:
    from redis_spanner.consumers.catalog_check import check_catalog
    from redis_spanner.consumers.spanner_rows import open_database

    catalog = load_catalog(spec, settings.namespace)
    check_catalog(catalog, open_database(settings), spec)
    return catalog


def require_catalog(settings: Settings, command: str) -> Catalog:
    """The settings' catalog, checked against the database; else one line and exit 2 (a
    mismatch or bad file) or 1 (Spanner unreachable)."""
    try:
        return _checked(settings, settings.catalog)
    except CatalogError as e:
        typer.echo(f"redis-spanner {command}: {e} (REDIS_SPANNER_CATALOG)", err=True)
        raise typer.Exit(2) from None
    except TransientError as e:
        typer.echo(f"redis-spanner {command}: cannot check the catalog, Spanner at "
                   f"{_spanner_address(settings)} did not answer: {e}", err=True)
        raise typer.Exit(1) from None


@catalog_app.command()
def check(spec: CatalogSpec = None) -> None:
    """Check the catalog against the live Spanner schema (exit 1: mismatch, 2: unreadable).

    Tables, key columns, column names and types, trigger arities, and that each query plans."""
    settings = get_settings()
    spec = spec or settings.catalog
    try:
        catalog = load_catalog(spec, settings.namespace)
    except CatalogError as e:
        typer.echo(f"redis-spanner catalog check: {e}", err=True)
        raise typer.Exit(2) from None
    try:
        _checked(settings, spec)
    except CatalogError as e:
        typer.echo(f"redis-spanner catalog check: {e}", err=True)
        raise typer.Exit(1) from None
    except TransientError as e:
        typer.echo(f"redis-spanner catalog check: Spanner at {_spanner_address(settings)} did "
                   f"not answer: {e}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"catalog {spec}: {len(list(catalog))} template(s) match database "
               f"{settings.database}")


@catalog_app.command()
def keys(
    table: Annotated[str, typer.Argument(help="The table an event names.")],
    key: Annotated[list[str], typer.Argument(help="The row's primary-key parts, in order.")],
    event_type: Annotated[str, typer.Option(
        "--type", help="row.changed, row.deleted or row.rewarm.")] = EventType.ROW_CHANGED.value,
    spec: CatalogSpec = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array as the last line.")
                       ] = False,
) -> None:
    """Print the cache keys an event on this row addresses, with what it asks of each."""
    settings = get_settings()
    spec = spec or settings.catalog
    try:
        kind = EventType(event_type)
    except ValueError:
        typer.echo(f"redis-spanner catalog keys: --type must be one of "
                   f"{', '.join(t.value for t in EventType)}", err=True)
        raise typer.Exit(2) from None
    try:
        catalog = load_catalog(spec, settings.namespace)
        targets = catalog.route(table, typed_key(catalog, table, key), kind)
    except (CatalogError, KeyRefused) as e:
        typer.echo(f"redis-spanner catalog keys: {e}", err=True)
        raise typer.Exit(2) from None
    rows = [{"key": t.cache_key.key, "template": t.cache_key.template.name,
             "action": t.action.value} for t in targets]
    if as_json:
        typer.echo(json.dumps(rows))
        return
    for row in rows:
        typer.echo(f"{row['key']}\t{row['template']}\t{row['action']}")


def typed_key(catalog: Catalog, table: str, parts: list[str]) -> tuple[str | int, ...]:
    """Command-line parts as the event would carry them: INT64 where a template reached from
    ``table`` says so, else an integer if it reads as one, else a string."""
    kinds: dict[int, str] = {}
    for template in catalog:
        for trigger in template.triggers:
            if trigger.table == table:
                for index, declared in zip(trigger.parts, template.key_types, strict=True):
                    kinds.setdefault(index, declared)
    typed: list[str | int] = []
    for index, part in enumerate(parts):
        kind = kinds.get(index)
        if kind == "STRING":
            typed.append(part)
            continue
        try:
            typed.append(int(part))
        except ValueError:
            if kind == "INT64":
                raise KeyRefused(f"key part {index} of {table} must be an integer, "
                                 f"not {part!r}") from None
            typed.append(part)
    return tuple(typed)
