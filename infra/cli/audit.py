"""``redis-spanner audit``: list the audit trail of operator actions kept in Spanner."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Annotated

import typer
from redis_spanner.infra.cli.tables import print_table
from rich.console import Console

COLUMNS = ("when (UTC)", "who", "action", "outcome", "details")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str, now: dt.datetime | None = None) -> dt.datetime:
    """``30m``, ``2h``, ``7d`` ago, or an ISO 8601 time (UTC unless it says otherwise);
    a ``ConfigError`` naming ``--since`` otherwise."""
    from redis_spanner.schemas.errors import ConfigError

    now = now or dt.datetime.now(dt.UTC)
    match = _DURATION.fullmatch(text.strip())
    if match:
        return now - dt.timedelta(seconds=float(match[1]) * _UNITS[match[2]])
    try:
        parsed = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(f"--since {text!r} is neither a duration (30m, 2h, 7d) nor an "
                          "ISO 8601 time (2026-12-01T13:00:00Z)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def audit(
    since: Annotated[str | None, typer.Option(
        help="Only records from this long ago (30m, 2h, 7d) or this time (ISO 8601).")] = None,
    limit: Annotated[int, typer.Option(help="At most this many (the newest).", min=1)] = 1000,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON as the last line.")
                       ] = False,
) -> None:
    """List the operator actions recorded in the AuditLog table, oldest first."""
    from redis_spanner.infra.cli.audit_store import SpannerAuditLog
    from redis_spanner.infra.cli.reachability import SPANNER, require_reachable
    from redis_spanner.producers.spanner import open_database
    from redis_spanner.schemas.settings import get_settings

    start = parse_since(since) if since is not None else None
    settings = get_settings()
    require_reachable(settings, SPANNER)
    records = SpannerAuditLog(open_database(settings)).since(start, limit)
    console = Console(stderr=as_json, emoji=False)
    if records:
        print_table(console, COLUMNS, [[
            r.at.strftime("%Y-%m-%d %H:%M:%S") if r.at else "-", r.principal, r.action,
            r.outcome + (f": {r.error}" if r.error else ""),
            " ".join(f"{k}={json.dumps(v, default=str)}" for k, v in sorted(r.details.items())),
        ] for r in records], shrink="details")
    window = f" since {start:%Y-%m-%d %H:%M:%S} UTC" if start else ""
    console.print(f"{len(records)} audit record(s){window} in database {settings.database}",
                  markup=False, highlight=False, soft_wrap=True)
    if as_json:
        typer.echo(json.dumps([r.as_dict() for r in records]))
