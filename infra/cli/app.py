"""The ``redis-spanner`` command line."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import signal
import threading
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from redis_spanner.infra.cli import errors as cli_errors
from redis_spanner.infra.cli.audit import audit
from redis_spanner.infra.cli.catalog import catalog_app, require_catalog
from redis_spanner.infra.cli.changestream import changestream_relay
from redis_spanner.infra.cli.dev import dev_app
from redis_spanner.infra.cli.dlq import dlq_app
from redis_spanner.infra.cli.outbox import outbox_app
from redis_spanner.infra.cli.runtime import settle_heap
from redis_spanner.infra.cli.status import status
from rich.console import Console

if TYPE_CHECKING:
    from redis_spanner.schemas.settings import Settings

app = typer.Typer(
    help="Keep a Redis cache coherent with Cloud Spanner.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(dev_app, name="dev")
app.add_typer(dlq_app, name="dlq")
app.add_typer(outbox_app, name="outbox")
app.add_typer(catalog_app, name="catalog")
app.command("changestream-relay")(changestream_relay)

class DemoMode(StrEnum):
    INVALIDATE = "invalidate"
    REWARM = "rewarm"


class DemoSource(StrEnum):
    OUTBOX = "outbox"
    CHANGESTREAM = "changestream"


Json = Annotated[bool, typer.Option("--json", help="Print one JSON object as the last line.")]
MetricsPort = Annotated[
    int, typer.Option(help="Serve Prometheus metrics on this port (0: off).", min=0)
]


def _logging(verbose: bool, quiet: bool = False) -> None:
    """JSON lines or console lines on stderr (``infra.cli.logs``); ``-v`` adds a line per batch."""
    from redis_spanner.infra.cli import logs

    logs.setup(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)
    _quiet()


def _quiet() -> None:
    """The client libraries' chatter stays out of stderr; so does google.auth's warning before
    the missing-credentials error that is reported anyway."""
    for noisy in ("google", "grpc", "urllib3", "redis"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("google.auth").setLevel(logging.ERROR)


def _before_stack() -> None:
    """For the commands that run on the local stack: settings valid and the components the
    environment names answering, before anything starts."""
    from redis_spanner.infra.cli.reachability import require_external
    from redis_spanner.schemas.settings import load_settings, require_catalog

    require_catalog(load_settings())
    require_external(os.environ)


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def _settings(*needs: str) -> Settings:
    """The settings, once each dependency in ``needs`` answers at its configured address."""
    from redis_spanner.infra.cli.reachability import require_reachable
    from redis_spanner.schemas.settings import get_settings, require_catalog

    settings = get_settings()
    require_catalog(settings)
    require_reachable(settings, *needs)
    return settings


def _metrics(port: int) -> None:
    if port:
        from prometheus_client import start_http_server

        start_http_server(port)


@app.command()
def provision(
    ddl: Annotated[list[Path] | None, typer.Option(
        "--ddl", help="A service's own DDL file, applied after the outbox tables where its "
                      "objects are missing (repeatable; default: REDIS_SPANNER_DDL).")] = None,
    declaration: Annotated[Path | None, typer.Option(
        help="A pipeline.json of one's own (default: REDIS_SPANNER_DECLARATION, else the "
             "packaged one).")] = None,
    existing: Annotated[bool, typer.Option(
        "--existing", help="The Spanner instance and database must exist already: add the "
                           "outbox tables, create nothing else in Spanner.")] = False,
    as_json: Json = False,
) -> None:
    """Create or update the topics, subscriptions, Spanner instance and database (idempotent);
    the database gets the outbox tables and nothing else unless --ddl names more."""
    from redis_spanner.infra.cli.audit_trail import audited
    from redis_spanner.infra.provision.declaration import load_declaration
    from redis_spanner.infra.provision.run import format_report
    from redis_spanner.infra.provision.run import provision as run

    _logging(False)
    settings = _settings("pubsub", "spanner")
    # A bad declaration or DDL file is a ConfigError: one line, exit 2, before any call.
    loaded = load_declaration(declaration or settings.declaration)
    with audited("provision", settings, database=settings.database,
                 topic=settings.topic) as action:
        report = run(settings, loaded, ddl=ddl or [], create_database=not existing)
        action.note(changed=[f"{r.action} {r.kind} {r.name}" for r in report.resources
                             if r.action != "unchanged"], warnings=len(report.warnings))
    if as_json:
        typer.echo(json.dumps(report.as_dict()))
    else:
        typer.echo(format_report(report))


@app.command()
def relay(
    metrics_port: MetricsPort = 0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Publish outbox rows to Pub/Sub until SIGINT or SIGTERM (exit 1 if leases are lost)."""
    stop = _stop_on_signals()
    from redis_spanner.infra.cli.outbox import serve_relay

    _logging(verbose)
    _settings("pubsub", "spanner")
    _metrics(metrics_port)
    serve_relay(stop)


