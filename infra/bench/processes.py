"""Worker processes side by side on one backlog, as separate instances would run.

One interpreter runs its Python on one core at a time, so a worker's throughput is bounded by
its CPU per event; more throughput comes from more workers. The parent publishes the backlog
and starts ``python -m redis_spanner.infra.bench.processes`` ``processes`` times with the
run's settings in the environment. Each child builds the worker as ``redis-spanner worker``
does, says it is ready, starts pulling when told to, and once the subscription has been quiet
for ``QUIET_SECONDS`` prints one JSON line: how many events it decided and when it decided the
first and the last batch (wall clock). The rate is all events over the span from the first
batch any child decided to the last.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from typing import Any

from redis_spanner.infra.bench.stack import child_env, publish_events
from redis_spanner.infra.cli.runtime import settle_heap
from redis_spanner.schemas.settings import Settings

QUIET_SECONDS = 2.0
LIMIT_SECONDS = 300.0


def drain(settings: Settings, events: int, processes: int) -> float:
    """Events per second ``processes`` workers decide together, draining ``events``."""
    publish_events(settings, events)
    env = child_env(settings)
    children = [subprocess.Popen([sys.executable, "-m", "redis_spanner.infra.bench.processes"],
                                 env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
                for _ in range(processes)]
    try:
        for child in children:
            assert child.stdout is not None
            if child.stdout.readline().strip() != "ready":
                raise RuntimeError(f"a drain worker failed to start: {_tail(child)}")
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        reports = []
        for child in children:
            out, err = child.communicate(timeout=LIMIT_SECONDS)
            if child.returncode != 0:
                last = (err.strip().splitlines() or ["no output"])[-1]
                raise RuntimeError(f"a drain worker failed: {last}")
            reports.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    decided = sum(r["events"] for r in reports)
    if decided < events:
        raise RuntimeError(f"the drain workers decided {decided} of {events} events")
    span = max(r["last"] for r in reports) - min(r["first"] for r in reports if r["events"])
    return float(decided / span)


def _tail(child: subprocess.Popen[str]) -> str:
    child.kill()
    _, err = child.communicate()
    return (err.strip().splitlines() or ["no output"])[-1]


def _drain() -> dict[str, Any]:
    from redis_spanner.consumers.messages import Outcome
    from redis_spanner.consumers.pubsub import PullSubscription
    from redis_spanner.consumers.worker import Consumer, PullWorker
    from redis_spanner.schemas.settings import load_settings

    settings = load_settings()
    lock = threading.Lock()
    batches: list[tuple[float, int]] = []

    def observe(outcomes: list[Outcome]) -> None:
        with lock:
            batches.append((time.time(), len(outcomes)))

    consumer = Consumer.from_settings(settings, observer=observe)
    subscription = PullSubscription(settings.subscription_path,
                                    max_messages=settings.worker_batch)
    worker = PullWorker(subscription, consumer.processor, streams=settings.worker_streams)
    settle_heap()
    print("ready", flush=True)
    sys.stdin.readline()
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop, 1.0), daemon=True)
    began = time.time()
    thread.start()
    while time.time() - began < LIMIT_SECONDS:
        time.sleep(0.1)
        with lock:
            latest = batches[-1][0] if batches else began
        if time.time() - latest > QUIET_SECONDS:
            break
    stop.set()
    thread.join(30)
    subscription.close()
    consumer.close()
    return {"events": sum(n for _, n in batches),
            "first": batches[0][0] if batches else began,
            "last": batches[-1][0] if batches else began}


if __name__ == "__main__":
    print(json.dumps(_drain()))
