"""The worker's memory over a long drain, measured in a process of its own.

The parent publishes the backlog and starts ``python -m redis_spanner.infra.bench.memory``
with the run's settings in the environment. That child builds the worker exactly as
``redis-spanner worker`` does, drains the backlog, samples its own RSS every
``SAMPLE_SECONDS`` with the count acked so far, and prints one JSON line at the end.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from typing import Any

import psutil
from redis_spanner.infra.bench.stack import Counter, child_env, publish_events
from redis_spanner.infra.cli.runtime import settle_heap
from redis_spanner.schemas.settings import Settings

SAMPLE_SECONDS = 0.05
WARM_UP = 0.25
"""The share of the drain after which the worker counts as warmed up."""


def worker_rss(settings: Settings, events: int, limit: float = 600.0) -> dict[str, Any]:
    """Peak RSS (MiB) of a worker draining ``events``, and its growth after warm-up: the
    largest RSS in the last quarter of the drain less the largest in the quarter after
    warm-up."""
    publish_events(settings, events)
    env = child_env(settings)
    child = subprocess.run(
        [sys.executable, "-m", "redis_spanner.infra.bench.memory", str(events)],
        env=env, capture_output=True, text=True, timeout=limit, check=False)
    if child.returncode != 0:
        tail = (child.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"the drain worker failed: {tail}")
    report: dict[str, Any] = json.loads(child.stdout.strip().splitlines()[-1])
    samples: list[tuple[int, float]] = report.pop("samples")
    warm = [rss for acked, rss in samples if WARM_UP * events <= acked < 0.5 * events]
    late = [rss for acked, rss in samples if acked >= 0.75 * events]
    report["rss_warm_mib"] = round(max(warm), 1) if warm else None
    report["rss_late_mib"] = round(max(late), 1) if late else None
    report["rss_growth_mib"] = (round(max(late) - max(warm), 1) if warm and late else None)
    report["samples"] = len(samples)
    return report


def _drain(events: int) -> dict[str, Any]:
    from redis_spanner.consumers.pubsub import PullSubscription
    from redis_spanner.consumers.worker import Consumer, PullWorker
    from redis_spanner.schemas.settings import load_settings

    settings = load_settings()
    acked = Counter(events)
    consumer = Consumer.from_settings(
        settings, observer=lambda outcomes: acked.add(
            sum(1 for o in outcomes if o.disposition == "ack")))
    subscription = PullSubscription(settings.subscription_path,
                                    max_messages=settings.worker_batch)
    worker = PullWorker(subscription, consumer.processor, streams=settings.worker_streams)
    settle_heap()
    process = psutil.Process()
    samples: list[tuple[int, float]] = []
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop, 1.0), daemon=True)
    began = time.monotonic()
    thread.start()
    while not acked.done.wait(SAMPLE_SECONDS):
        samples.append((acked.count, process.memory_info().rss / 2**20))
        if time.monotonic() - began > 540:
            break
    samples.append((acked.count, process.memory_info().rss / 2**20))
    elapsed = time.monotonic() - began
    stop.set()
    thread.join(30)
    subscription.close()
    consumer.close()
    peak = max(rss for _, rss in samples)
    return {"events": acked.count, "seconds": round(elapsed, 2),
            "events_per_s": round(acked.count / elapsed),
            "rss_peak_mib": round(peak, 1), "samples": samples}


if __name__ == "__main__":
    print(json.dumps(_drain(int(sys.argv[1]))))