@app.command()
def worker(
    streams: Annotated[int | None, typer.Option(help="Concurrent pull loops.", min=1)] = None,
    metrics_port: MetricsPort = 0,
    health_port: Annotated[int | None, typer.Option(
        help="Serve /healthz and /metrics on this port (default: $PORT; 0: off).", min=0,
        max=65535)] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Pull events and apply them to Redis until SIGINT or SIGTERM (then stop within
    REDIS_SPANNER_STOP_SECONDS)."""
    from redis_spanner.consumers.health import HealthServer, loops_check, redis_check
    from redis_spanner.consumers.pubsub import PullSubscription
    from redis_spanner.consumers.worker import (
        Consumer,
        PullWorker,
        healer,
        warn_if_unsafe_eviction,
    )

    _logging(verbose)
    settings = _settings("pubsub", "spanner", "redis")
    require_catalog(settings, "worker")
    health_port = settings.health_port if health_port is None else health_port
    if metrics_port != health_port:
        _metrics(metrics_port)

    def work(stop: threading.Event) -> None:
        consumer = Consumer.from_settings(settings, stop=stop)
        subscription = PullSubscription(settings.subscription_path,
                                        max_messages=settings.worker_batch)
        pull = PullWorker(subscription, consumer.processor,
                          streams=streams or settings.worker_streams)
        heal = healer(settings, consumer)
        health = None
        try:
            if health_port:
                try:
                    health = HealthServer([loops_check(pull.dead_loops),
                                           loops_check(heal.dead_loops),
                                           redis_check(consumer.cache.client)],
                                          health_port).start()
                except OSError as e:
                    typer.echo(f"redis-spanner worker: cannot serve /healthz on port "
                               f"{health_port} (PORT or --health-port): {e.strerror}", err=True)
                    raise typer.Exit(2) from None
            warn_if_unsafe_eviction(consumer.cache)
            settle_heap()
            loops = [threading.Thread(target=w.run, args=(stop,), daemon=True)
                     for w in (pull, heal)]
            for loop in loops:
                loop.start()
            for loop in loops:
                loop.join()
        finally:
            if health is not None:
                health.close()
            subscription.close()
            heal.subscription.close()
            consumer.close()

    _bounded(work, settings.stop_seconds)


def _bounded(work: Callable[[threading.Event], None], grace: float) -> None:
    """``work(stop)`` until it returns or, after SIGTERM or SIGINT, at most ``grace`` seconds."""
    from redis_spanner.consumers.shutdown import Stopped, exit_now, run_until_stopped

    try:
        run_until_stopped(work, grace=grace)
    except Stopped as e:
        logging.getLogger("redis_spanner").warning("%s", e)
        exit_now(0)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "0.0.0.0",
    port: Annotated[int, typer.Option(envvar="PORT", help="Port (Cloud Run sets PORT).")
                    ] = 8080,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Serve the push endpoint for a Pub/Sub push subscription (POST /push, /healthz, /metrics),
    and drain the heal subscription; SIGTERM stops it within REDIS_SPANNER_STOP_SECONDS.

    Each push must carry the subscription's OIDC token for REDIS_SPANNER_PUSH_AUDIENCE, issued
    to REDIS_SPANNER_PUSH_SERVICE_ACCOUNT (REDIS_SPANNER_PUSH_AUTH=off: emulators only)."""
    import uvicorn
    from redis_spanner.consumers.push import create_app
    from redis_spanner.consumers.push_auth import PushVerifier, auth_config
    from redis_spanner.consumers.worker import Consumer, healer, warn_if_unsafe_eviction
    from redis_spanner.infra.cli.reachability import listenable
    from redis_spanner.schemas.settings import get_settings

    _logging(verbose)
    config = auth_config(get_settings())  # ConfigError (exit 2) before anything is reached
    settings = _settings("pubsub", "spanner", "redis")
    listenable(host, port)
    require_catalog(settings, "serve")
    verifier = None if config is None else PushVerifier(config)

    def work(stop: threading.Event) -> None:
        consumer = Consumer.from_settings(settings, stop=stop)
        heal = healer(settings, consumer)
        server = uvicorn.Server(uvicorn.Config(
            create_app(consumer.processor, verifier=verifier), host=host, port=port,
            log_level="warning", log_config=None,  # uvicorn's lines go through infra.cli.logs too
            timeout_graceful_shutdown=max(1, int(settings.stop_seconds) - 2),
        ))

        def stop_server() -> None:
            stop.wait()
            server.should_exit = True

        healing = threading.Thread(target=heal.run, args=(stop,), daemon=True)
        try:
            warn_if_unsafe_eviction(consumer.cache)
            settle_heap()
            healing.start()
            threading.Thread(target=stop_server, daemon=True).start()
            server.run()
        finally:
            stop.set()
            if healing.is_alive():
                healing.join()
            heal.subscription.close()
            consumer.close()

    _bounded(work, settings.stop_seconds)


@app.command()
def verify(
    sample: Annotated[int | None, typer.Option(help="Check a random sample of N keys.", min=1)
                      ] = None,
    repair: Annotated[bool, typer.Option("--repair", help="Fix what is found (guarded).")
                      ] = False,
    as_json: Json = False,
) -> None:
    """Compare cached entries with Spanner at one read timestamp; exit 1 if stale or foreign
    entries remain."""
    from contextlib import nullcontext

    from redis_spanner.consumers.verify import verify as run
    from redis_spanner.consumers.worker import Consumer
    from redis_spanner.infra.cli.audit_trail import Action, audited
    from redis_spanner.infra.cli.cache_report import render_verify

    _logging(False)
    settings = _settings("spanner", "redis")
    require_catalog(settings, "verify")
    recording = audited("verify --repair", settings, sample=sample) if repair \
        else nullcontext(Action())
    with recording as action:
        consumer = Consumer.from_settings(settings)
        try:
            report = run(consumer.cache, consumer.catalog, consumer.rows, sample=sample,
                         repair=repair)
        finally:
            consumer.close()
        action.note(**report.as_dict(), deleted_keys=report.orphaned[:100] if repair else [])
    render_verify(report, Console(stderr=as_json, emoji=False))
    if as_json:
        typer.echo(json.dumps(report.as_dict()))
    raise typer.Exit(1 if report.remaining_stale or report.remaining_foreign else 0)


@app.command()
def rewarm(
    table: Annotated[str, typer.Option(help="Spanner table whose keys to rewarm.")],
    key_prefix: Annotated[str | None, typer.Option(
        help="Only rows whose first primary-key column starts with this.")] = None,
    rate: Annotated[float | None, typer.Option(help="At most N rows per second.", min=0.1)
                    ] = None,
    batch: Annotated[int, typer.Option(help="Rows per Spanner read and Redis round trip.",
                                       min=1, max=5000)] = 200,
    as_json: Json = False,
) -> None:
    """Backfill: walk a table (or key range) in Spanner and rewarm its keys in Redis."""
    from redis_spanner.consumers.backfill import backfill
    from redis_spanner.consumers.spanner_rows import TableWalker
    from redis_spanner.consumers.worker import Consumer
    from redis_spanner.infra.cli.audit_trail import audited
    from redis_spanner.schemas.errors import ConfigError
    from redis_spanner.schemas.settings import require_catalog as declared_catalog
    from rich.progress import Progress

    _logging(False)
    settings = _settings("spanner", "redis")
    declared = declared_catalog(settings)
    if table not in declared.tables:
        raise ConfigError(f"unknown --table {table!r}: the catalog "
                          f"(REDIS_SPANNER_CATALOG={settings.catalog}) declares "
                          f"{', '.join(sorted(declared.tables)) or 'no table'}")
    require_catalog(settings, "rewarm")
    consumer = Consumer.from_settings(settings)
    walker = TableWalker(consumer.database)
    console = Console(stderr=True, emoji=False)
    with audited("rewarm", settings, table=table, key_prefix=key_prefix) as action:
        try:
            total = walker.count(table, key_prefix)
            with Progress(console=console) as progress:
                task = progress.add_task(f"rewarming {table}", total=total)
                report = backfill(walker, consumer.rows, consumer.cache, consumer.catalog,
                                  table, prefix=key_prefix, rate=rate, batch=batch,
                                  on_rows=lambda n: progress.advance(task, n))
        finally:
            consumer.close()
        summary = report.as_dict()
        action.note(**summary)
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        typer.echo(f"rewarmed {summary['keys']} key(s) from {summary['rows']} row(s) of "
                   f"{table}: {summary['written']} written, {summary['superseded']} already "
                   f"newer, in {summary['seconds']}s")


@app.command()
def bench(
    events: Annotated[int, typer.Option(help="Events per throughput run.", min=100)] = 5000,
    repeats: Annotated[int, typer.Option(help="Runs per stage (medians are reported).",
                                         min=1)] = 3,
    quick: Annotated[bool, typer.Option(
        "--quick", help="Fewer events and shorter stages: done in under 2 minutes.")] = False,
    plot: Annotated[Path | None, typer.Option(
        help="Write a PNG (throughput bars, lag CDFs) here; needs matplotlib.")] = None,
    as_json: Json = False,
) -> None:
    """Measure the consumer and relay against the transport's limits on the local stack."""
    from redis_spanner.infra.bench import BenchOptions, run_bench
    from redis_spanner.infra.bench.report import plot as draw
    from redis_spanner.infra.bench.report import table
    from redis_spanner.schemas.errors import ConfigError

    if plot is not None and importlib.util.find_spec("matplotlib") is None:
        raise ConfigError("--plot needs matplotlib: pip install 'redis-spanner[bench]'")
    if plot is not None and not (plot.parent.is_dir() and os.access(plot.parent, os.W_OK)):
        raise ConfigError(f"--plot {plot}: {plot.parent} is not a directory this user can "
                          "write to")
    _logging(False, quiet=True)
    _before_stack()
    console = Console(stderr=True, emoji=False)
    options = BenchOptions.quick() if quick else BenchOptions(events=events, repeats=repeats)
    result = run_bench(options, lambda line: console.print(line, markup=False))
    typer.echo(table(result))
    if plot is not None:
        draw(result, plot)
        console.print(f"plot written to {plot}", markup=False)
    shown = ("rates_per_s", "ratios") if not as_json else tuple(result)
    typer.echo(json.dumps({k: v for k, v in result.items()
                           if k in shown and k != "lag_samples_ms"}))


@app.command()
def demo(
    duration: Annotated[float, typer.Option(help="Seconds of workload.", min=1)] = 15.0,
    rate: Annotated[float, typer.Option(help="Writes per second (all writers).", min=1)] = 40.0,
    read_rate: Annotated[float, typer.Option(help="Reads per second (all readers).", min=1)
                         ] = 200.0,
    accounts: Annotated[int, typer.Option(help="Rows in the sample table.", min=1)] = 200,
    mode: Annotated[DemoMode, typer.Option(
        help="invalidate: tombstone changed keys, readers refill; "
             "rewarm: the consumer writes fresh values itself.")] = DemoMode.INVALIDATE,
    chaos: Annotated[bool, typer.Option(
        "--chaos", help="Inject a fault every few seconds: Redis stalled, restarted or flushed, "
                        "a primary failover, consumer batches failed, messages failed past the "
                        "delivery budget, the Pub/Sub emulator paused (if this run started "
                        "it), poison messages, foreign entries in the namespace."
    )] = False,
    source: Annotated[DemoSource, typer.Option(
        help="outbox: writers record outbox rows; changestream: writers write no outbox "
             "rows, change-stream relays publish the row changes.")] = DemoSource.OUTBOX,
    fast_path: Annotated[bool, typer.Option(
        "--fast-path", help="Writers commit every other account with the writer's fast path "
                            "(tombstones right after the commit); the report gives stale reads "
                            "for those keys and for the outbox-only ones."
    )] = False,
    as_json: Json = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the whole pattern on the local stack and check the cache against Spanner."""
    from redis_spanner.infra.demo.report import render
    from redis_spanner.infra.demo.run import DemoOptions, run_demo

    _logging(verbose, quiet=True)
    _before_stack()
    console = Console(stderr=as_json, emoji=False)
    options = DemoOptions(duration=duration, write_rate=rate, read_rate=read_rate,
                          accounts=accounts, mode=mode.value, chaos=chaos,
                          source=source.value, fast_path=fast_path)
    result = run_demo(options, console)
    render(result, console)
    if as_json:
        typer.echo(json.dumps(result))
    ok = result["stale_keys"] == 0 and result["lost"] == 0 and result["foreign_keys"] == 0
    raise typer.Exit(0 if ok else 1)


app.command()(status)
app.command()(audit)


def main() -> None:
    """The console entry point: every failure is one line on stderr and an exit status."""
    cli_errors.run(app)


if __name__ == "__main__":
    main()
