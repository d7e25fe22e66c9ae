"""``redis-spanner bench``: the consumer and relay measured against the transport's limits, on
the local stack, in one run.

Throughput stages run once to warm the emulators up, then ``repeats`` times each, interleaved,
on fresh resources, and report medians. Lags pool their samples. Ratios compare figures of
this run only.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis_spanner.infra.bench import consumer, memory, pipeline, processes, transport
from redis_spanner.infra.bench.stack import REWARM_CATALOG, Rate, fresh
from redis_spanner.infra.local.stack import started
from redis_spanner.schemas.settings import load_settings

Progress = Callable[[str], None]

DEMO_WRITE_RATE = 40.0
"""Writes per second of ``redis-spanner demo`` by default: the lag stage's rate."""


@dataclass(frozen=True)
class BenchOptions:
    events: int = 5000
    repeats: int = 3
    rss_events: int = 100_000
    lag_seconds: float = 15.0
    naive_seconds: float = 3.0
    reads: int = 300

    @classmethod
    def quick(cls) -> BenchOptions:
        return cls(events=2000, repeats=3, rss_events=10_000, lag_seconds=5.0,
                   naive_seconds=1.5, reads=100)


def run_bench(options: BenchOptions, progress: Progress) -> dict[str, Any]:
    with started() as env:
        os.environ.update(env.exports())
        base = load_settings()
        runs: dict[str, list[float]] = {}
        cpu: dict[str, list[float]] = {}
        n = options.events
        stages: list[tuple[str, Callable[[Any], float | Rate], str | None]] = [
            ("raw_pull_ack", lambda s: transport.raw_pull_ack(s, n, s.worker_streams), None),
            ("naive", lambda s: consumer.naive(s, options.naive_seconds), None),
            ("consumer", lambda s: consumer.drain(s, n), None),
            ("consumer_hot", lambda s: consumer.drain(s, n, hot_keys=max(1, n // 50)), None),
            ("consumer_two", lambda s: processes.drain(s, 2 * n, 2), None),
            ("consumer_rewarm", lambda s: consumer.drain(s, n, rewarm=True), REWARM_CATALOG),
            ("core", lambda s: consumer.core(s, n), None),
            ("rewarm_read", lambda s: consumer.rewarm_read(s, n), REWARM_CATALOG),
            ("raw_publish", lambda s: transport.raw_publish(s, n), None),
            ("raw_publish_batched", lambda s: transport.raw_publish_batched(s, n), None),
            ("outbox_read", lambda s: pipeline.outbox_read(s, n), None),
            ("relay", lambda s: pipeline.relay(s, n), None),
        ]
        # The emulators run slower until their JIT and caches warm up (a stage's first run
        # measured up to half its later ones): every stage runs once uncounted first.
        for name, measure, catalog in stages:
            with fresh(base, f"warm-{name[:8]}", catalog=catalog) as settings:
                measure(settings)
        progress("warm-up: every stage once, not counted")
        for r in range(options.repeats):
            for name, measure, catalog in stages:
                with fresh(base, f"{name[:8]}-{r}", catalog=catalog) as settings:
                    measured = measure(settings)
                rate = measured.per_second if isinstance(measured, Rate) else measured
                runs.setdefault(name, []).append(rate)
                line = f"{name} run {r + 1}/{options.repeats}: {rate:,.0f}/s"
                if isinstance(measured, Rate):
                    cpu.setdefault(name, []).append(measured.cpu_us)
                    line += f", {measured.cpu_us:.1f} µs CPU each"
                progress(line)
        lags: dict[str, list[float]] = {}
        for mode in ("pull", "streaming"):
            with fresh(base, f"floor-{mode}") as settings:
                lags[f"floor_{mode}"] = transport.floor_lags(
                    settings, DEMO_WRITE_RATE, options.lag_seconds, mode)
            progress(f"floor ({mode}): {len(lags[f'floor_{mode}'])} samples")
        with fresh(base, "lag") as settings:
            lags["end_to_end"] = pipeline.end_to_end_lags(settings, DEMO_WRITE_RATE,
                                                         options.lag_seconds)
        progress(f"end to end: {len(lags['end_to_end'])} samples")
        with fresh(base, "read") as settings:
            reads = pipeline.read_path(settings, options.reads)
        progress(f"read path: {reads}")
        with fresh(base, "rss") as settings:
            rss = memory.worker_rss(settings, options.rss_events)
        progress(f"worker RSS: peak {rss['rss_peak_mib']} MiB, "
                 f"growth after warm-up {rss['rss_growth_mib']} MiB")
    return summarize(options, runs, lags, reads, rss, cpu)


def _percentile(samples: list[float], p: float) -> float | None:
    if not samples:
        return None
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def summarize(options: BenchOptions, runs: dict[str, list[float]],
              lags: dict[str, list[float]], reads: dict[str, float],
              rss: dict[str, Any], cpu: dict[str, list[float]]) -> dict[str, Any]:
    """Every figure and ratio, as one JSON-able dict."""
    rate = {name: statistics.median(values) for name, values in runs.items()}
    cpu_us = {name: statistics.median(values) for name, values in cpu.items()}
    lag = {name: {"p50_ms": _percentile(s, 50), "p99_ms": _percentile(s, 99),
                  "samples": len(s)} for name, s in lags.items()}
    floors = [p99 for k in ("floor_pull", "floor_streaming")
              if (p99 := _percentile(lags[k], 99)) is not None]
    floor_p99 = min(floors) if floors else None
    return {
        "events_per_run": options.events,
        "repeats": options.repeats,
        "rates_per_s": {k: round(v) for k, v in rate.items()},
        "runs_per_s": {k: [round(x) for x in v] for k, v in runs.items()},
        "lag_ms": {k: {m: (round(x, 1) if isinstance(x, float) else x) for m, x in v.items()}
                   for k, v in lag.items()},
        "lag_samples_ms": {k: [round(x, 1) for x in v] for k, v in lags.items()},
        "cpu_us_per_item": {k: round(v, 1) for k, v in cpu_us.items()},
        "read_ms": {k: round(v, 3) for k, v in reads.items()},
        "worker_rss": rss,
        "ratios": {
            "consumer_vs_raw": _ratio(rate["consumer"], rate["raw_pull_ack"]),
            "consumer_vs_naive": _ratio(rate["consumer"], rate["naive"]),
            "consumer_hot_vs_raw": _ratio(rate["consumer_hot"], rate["raw_pull_ack"]),
            "consumer_two_vs_raw": _ratio(rate["consumer_two"], rate["raw_pull_ack"]),
            "consumer_two_vs_one": _ratio(rate["consumer_two"], rate["consumer"]),
            "raw_cpu_vs_consumer_cpu": _ratio(cpu_us["raw_pull_ack"], cpu_us["consumer"]),
            # One interpreter runs Python on one core at a time: at its CPU per event the
            # worker goes at most 1e6 / cpu events a second, whatever the transport allows.
            "consumer_cores_busy": round(rate["consumer"] * cpu_us["consumer"] / 1e6, 3),
            "consumer_one_core_vs_raw": _ratio(1e6 / cpu_us["consumer"], rate["raw_pull_ack"]),
            "cpu_us_per_event_for_half_raw": round(1e6 / (0.5 * rate["raw_pull_ack"]), 1),
            "rewarm_read_vs_raw": _ratio(rate["rewarm_read"], rate["raw_pull_ack"]),
            "rewarm_vs_raw": _ratio(rate["consumer_rewarm"], rate["raw_pull_ack"]),
            "relay_vs_raw_publish": _ratio(rate["relay"], rate["raw_publish"]),
            "relay_vs_outbox_read": _ratio(rate["relay"], rate["outbox_read"]),
            "outbox_read_vs_raw_publish": _ratio(rate["outbox_read"], rate["raw_publish"]),
            "relay_vs_batched_publish": _ratio(rate["relay"], rate["raw_publish_batched"]),
            "lag_p99_vs_floor_p99": _ratio(lag["end_to_end"]["p99_ms"], floor_p99),
            "spanner_read_vs_cached_get": _ratio(reads["spanner_read_ms"],
                                                 reads["cached_get_ms"]),
        },
    }
