"""Key templates: the demo's declaration, and loading a service's own from settings.

A service declares its templates in a TOML file (``redis_spanner.schemas.catalog_file``) and
points ``REDIS_SPANNER_CATALOG`` at its path, or in a module of its own, as
``package.module:NAME`` (a ``Catalog`` or a sequence of ``KeyTemplate``).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import replace

from redis_spanner.schemas.catalog_file import is_catalog_file, load_catalog_file
from redis_spanner.schemas.errors import CatalogError
from redis_spanner.schemas.keys import Action, Catalog, KeyTemplate, Trigger

ACCOUNT = KeyTemplate(
    name="account",
    entity="Accounts",
    key_columns=("AccountId",),
    triggers=(Trigger("Accounts", arity=1, parts=(0,)),),
    columns=("Owner", "Balance"),
    version_column="UpdatedAt",
)

TEAM = KeyTemplate(
    name="team",
    entity="Teams",
    key_columns=("TeamId",),
    key_types=("INT64",),
    triggers=(Trigger("Teams", arity=1, parts=(0,)),),
    columns=("Name",),
)

TEAM_MEMBERS = KeyTemplate(
    name="team-members",
    entity="Teams",
    key_columns=("TeamId",),
    key_types=("INT64",),
    triggers=(Trigger("Members", arity=2, parts=(0,)), Trigger("Teams", arity=1, parts=(0,))),
    action=Action.REWARM,
    query="SELECT MemberId, Role FROM Members WHERE TeamId = @k0 ORDER BY MemberId",
)

DEMO: Sequence[KeyTemplate] = (ACCOUNT, TEAM, TEAM_MEMBERS)
DEMO_REWARM: Sequence[KeyTemplate] = (replace(ACCOUNT, action=Action.REWARM), TEAM, TEAM_MEMBERS)
"""The demo's rewarm mode: account changes are written through instead of invalidated."""


def load_catalog(spec: str, namespace: str) -> Catalog:
    """The catalog a spec names: a TOML file (a path ending in ``.toml``, or any existing
    file), else ``module:NAME``. Every mistake is a ``CatalogError`` naming the spec."""
    if is_catalog_file(spec):
        return load_catalog_file(spec, namespace)
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise CatalogError(f"catalog {spec!r}: expected a .toml file or 'package.module:NAME'")
    try:
        declared = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise CatalogError(f"catalog {spec!r}: {e}") from e
    try:
        if isinstance(declared, Catalog):
            return Catalog(namespace, declared.templates)
        return Catalog(namespace, tuple(declared))
    except (TypeError, ValueError) as e:
        raise CatalogError(f"catalog {spec!r}: {e}") from e
