"""Create or converge the pipeline's resources from the one declaration, idempotently.

The same code serves the emulators and GCP: the client libraries follow PUBSUB_EMULATOR_HOST
and SPANNER_EMULATOR_HOST. Names come from `Settings`, policies from infra/pipeline.json.
Pub/Sub is provisioned by ``pubsub``, Spanner by ``spanner``, the modules beside this one.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from redis_spanner.infra.provision.declaration import Declaration, load_declaration
from redis_spanner.infra.provision.pubsub import delete_pubsub, provision_pubsub
from redis_spanner.infra.provision.report import ProvisionError, ProvisionReport
from redis_spanner.infra.provision.spanner import delete_spanner, provision_spanner
from redis_spanner.infra.spanner.ddl import load_schemas
from redis_spanner.schemas.settings import Settings


def provision(
    settings: Settings,
    declaration: Declaration | None = None,
    *,
    project_number: int | None = None,
    operation_timeout: float = 600.0,
    ddl: Sequence[Path | str] = (),
    create_database: bool = True,
) -> ProvisionReport:
    """Create what is missing, update what drifted; report each resource's action.

    The declaration is ``declaration``, else ``REDIS_SPANNER_DECLARATION``, else the packaged
    one. ``ddl`` adds a service's own DDL files (``REDIS_SPANNER_DDL`` when empty), applied
    after the outbox tables, object by object where missing. ``create_database=False`` requires
    the instance and database to exist already."""
    declaration = declaration or load_declaration(settings.declaration)
    ddl = ddl or ([settings.ddl] if settings.ddl else [])
    load_schemas([declaration.ddl_path, *ddl])  # a bad DDL file stops here, before any call
    started = time.monotonic()
    report = ProvisionReport()
    pubsub_emulated = _emulator_host("PUBSUB_EMULATOR_HOST", settings.pubsub_emulator_host)
    spanner_emulated = _emulator_host("SPANNER_EMULATOR_HOST", settings.spanner_emulator_host)
    if settings.max_delivery_attempts != declaration.subscription.max_delivery_attempts:
        report.warnings.append(
            f"settings say max_delivery_attempts={settings.max_delivery_attempts} but the "
            f"subscription dead-letters after {declaration.subscription.max_delivery_attempts}"
        )
    with _at("Pub/Sub", "PUBSUB_EMULATOR_HOST", "pubsub.googleapis.com"):
        provision_pubsub(settings, declaration, report, emulated=pubsub_emulated,
                         project_number=project_number)
    with _at("Spanner", "SPANNER_EMULATOR_HOST", "spanner.googleapis.com"):
        provision_spanner(settings, declaration, report, emulated=spanner_emulated,
                          timeout=operation_timeout, ddl=ddl, create=create_database)
    report.seconds = round(time.monotonic() - started, 3)
    return report


def teardown(settings: Settings, *, delete_instance: bool = False) -> list[str]:
    """Delete the subscriptions, topics and database (and the instance only if asked)."""
    return delete_pubsub(settings) + delete_spanner(settings, delete_instance=delete_instance)


def format_report(report: ProvisionReport) -> str:
    """One line per resource, details indented under it, warnings last."""
    lines = []
    for r in report.resources:
        lines.append(f"{r.action:<10} {r.kind:<22} {r.name}")
        lines.extend(f"{'':<10} {'':<22} - {detail}" for detail in r.details)
    lines.extend(f"warning: {warning}" for warning in report.warnings)
    lines.append(f"done in {report.seconds:.1f}s")
    return "\n".join(lines)


@contextmanager
def _at(service: str, variable: str, default: str) -> Iterator[None]:
    """A failed step names the address it was talking to."""
    try:
        yield
    except ProvisionError as e:
        host = os.environ.get(variable)
        where = f"{variable}={host}" if host else default
        raise ProvisionError(f"{e} ({service} at {where})") from e


def _emulator_host(variable: str, configured: str | None) -> bool:
    """Whether the client libraries will talk to an emulator (they read only the env)."""
    actual = os.environ.get(variable)
    if configured and not actual:
        raise ProvisionError(
            f"settings name the emulator {configured} but {variable} is not in the "
            "environment, so the client library would reach GCP: export it"
        )
    return bool(actual)
