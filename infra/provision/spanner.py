"""Spanner provisioning: the instance and the database with every statement of schema.sql (and
of a service's own DDL files), created or converged from the declaration. And their deletion.

With ``create=False`` the instance and database must exist already (a service's own database):
only the statements whose objects are missing are applied; nothing else is touched. With
``REDIS_SPANNER_SOURCE=changestream`` it also creates the change stream over the catalog's
tables and the change-stream relay's tables (spanner/changestream.sql)."""

from __future__ import annotations

import concurrent.futures
import re
from collections.abc import Iterable, Sequence
from contextlib import closing, suppress
from pathlib import Path
from typing import Any

from google.api_core import exceptions
from google.cloud import spanner
from redis_spanner.infra.provision.declaration import Declaration
from redis_spanner.infra.provision.report import (
    BOUNDED,
    Action,
    ProvisionError,
    ProvisionReport,
    ResourceResult,
    step,
)
from redis_spanner.infra.spanner.ddl import (
    CHANGESTREAM_PATH,
    DdlStatement,
    created_object,
    load_schema,
    load_schemas,
    missing_statements,
    parse_ddl,
)
from redis_spanner.schemas.catalog import load_catalog
from redis_spanner.schemas.settings import Settings


def provision_spanner(
    settings: Settings,
    declaration: Declaration,
    report: ProvisionReport,
    *,
    emulated: bool,
    timeout: float,
    ddl: Sequence[Path | str] = (),
    create: bool = True,
) -> None:
    """Create the instance and database if missing (unless ``create`` is off) and apply the
    statements of schema.sql and of ``ddl`` the database lacks; capacity is never changed, a
    difference is a warning."""
    policy = declaration.spanner
    config = policy.emulator_instance_config if emulated else policy.instance_config
    statements = load_schemas([declaration.ddl_path, *ddl])
    if settings.source == "changestream":
        statements += changestream_statements(settings)
    with closing(spanner.Client(project=settings.project, disable_builtin_metrics=True)) as client:
        instance = client.instance(
            settings.instance,
            configuration_name=f"projects/{settings.project}/instanceConfigs/{config}",
            display_name=settings.instance,
            processing_units=policy.processing_units,
        )
        with step(f"reaching Spanner for {instance.name}"), suppress(exceptions.NotFound):
            # The client's own calls below retry for many minutes: this one is bounded.
            client.instance_admin_api.get_instance(name=instance.name, **BOUNDED)
        with step(f"provisioning Spanner instance {instance.name}"):
            try:
                instance.reload()  # replaces the wanted config and units by the current ones
            except exceptions.NotFound:
                if not create:
                    raise ProvisionError(
                        f"Spanner instance {instance.name} does not exist "
                        "(GOOGLE_CLOUD_PROJECT, REDIS_SPANNER_INSTANCE)") from None
                _wait(instance.create(), timeout, f"creating Spanner instance {instance.name}")
                instance_action: Action = "created"
            else:
                instance_action = "unchanged"
                if not emulated and instance.processing_units != policy.processing_units:
                    report.warnings.append(
                        f"{instance.name} has {instance.processing_units} processing units, "
                        f"the declaration {policy.processing_units}: capacity is left as it is"
                    )
        report.resources.append(
            ResourceResult("spanner instance", instance.name, instance_action)
        )

        database = instance.database(settings.database,
                                     ddl_statements=[s.text for s in statements])
        with step(f"provisioning Spanner database {database.name}"):
            if not database.exists():
                if not create:
                    raise ProvisionError(
                        f"Spanner database {database.name} does not exist "
                        "(REDIS_SPANNER_DATABASE)")
                _wait(database.create(), timeout, f"creating Spanner database {database.name}")
                applied = statements
                action: Action = "created"
            else:
                database.reload()
                if settings.source == "changestream":
                    report.warnings.extend(stream_drift(settings, database.ddl_statements))
                applied = missing_statements(statements, database.ddl_statements)
                if applied:
                    _wait(database.update_ddl([s.text for s in applied]), timeout,
                          f"updating the schema of {database.name}")
                action = "updated" if applied else "unchanged"
        report.resources.append(ResourceResult(
            "spanner database", database.name, action,
            tuple(f"applied CREATE {s.kind} {s.name}" for s in applied),
        ))


def changestream_statements(settings: Settings) -> tuple[DdlStatement, ...]:
    """The change-stream relay's tables and the change stream over the catalog's tables."""
    tables = sorted(load_catalog(settings.catalog, settings.namespace).tables)
    stream = parse_ddl(f"CREATE CHANGE STREAM {settings.change_stream} FOR {', '.join(tables)}")
    return load_schema(CHANGESTREAM_PATH) + stream


def stream_drift(settings: Settings, current_ddl: Iterable[str]) -> list[str]:
    """A warning when the existing change stream does not watch exactly the catalog's tables:
    provisioning creates, it never alters; the change is a reviewed ALTER CHANGE STREAM."""
    wanted = load_catalog(settings.catalog, settings.namespace).tables
    for text in current_ddl:
        made = created_object(text)
        if made is None or made[0] != "CHANGE STREAM" or made[1].casefold() != (
                settings.change_stream.casefold()):
            continue
        match = re.search(r"\bFOR\s+(.*?)(?:\bOPTIONS\b|$)", text, re.IGNORECASE | re.DOTALL)
        watched = match[1].strip() if match else ""
        if watched.upper() == "ALL":
            return []
        tables = {t.strip().strip("`") for t in re.sub(r"\([^)]*\)", "", watched).split(",")
                  if t.strip()}
        if tables != set(wanted):
            return [f"change stream {made[1]} watches {', '.join(sorted(tables)) or 'nothing'}"
                    f" but the catalog names {', '.join(sorted(wanted))}: changes to the others "
                    f"are not published (ALTER CHANGE STREAM {made[1]} SET FOR ...)"]
    return []


def delete_spanner(settings: Settings, *, delete_instance: bool = False) -> list[str]:
    """Delete the database (and the instance only if asked); the names of those deleted."""
    deleted: list[str] = []
    with closing(spanner.Client(project=settings.project, disable_builtin_metrics=True)) as client:
        instance = client.instance(settings.instance)
        database = instance.database(settings.database)
        with step(f"deleting {database.name}"):
            if database.exists():
                database.drop()
                deleted.append(database.name)
            if delete_instance and instance.exists():
                instance.delete()
                deleted.append(instance.name)
    return deleted


def _wait(operation: Any, timeout: float, what: str) -> None:
    try:
        operation.result(timeout=timeout)
    except concurrent.futures.TimeoutError as e:
        raise ProvisionError(
            f"{what} did not finish within {timeout:.0f}s (operation "
            f"{operation.operation.name}); it may still complete: provision again later"
        ) from e
