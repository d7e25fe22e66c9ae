"""The bench's result as a markdown table and as a PNG (throughput bars, lag CDFs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

TARGETS = {
    "consumer_vs_raw": ("≥ 0.5", 0.5),
    "consumer_vs_naive": ("≥ 25", 25.0),
    "rewarm_vs_raw": ("≥ 0.3", 0.3),
    "relay_vs_raw_publish": ("≥ 0.5", 0.5),
    "spanner_read_vs_cached_get": ("≥ 10", 10.0),
}

_RATES = (
    ("raw_pull_ack", "raw Pub/Sub pull(1000) + acknowledge, no work", None),
    ("naive", "naive consumer: pull 1, decode, one Redis call, ack", None),
    ("consumer", "worker, distinct keys", "consumer_vs_raw"),
    ("consumer_hot", "worker, hot keys (50 events per key)", "consumer_hot_vs_raw"),
    ("consumer_two", "two worker processes side by side, distinct keys", "consumer_two_vs_raw"),
    ("consumer_rewarm", "worker, rewarm (batched Spanner reads)", "rewarm_vs_raw"),
    ("rewarm_read", "rewarm's batched Spanner reads alone, 100 keys a read",
     "rewarm_read_vs_raw"),
    ("core", "the core alone, one thread, batches of 100", None),
    ("raw_publish", "raw publish: requests of 1,000, 4 in flight", None),
    ("raw_publish_batched", "raw publish through the client's batching", None),
    ("outbox_read", "outbox read alone: the relay's reads, rows decoded",
     "outbox_read_vs_raw_publish"),
    ("relay", "relay: outbox rows read, published, deleted", "relay_vs_raw_publish"),
)


def _fmt(x: Any, suffix: str = "") -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:,.2f}{suffix}" if x < 100 else f"{x:,.0f}{suffix}"
    return f"{x:,}{suffix}"


def table(result: dict[str, Any]) -> str:
    """Markdown: each figure, the ratio it is judged by, and the target."""
    rates, ratios = result["rates_per_s"], result["ratios"]
    lines = ["| measure | median | ratio | target |", "|---|---|---|---|"]
    for name, label, ratio in _RATES:
        target = (TARGETS[ratio][0] + " x raw") if ratio in TARGETS else ""
        if ratio == "consumer_vs_raw":
            target = "≥ 0.5 x raw, ≥ 25 x naive"
            shown = f"{ratios[ratio]} x raw, {ratios['consumer_vs_naive']} x naive"
        elif ratio == "relay_vs_raw_publish":
            target = "≥ 0.5 x publish"
            shown = (f"{ratios[ratio]} x publish, {ratios['relay_vs_outbox_read']} x read, "
                     f"{ratios['relay_vs_batched_publish']} x batched")
        elif ratio == "consumer_two_vs_raw":
            target = ""
            shown = f"{ratios[ratio]} x raw, {ratios['consumer_two_vs_one']} x one worker"
        elif ratio == "outbox_read_vs_raw_publish":
            target, shown = "", f"{ratios[ratio]} x publish"
        else:
            shown = f"{ratios[ratio]} x raw" if ratio else ""
        lines.append(f"| {label} | {_fmt(rates[name])}/s | {shown} | {target} |")
    cpu = result["cpu_us_per_item"]
    lines.append(f"| client CPU per event: raw pull+ack / worker, distinct keys | "
                 f"{_fmt(cpu.get('raw_pull_ack'), ' µs')} / {_fmt(cpu.get('consumer'), ' µs')} | "
                 f"{ratios['raw_cpu_vs_consumer_cpu']} |  |")
    lines.append(f"| worker process, distinct keys: cores busy (rate x CPU per event) | "
                 f"{_fmt(ratios['consumer_cores_busy'])} | one core's worth at most "
                 f"{ratios['consumer_one_core_vs_raw']} x raw |  |")
    lines.append(f"| client CPU per event: the core alone / what 0.5 x raw allows in all | "
                 f"{_fmt(cpu.get('core'), ' µs')} / "
                 f"{_fmt(ratios['cpu_us_per_event_for_half_raw'], ' µs')} |  |  |")
    lag = result["lag_ms"]
    for name, label in (("floor_pull", "publish → synchronous pull, 40/s"),
                        ("floor_streaming", "publish → streaming pull, 40/s"),
                        ("end_to_end", "commit → applied in Redis, 40 writes/s")):
        row = lag[name]
        ratio = (f"{ratios['lag_p99_vs_floor_p99']} x floor p99"
                 if name == "end_to_end" else "")
        lines.append(f"| lag, {label} | p50 {_fmt(row['p50_ms'], ' ms')}, "
                     f"p99 {_fmt(row['p99_ms'], ' ms')} | {ratio} | "
                     f"{'≤ 2 x floor p99' if name == 'end_to_end' else ''} |")
    reads = result["read_ms"]
    lines.append(f"| read: cached get / strong Spanner read | "
                 f"{_fmt(reads['cached_get_ms'], ' ms')} / {_fmt(reads['spanner_read_ms'], ' ms')}"
                 f" | {ratios['spanner_read_vs_cached_get']} x faster | ≥ 10 x |")
    rss = result["worker_rss"]
    lines.append(f"| worker RSS, {rss['events']:,}-event drain ({_fmt(rss['events_per_s'])}/s) | "
                 f"peak {_fmt(rss['rss_peak_mib'], ' MiB')} | "
                 f"{_fmt(rss['rss_growth_mib'], ' MiB')} after warm-up | flat |")
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> None:
    """Throughput bars beside their limits, and the lag CDFs against the floors."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = result["rates_per_s"]
    fig, (bars, cdf) = plt.subplots(1, 2, figsize=(12, 4.5))
    names = [n for n, _, _ in _RATES]
    limits = {"raw_pull_ack", "raw_publish", "raw_publish_batched", "outbox_read", "rewarm_read",
              "core"}
    bars.barh(names, [rates[n] for n in names],
              color=["#999999" if n in limits else "#3465a4" for n in names])
    bars.invert_yaxis()
    bars.set_xscale("log")
    bars.set_xlabel("messages / s (median, log)")
    bars.set_title("Throughput (grey: transport limits)")
    for name, samples in result["lag_samples_ms"].items():
        ordered = sorted(samples)
        if ordered:
            bars_y = [(i + 1) / len(ordered) for i in range(len(ordered))]
            cdf.plot(ordered, bars_y, label=name.replace("_", " "),
                     linestyle="--" if name.startswith("floor") else "-")
    cdf.set_xscale("log")
    cdf.set_xlabel("lag, ms (log)")
    cdf.set_ylabel("fraction of events")
    cdf.set_title("Lag CDF at 40 events/s")
    cdf.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
