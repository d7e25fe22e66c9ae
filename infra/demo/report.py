"""The demo's closing human report."""

from __future__ import annotations

from typing import Any

from redis_spanner.infra.cli.tables import print_table
from rich.console import Console


def render(result: dict[str, Any], console: Console) -> None:
    lag = result["lag_ms"]
    rows = [
        ("committed events", result["committed"]),
        ("published", result["published"]),
        ("applied (acked by the consumer)", result["applied"]),
        ("dead-lettered", result["dead_lettered"]),
        ("lost (neither applied nor dead-lettered)", result["lost"]),
        ("lag commit -> Redis p50 / p99 / max (ms)",
         f"{lag['p50']} / {lag['p99']} / {lag['max']}"),
        ("workload writes (events/s)", result["events_per_s"]),
        ("reads (hit ratio)", f"{result['reads']} ({result['hit_ratio']})"),
        ("stale reads / checked reads", f"{result['stale_reads']} / {result['checked_reads']}"),
        ("stale keys after quiescence", result["stale_keys"]),
    ]
    for group, title in (("fast_path", "stale / checked reads, keys written with the fast path"),
                         ("outbox_only", "stale / checked reads, keys written outbox-only")):
        counts = result.get("stale_by_writer", {}).get(group)
        if counts:
            rows.append((title, f"{counts['stale_reads']} / {counts['checked_reads']} "
                                f"({_percent(counts['stale_ratio'])})"))
    for title, counts in (("faults injected", result.get("faults")),
                          ("dead-lettered by reason", result.get("dead_lettered_by_reason"))):
        if counts:
            rows.append((title, ", ".join(f"{k} {n}" for k, n in sorted(counts.items()))))
    print_table(console, ("measure", "value"), [[name, str(value)] for name, value in rows],
                title="redis-spanner demo", header=False)
    ok = result["stale_keys"] == 0 and result["lost"] == 0
    console.print("[bold green]coherent[/]: every committed event reached Redis and no cached "
                  "key differs from Spanner" if ok else
                  "[bold red]NOT coherent[/]: see lost / stale keys above")


def _percent(ratio: float | None) -> str:
    return "n/a" if ratio is None else f"{ratio * 100:.2f}%"
