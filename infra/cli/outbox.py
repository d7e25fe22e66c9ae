"""``redis-spanner outbox``: the outbox seen from the command line, and the relay's process
edge (its exit when leases are lost, its bounded stop)."""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, NoReturn, TypeVar

import typer
from rich.console import Console

if TYPE_CHECKING:
    from redis_spanner.producers.outbox_store import SpannerOutbox
    from redis_spanner.schemas.settings import Settings

T = TypeVar("T")
outbox_app = typer.Typer(help="The outbox's quarantine: rows the relay could not publish.",
                         no_args_is_help=True)


def serve_relay(stop: threading.Event) -> None:
    """Run the relay until ``stop``. Lost leases are one line on stderr and exit status 1, so
    the platform restarts the process; a relay stuck in a call when stopped exits anyway."""
    from google.auth.exceptions import GoogleAuthError
    from redis_spanner.infra.cli.runtime import settle_heap
    from redis_spanner.producers.leases import LeaseLost
    from redis_spanner.producers.runner import run_relay

    settings = _settings()
    try:
        settle_heap()
        finished = run_relay(settings, stop)
    except LeaseLost as e:
        typer.echo(f"relay stopped: {e}", err=True)
        _exit_now(1)
    except GoogleAuthError as e:
        typer.echo(f"relay cannot start: Google credentials: {e}", err=True)
        _exit_now(2)
    if not finished:
        _exit_now(0)


def _settings() -> Settings:
    """The settings, or one line naming the invalid variable and exit status 2."""
    from pydantic import ValidationError
    from redis_spanner.schemas.settings import get_settings

    try:
        return get_settings()
    except ValidationError as e:
        error = e.errors()[0]
        name = ".".join(str(part) for part in error["loc"])
        typer.echo(f"invalid setting {name} (REDIS_SPANNER_{name.upper()} unless aliased): "
                   f"{error['msg']}", err=True)
        raise typer.Exit(2) from None


def _exit_now(code: int) -> NoReturn:
    """Exit without waiting for threads still blocked in a Spanner or Pub/Sub call."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


@outbox_app.command()
def quarantine(
    limit: Annotated[int, typer.Option(help="Show at most this many, newest first.", min=1)
                     ] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON as the last line.")
                       ] = False,
    timeout: Annotated[float, typer.Option(help="Give up on Spanner after this many seconds.",
                                           min=0.5)] = 10.0,
) -> None:
    """List the outbox rows the relay moved to OutboxQuarantine, with the reason for each."""
    settings = _settings()
    rows = _bounded(lambda: _outbox(settings, timeout).quarantined(limit), timeout,
                    f"cannot read OutboxQuarantine of {_where(settings)}")
    console = Console(stderr=as_json, emoji=False)
    if not rows:
        console.print("no quarantined outbox rows", markup=False)
    else:
        for row in rows:  # one block per row: ids and reasons are never cut to fit a width
            payload = "NULL" if row.payload_chars is None else f"{row.payload_chars} chars"
            console.print(f"{row.quarantined_at:%Y-%m-%d %H:%M:%S}  shard {row.shard}  "
                          f"{row.event_id}  {row.event_type} {row.table}", markup=False,
                          highlight=False, soft_wrap=True)
            console.print(f"    reason: {row.reason}", markup=False, highlight=False,
                          soft_wrap=True)
            console.print(f"    key: {row.key_head}  payload: {payload}", markup=False,
                          highlight=False, soft_wrap=True)
        console.print(f"{len(rows)} quarantined row(s)", markup=False)
    if as_json:
        typer.echo(json.dumps({"quarantined": [row.as_dict() for row in rows]}))


@outbox_app.command()
def requeue(
    ids: Annotated[list[str], typer.Option(
        "--id", help="Event id of a quarantined row to send again (repeatable).")],
    timeout: Annotated[float, typer.Option(help="Give up on Spanner after this many seconds.",
                                           min=0.5)] = 10.0,
) -> None:
    """Move quarantined rows, once fixed in place with SQL, back to the outbox (same event id
    and commit timestamp). A row still broken is quarantined again by the relay."""
    settings = _settings()
    moved = _bounded(lambda: _outbox(settings, timeout).requeue(ids), timeout,
                     f"cannot requeue into Outbox of {_where(settings)}")
    if moved == 0:
        typer.echo(f"no quarantined row has event id {', '.join(ids)}", err=True)
        raise typer.Exit(1)
    typer.echo(f"requeued {moved} of {len(ids)} row(s)")
    if moved < len(ids):
        raise typer.Exit(1)


def _outbox(settings: Settings, timeout: float) -> SpannerOutbox:
    """The outbox's tables, once the Spanner emulator (when its host is set) answers at its
    address, as every command probes its dependencies first."""
    from redis_spanner.infra.cli.reachability import PROBE_SECONDS, SPANNER, require_reachable
    from redis_spanner.producers.outbox_store import SpannerOutbox
    from redis_spanner.producers.spanner import open_database

    require_reachable(settings, SPANNER, timeout=min(timeout, PROBE_SECONDS))
    return SpannerOutbox(open_database(settings))


def _where(settings: Settings) -> str:
    return (f"database {settings.database} (instance {settings.instance}, Spanner at "
            f"{settings.spanner_emulator_host or 'spanner.googleapis.com'})")


def _bounded(call: Callable[[], T], timeout: float, failure: str) -> T:
    """``call()`` within ``timeout`` seconds, else one line ``error: failure: cause`` and the
    command line's exit status for it: 1 for a Spanner that does not answer or fails, 2 for a
    configuration problem (a database that does not exist, say). An error the command line
    does not know goes to its usual report."""
    from redis_spanner.infra.cli.errors import FAILURE, classify, one_line

    result: list[T] = []
    failed: list[Exception] = []

    def run() -> None:
        try:
            result.append(call())
        except Exception as e:  # reported below, in the command's thread
            failed.append(e)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout)
    if result:
        return result[0]
    known = classify(failed[0]) if failed else (FAILURE, f"no answer within {timeout:g}s")
    if known is None:
        raise failed[0]
    status, cause = known
    typer.echo(f"error: {one_line(f'{failure}: {cause}')}", err=True)
    raise typer.Exit(status)
