"""Run the demo: stack, provisioning, relays, a worker, writers and readers, then the check."""

from __future__ import annotations

import logging
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

from redis_spanner.consumers.pubsub import PullSubscription
from redis_spanner.consumers.readthrough import ReadThrough
from redis_spanner.consumers.verify import verify
from redis_spanner.consumers.worker import Consumer, PullWorker, healer
from redis_spanner.infra.demo import chaos, workload
from redis_spanner.infra.demo.tally import Tally
from redis_spanner.infra.local.stack import started
from redis_spanner.infra.provision.pubsub import delete_paths
from redis_spanner.infra.provision.run import provision
from redis_spanner.infra.spanner.ddl import DEMO_SCHEMA_PATH
from redis_spanner.producers.fast_path import FastPath
from redis_spanner.producers.outbox import OUTBOX_SHARDS
from redis_spanner.producers.runner import build_changestream_relay, build_relay
from redis_spanner.producers.spanner import open_database
from redis_spanner.schemas.settings import Settings, load_settings
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoOptions:
    duration: float = 15.0
    write_rate: float = 40.0
    read_rate: float = 200.0
    writers: int = 2
    readers: int = 4
    accounts: int = 200
    skew: float = 1.1
    relays: int = 2
    check_sample: float = 0.2
    quiesce_timeout: float = 60.0
    seed: int = 7
    mode: str = "invalidate"
    """``invalidate``: changes tombstone the account key and readers refill it;
    ``rewarm``: the consumer reads the changed row and writes the fresh value itself."""
    chaos: bool = False
    """Inject faults while the workload runs (``redis_spanner.infra.demo.chaos``)."""
    source: str = "outbox"
    """``outbox``: writers record outbox rows, relays publish them; ``changestream``: writers
    write no outbox rows, change-stream relays publish the stream's row changes."""
    fast_path: bool = False
    """Writers commit every other account with the writer's fast path
    (``redis_spanner.producers.fast_path``); the report gives stale reads for each half."""


def run_demo(options: DemoOptions, console: Console) -> dict[str, Any]:
    with chaos.environment(options.chaos, console) as targets, started() as env:
        os.environ.update(env.exports())
        if options.mode == "rewarm":
            os.environ["REDIS_SPANNER_CATALOG"] = "redis_spanner.schemas.catalog:DEMO_REWARM"
        os.environ["REDIS_SPANNER_SOURCE"] = options.source
        settings = own_run(load_settings(), uuid.uuid4().hex[:8])
        console.print(f"[bold]mode[/] {options.mode}: catalog {settings.catalog}, "
                      f"source {settings.source}, namespace {settings.namespace}")
        console.print(f"[bold]stack[/] pubsub={env.pubsub_emulator_host} "
                      f"spanner={env.spanner_emulator_host}")
        report = provision(settings, ddl=[DEMO_SCHEMA_PATH])
        console.print(f"[bold]provisioned[/] {settings.topic_path}, "
                      f"{settings.subscription_path}, database {settings.database}")
        log.debug("provision report: %s", report)
        try:
            return _run(options, settings, console, targets)
        finally:
            delete_paths((settings.subscription_path, settings.heal_subscription_path,
                          settings.dead_letter_subscription_path),
                         (settings.heal_topic_path, settings.dead_letter_topic_path))


def own_run(settings: Settings, tag: str) -> Settings:
    """This run's own subscription (on the shared events topic, which every relay publishes
    to), heal topic and subscription, dead-letter topic and hold subscription, and key
    namespace: a worker already
    consuming the shared subscription can't take the demo's events, and the check sees only
    the demo's keys."""
    return settings.model_copy(update={
        "subscription": f"{settings.subscription}-demo-{tag}",
        "heal_topic": f"{settings.topic}-heal-demo-{tag}",
        "heal_subscription": f"{settings.subscription}-heal-demo-{tag}",
        "dead_letter_topic": f"{settings.dead_letter_topic}-demo-{tag}",
        "dead_letter_subscription": f"{settings.dead_letter_subscription}-demo-{tag}",
        "namespace": f"demo-{tag}",
    })


