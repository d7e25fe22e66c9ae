"""``redis-spanner dev``: start, stop and inspect the local stack."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path
from typing import Annotated, Any

import typer
from redis_spanner.infra.cli.errors import reported
from redis_spanner.infra.cli.tables import print_table
from redis_spanner.infra.local.stack import LocalStack, default_state_dir
from redis_spanner.schemas.settings import Settings
from rich.console import Console

dev_app = typer.Typer(
    help="The local stack: the Pub/Sub and Spanner emulators and a redis-server on free ports.",
    no_args_is_help=True,
)

StateDir = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        help="Where the stack records its processes and logs "
        "[default: $REDIS_SPANNER_STATE_DIR, else $XDG_STATE_HOME/redis-spanner, "
        "else ~/.local/state/redis-spanner]",
    ),
]
ENV_HINT = 'eval "$(redis-spanner dev env)"'
LOCAL_PROJECT = str(Settings.model_fields["project"].default)
"""The settings' default project: any id serves on the emulators."""


def _stack(state_dir: Path | None, redis_cluster: bool | None = None) -> LocalStack:
    return LocalStack(default_state_dir() if state_dir is None else state_dir, redis_cluster)


@dev_app.command()
def up(
    state_dir: StateDir = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for health.")] = 60,
    redis_cluster: Annotated[bool, typer.Option(
        "--redis-cluster",
        help="Run Redis as a local cluster of three primaries (a running single server is "
        "replaced); `dev env` then also exports REDIS_SPANNER_REDIS_CLUSTER=true.")] = False,
) -> None:
    """Start whatever part of the stack is not running; reuse the rest."""
    from redis_spanner.infra.cli.reachability import require_external

    stack = _stack(state_dir, True if redis_cluster else None)
    with reported():
        require_external(os.environ)
        before = stack.running_pids()
        stack.up(timeout)
        status = stack.status()
    rows = []
    for name, s in status.items():
        if s["external"]:
            what = "external (from the environment)"
        else:
            what = "already running" if before.get(name) == s["pid"] else "started"
        rows.append([name, s["address"] or "-", str(s["pid"] or "-"), what])
    console = Console()
    print_table(console, ("component", "address", "pid", "state"), rows)
    console.print(f"state and logs: {stack.state_dir}", markup=False, highlight=False)
    console.print(f"to use it in this shell: {ENV_HINT}", markup=False, highlight=False)


@dev_app.command()
def down(state_dir: StateDir = None) -> None:
    """Stop the processes this stack started (never external ones)."""
    stack = _stack(state_dir)
    with reported():
        exported = stack.env()
        stopped = stack.down()
    if stopped:
        typer.echo(f"stopped: {', '.join(stopped)}")
    else:
        typer.echo(f"nothing was running (state dir {stack.state_dir})")
    stale = [name for name, value in (exported.exports() if exported else {}).items()
             if os.environ.get(name) == value]
    if stale:
        typer.echo(f"this shell still points at the stopped stack: unset {' '.join(stale)}",
                   err=True)


@dev_app.command()
def status(
    state_dir: StateDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Show each component: running, healthy, address, pid. Exit 1 unless all are healthy."""
    stack = _stack(state_dir)
    with reported():
        report = stack.status()
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        _healthy_or_exit(report, stack.state_dir)
        return
    console = Console()
    print_table(console, ("component", "running", "healthy", "address", "pid", "external"), [
        [name, _yes(s["running"]), _yes(s["healthy"]), s["address"] or "-", str(s["pid"] or "-"),
         _yes(s["external"])] for name, s in report.items()])
    for name, s in report.items():
        if s["rest"] and s["running"]:
            console.print(f"{name} REST: {s['rest']}", markup=False, highlight=False)
    console.print(f"state and logs: {stack.state_dir}", markup=False, highlight=False)
    _healthy_or_exit(report, stack.state_dir)


def _healthy_or_exit(report: dict[str, Any], state_dir: Path) -> None:
    """Exit 1, with one line on stderr naming them, when some component is not healthy."""
    sick = [f"{name} ({s['address']})" if s["address"] else name
            for name, s in report.items() if not s["healthy"]]
    if sick:
        typer.echo(f"error: not healthy: {', '.join(sick)} (state dir {state_dir}); start the "
                   "stack with: redis-spanner dev up", err=True)
        raise typer.Exit(1)


@dev_app.command()
def env(state_dir: StateDir = None) -> None:
    """Print `export` lines for the running stack: eval "$(redis-spanner dev env)".

    Besides the emulator hosts and REDIS_URL, GOOGLE_CLOUD_PROJECT (kept if already set), so
    gcloud, REST calls and other SDKs name the same project as the pipeline."""
    stack = _stack(state_dir)
    with reported():
        found = stack.env()
    if found is None:
        typer.echo(f"no local stack is running (state dir {stack.state_dir}); "
                   "start one with: redis-spanner dev up", err=True)
        raise typer.Exit(1)
    project = os.environ.get("GOOGLE_CLOUD_PROJECT") or LOCAL_PROJECT
    for name, value in {**found.exports(), "GOOGLE_CLOUD_PROJECT": project}.items():
        typer.echo(f"export {name}={shlex.quote(value)}")


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"
