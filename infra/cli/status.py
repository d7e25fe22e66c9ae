"""``redis-spanner status``: the pipeline on one screen, and a probe (exit 1 past a
threshold)."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer
from redis_spanner.infra.cli.tables import print_table
from rich.console import Console


def status(
    worker_metrics: Annotated[str | None, typer.Option(
        help="A worker's /metrics URL (e.g. http://127.0.0.1:9100/metrics): report its lag "
             "percentiles.")] = None,
    max_backlog: Annotated[int | None, typer.Option(
        help="Exit 1 when more outbox rows than this wait.", min=0)] = None,
    max_oldest_seconds: Annotated[float | None, typer.Option(
        help="Exit 1 when the oldest outbox row is older than this.", min=0)] = None,
    max_dead_letters: Annotated[int | None, typer.Option(
        help="Exit 1 when more dead letters than this are held.", min=0)] = None,
    max_lag_p99: Annotated[float | None, typer.Option(
        help="Exit 1 when the worker's p99 lag (seconds) is above this; needs "
             "--worker-metrics.", min=0)] = None,
    timeout: Annotated[float, typer.Option(
        help="Give up on Pub/Sub after this many seconds of failing calls.", min=0.5)] = 10.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object as the last "
                                                         "line.")] = False,
) -> None:
    """The outbox backlog per shard, the relays and their leases, the dead letters by reason,
    the subscription backlog and the worker's lag; nothing is changed. Exit 1 when a --max-*
    threshold is crossed."""
    from redis_spanner.consumers.pubsub import HoldSubscription
    from redis_spanner.infra.cli.reachability import PUBSUB, SPANNER, require_reachable
    from redis_spanner.infra.cli.status_report import (
        Thresholds,
        breaches,
        dead_letters,
        outbox,
        subscription_backlog,
        worker_lag,
    )
    from redis_spanner.producers.spanner import open_database
    from redis_spanner.schemas.errors import ConfigError
    from redis_spanner.schemas.settings import get_settings

    if max_lag_p99 is not None and worker_metrics is None:
        raise ConfigError("--max-lag-p99 needs --worker-metrics URL")
    limits = Thresholds(max_backlog, max_oldest_seconds, max_dead_letters, max_lag_p99)
    settings = get_settings()
    require_reachable(settings, SPANNER, PUBSUB, timeout=min(timeout, 3.0))
    found: dict[str, Any] = {"outbox": outbox(open_database(settings))}
    hold = HoldSubscription(settings.dead_letter_subscription_path, deadline=timeout, wait=1.0)
    try:
        found["dead_letters"] = dead_letters(hold, time.time())
    finally:
        hold.close()
    found["subscription"] = {"path": settings.subscription_path,
                             **subscription_backlog(settings)}
    found["worker_lag"] = worker_lag(worker_metrics) if worker_metrics else None
    crossed = breaches(found, limits)
    found["thresholds_crossed"] = crossed
    render(found, Console(stderr=as_json, emoji=False))
    if as_json:
        typer.echo(json.dumps(found, default=str))
    if crossed:
        raise typer.Exit(1)


def render(found: dict[str, Any], console: Console) -> None:
    def say(text: str) -> None:
        console.print(text, markup=False, highlight=False, soft_wrap=True)

    box, dead = found["outbox"], found["dead_letters"]
    oldest = box["oldest_seconds"]
    say(f"outbox: {box['backlog']} row(s) waiting"
        + (f", oldest {_age(oldest)}" if oldest is not None else ""))
    if box["shards"]:
        print_table(console, ("shard", "rows", "oldest"), [
            [str(s["shard"]), str(s["rows"]), _age(s["oldest_seconds"])] for s in box["shards"]])
    if box["relays"]:
        print_table(console, ("relay", "leased shards"), [
            [r["owner"], ", ".join(map(str, r["shards"])) or "-"] for r in box["relays"]])
    else:
        say("relays: none alive")
    if box["unleased_backlog_shards"]:
        say("shards with rows and no lease: "
            + ", ".join(map(str, box["unleased_backlog_shards"])))
    more = "" if dead["complete"] else " (at least: the scan stopped there)"
    say(f"dead letters: {dead['count']}{more}")
    if dead["by_reason"]:
        print_table(console, ("reason", "count"),
                    [[reason, str(n)] for reason, n in dead["by_reason"].items()])
    if dead["oldest"]:
        o = dead["oldest"]
        say(f"oldest dead letter: {o['message_id']} (event {o['event_id'] or '-'}, "
            f"{o['reason']}, {_age(o['age_seconds'])} ago)")
    sub = found["subscription"]
    if sub["available"]:
        say(f"subscription {sub['path']}: {_or_dash(sub['undelivered'])} undelivered, oldest "
            f"unacked {_age(sub['oldest_unacked_seconds'])}")
    else:
        say(f"subscription {sub['path']}: backlog unavailable ({sub['why']})")
    lag = found["worker_lag"]
    if lag:
        say(f"worker lag over {lag['events']} event(s): p50 {_secs(lag['p50'])}, "
            f"p90 {_secs(lag['p90'])}, p99 {_secs(lag['p99'])}")
    for line in found["thresholds_crossed"]:
        say(f"threshold crossed: {line}")


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.1f}s"


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:g}s"


def _or_dash(value: object) -> str:
    return "-" if value is None else str(value)