def _run(options: DemoOptions, settings: Settings, console: Console,
         targets: chaos.Targets | None = None) -> dict[str, Any]:
    rng = random.Random(options.seed)
    tally = Tally()
    database = open_database(settings)
    ids = workload.account_ids(options.accounts)
    consumer = Consumer.from_settings(settings, observer=tally.on_outcomes)
    client = ReadThrough(consumer.catalog, consumer.cache, consumer.rows)
    pick = workload.zipf_picker(ids, options.skew, rng)
    split = (workload.Split.alternate(FastPath.from_settings(settings), ids)
             if options.fast_path else None)
    schedule = (chaos.Schedule(targets, settings.topic_path, console,
                               random.Random(options.seed + 1), database=database)
                if targets else None)

    pipeline_stop = threading.Event()
    load_stop = threading.Event()
    outbox = options.source == "outbox"
    with _threads(pipeline_stop) as spawn:
        relays: list[Any] = [
            (build_relay if outbox else build_changestream_relay)(
                settings, on_published=tally.on_published)[0]
            for _ in range(options.relays)]
        for relay in relays:
            spawn(partial(relay.run, pipeline_stop))
        worker = PullWorker(
            PullSubscription(settings.subscription_path, max_messages=settings.worker_batch),
            schedule.wrap(consumer.processor) if schedule else consumer.processor,
            streams=settings.worker_streams,
        )
        spawn(lambda: worker.run(pipeline_stop, pull_timeout=1.0))
        heal = healer(settings, consumer)
        spawn(lambda: heal.run(pipeline_stop, pull_timeout=1.0))
        if outbox:
            _wait_for_leases(relays, console)
        else:
            _wait_for_stream(relays, console)
        console.print(f"[bold]seeding[/] {len(ids)} accounts, each with "
                      + ("an outbox event" if outbox else "no outbox row"))
        for event_id in workload.seed_accounts(database, ids, outbox=outbox):
            tally.on_commit(event_id)
        latest = workload.latest_commit(database)
        with _threads(load_stop) as load:
            for _ in range(options.writers):
                step = workload.writer(database, pick, tally, random.Random(rng.random()),
                                       split, outbox=outbox)
                load(partial(workload.paced, options.write_rate / options.writers, load_stop,
                             step))
            for n in range(options.readers):
                step = workload.reader(client, pick, tally, latest, options.check_sample,
                                       random.Random(rng.random() + n), split)
                load(partial(workload.paced, options.read_rate / options.readers, load_stop,
                             step))
            if schedule:
                load(lambda: schedule.run(load_stop))
            _progress(console, tally, options.duration, "running")
        quiet_for = _quiesce(console, tally, options.quiesce_timeout)
    checked = verify(consumer.cache, consumer.catalog, consumer.rows)
    consumer.close()
    if split:
        split.fast_path.close()
    result = _report(tally, len(checked.stale), quiet_for, options.duration, len(ids))
    result["coalesced"] = consumer.processor.coalesced
    result["foreign_keys"] = len(checked.foreign)
    result["faults"] = dict(schedule.injected) if schedule else {}
    if split:
        result["stale_by_writer"] = tally.stale_by()
    return result


def _wait_for_leases(relays: list[Any], console: Console, timeout: float = 15.0) -> None:
    """Start the workload once the relays share the outbox shards between them."""
    deadline = time.monotonic() + timeout
    with console.status("relays taking their outbox shard leases"):
        while time.monotonic() < deadline and not _shared(relays):
            time.sleep(0.05)


def _wait_for_stream(relays: list[Any], console: Console, timeout: float = 30.0) -> None:
    """Start the workload once the change stream has a starting point and its first
    partitions are leased."""
    deadline = time.monotonic() + timeout
    with console.status("change-stream relays taking their partitions"):
        while time.monotonic() < deadline and not (
            all(r.ready.is_set() for r in relays) and all(r.partitions for r in relays)
        ):
            time.sleep(0.05)


def _shared(relays: list[Any]) -> bool:
    held = [len(r.shards) for r in relays]
    return sum(held) == OUTBOX_SHARDS and max(held) - min(held) <= 1


@contextmanager
def _threads(stop: threading.Event) -> Iterator[Callable[[Callable[[], None]], None]]:
    threads: list[threading.Thread] = []

    def spawn(target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        threads.append(thread)

    try:
        yield spawn
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)


def _progress(console: Console, tally: Tally, seconds: float, label: str) -> None:
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), TimeElapsedColumn(),
        TextColumn("{task.fields[counts]}"), console=console, transient=False,
    ) as progress:
        task = progress.add_task(label, total=seconds, counts="")
        start = time.monotonic()
        while (elapsed := time.monotonic() - start) < seconds:
            progress.update(task, completed=elapsed, counts=_counts(tally))
            time.sleep(0.25)
        progress.update(task, completed=seconds, counts=_counts(tally))


def _counts(tally: Tally) -> str:
    return (f"committed {len(tally.committed)}  published {len(tally.published)}  "
            f"applied {len(tally.applied)}  reads {tally.reads}")


def _quiesce(console: Console, tally: Tally, timeout: float) -> float:
    """Wait until every committed event was applied or dead-lettered; returns the wait."""
    start = time.monotonic()
    with console.status("quiescing: waiting for every committed event to reach Redis"):
        while tally.unaccounted() and time.monotonic() - start < timeout:
            time.sleep(0.05)
    return time.monotonic() - start


def _report(
    tally: Tally, stale_keys: int, quiesce_seconds: float, duration: float, seeded: int
) -> dict[str, Any]:
    """``events_per_s`` counts the workload's commits only, not the seeding."""
    lost = tally.unaccounted()
    return {
        "committed": len(tally.committed),
        "published": len(tally.published),
        "applied": len(tally.applied),
        "dead_lettered": sum(tally.dead_lettered.values()),
        "dead_lettered_by_reason": dict(tally.dead_lettered),
        "lost": len(lost),
        "stale_keys": stale_keys,
        "reads": tally.reads,
        "hit_ratio": round(tally.hits / tally.reads, 4) if tally.reads else None,
        "stale_reads": tally.stale_reads,
        "checked_reads": tally.checked_reads,
        "lag_ms": tally.lag_ms(),
        "quiesce_ms": round(quiesce_seconds * 1000, 1),
        "write_errors": tally.write_errors,
        "events_per_s": round((len(tally.committed) - seeded) / duration, 1),
    }
