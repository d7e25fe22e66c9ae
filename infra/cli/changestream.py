"""``redis-spanner changestream-relay``: publish a Spanner change stream's row changes."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from typing import Annotated, NoReturn

import typer
from redis_spanner.infra.cli.runtime import settle_heap
from redis_spanner.schemas.errors import RedisSpannerError, TransientError

MetricsPort = Annotated[
    int, typer.Option(help="Serve Prometheus metrics on this port (0: off).", min=0)
]


def changestream_relay(
    metrics_port: MetricsPort = 0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Publish the row changes of REDIS_SPANNER_CHANGE_STREAM as cache events until SIGINT or
    SIGTERM (writers need no outbox rows). Replicas share the partitions."""
    from pydantic import ValidationError
    from redis_spanner.producers.runner import build_changestream_relay
    from redis_spanner.schemas.settings import get_settings

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    for noisy in ("google", "grpc", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if metrics_port:
        from prometheus_client import start_http_server

        start_http_server(metrics_port)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        settings = get_settings()
    except ValidationError as e:
        error = e.errors()[0]
        _fail(f"bad setting REDIS_SPANNER_{str(error['loc'][0]).upper()}: {error['msg']}", 2)
    try:
        relay, publisher = build_changestream_relay(settings)
    except TransientError as e:
        where = settings.spanner_emulator_host or "spanner.googleapis.com"
        _fail(f"cannot reach Spanner at {where} (database {settings.database} of instance "
              f"{settings.instance}, project {settings.project}): {e}", 1)
    except RedisSpannerError as e:
        _fail(str(e), 2)
    settle_heap()
    try:
        relay.run(stop)
    except RedisSpannerError as e:  # a checkpoint beyond retention, a refused query
        _fail(str(e), 1)
    finally:
        publisher.close()


def _fail(message: str, code: int) -> NoReturn:
    typer.echo(f"redis-spanner changestream-relay: {message}", err=True)
    raise typer.Exit(code)
