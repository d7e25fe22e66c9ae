"""``redis-spanner bench --quick`` as a smoke test: it completes on the session's stack and
reports sane figures. Benchmarks are not timed tests: no threshold on any figure here."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from redis_spanner.infra.local.stack import StackEnv


@pytest.mark.timeout(420)
def test_quick_bench_completes_with_every_figure_positive_and_every_ratio_finite(
    stack: StackEnv, tmp_path: Path,
) -> None:
    """The quick bench exits 0, prints the markdown table, writes the PNG, and ends with one
    JSON object whose rates, lag percentiles, read times and RSS are all positive and whose
    ratios are all finite and positive."""
    plot = tmp_path / "bench.png"
    env = {**os.environ, "REDIS_SPANNER_STATE_DIR": str(tmp_path / "state")}
    done = subprocess.run(
        [sys.executable, "-m", "redis_spanner.infra.cli", "bench", "--quick", "--json",
         "--plot", str(plot)],
        env=env, capture_output=True, text=True, timeout=400, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith("| measure |")
    result = json.loads(lines[-1])
    assert set(result["rates_per_s"]) == {"raw_pull_ack", "naive", "consumer", "consumer_hot",
                                          "consumer_two", "consumer_rewarm", "core", "rewarm_read",
                                          "raw_publish",
                                          "raw_publish_batched", "outbox_read", "relay"}
    assert all(rate > 0 for rate in result["rates_per_s"].values())
    assert all(len(runs) == result["repeats"] for runs in result["runs_per_s"].values())
    for name in ("floor_pull", "floor_streaming", "end_to_end"):
        lag = result["lag_ms"][name]
        assert lag["samples"] > 0 and 0 < lag["p50_ms"] <= lag["p99_ms"], (name, lag)
    assert all(ms > 0 for ms in result["read_ms"].values())
    assert set(result["cpu_us_per_item"]) == {"raw_pull_ack", "consumer", "consumer_hot",
                                              "consumer_rewarm", "core", "relay"}
    assert all(us > 0 for us in result["cpu_us_per_item"].values())
    rss = result["worker_rss"]
    assert rss["events"] == 10_000 and rss["rss_peak_mib"] > 0
    assert rss["rss_growth_mib"] is not None and math.isfinite(rss["rss_growth_mib"])
    assert all(r is not None and math.isfinite(r) and r > 0 for r in result["ratios"].values()
               ), result["ratios"]
    assert plot.stat().st_size > 10_000 and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
