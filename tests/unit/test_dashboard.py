"""The shipped Grafana dashboard and the README's metrics table match the metrics the code
exports: every name an expression uses exists, and every exported metric is shown and listed."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client.metrics import MetricWrapperBase
from redis_spanner.consumers import metrics as consumer_metrics
from redis_spanner.producers import metrics as relay_metrics

ROOT = Path(__file__).parents[2]
DASHBOARD = ROOT / "infra" / "grafana" / "redis-spanner.json"
NAME = re.compile(r"\bredis_spanner_[a-z_]+")
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"),
            "gauge": ("",)}


def exported() -> dict[str, set[str]]:
    """Each metric the two metrics modules define: its family name and the sample names it
    is scraped as."""
    families: dict[str, set[str]] = {}
    for module in (consumer_metrics, relay_metrics):
        for value in vars(module).values():
            if isinstance(value, MetricWrapperBase):
                for family in value.describe():
                    families[family.name] = {family.name + s for s in SUFFIXES[family.type]}
    assert len(families) >= 10
    return families


def expressions() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    return [t["expr"] for panel in board["panels"] for t in panel["targets"]]


def test_every_dashboard_expression_names_an_exported_metric() -> None:
    """A renamed or removed metric fails here instead of leaving an empty panel."""
    samples = set().union(*exported().values())
    used = {name for expr in expressions() for name in NAME.findall(expr)}
    assert used, "the dashboard has no expression"
    assert used <= samples, sorted(used - samples)


def test_every_exported_metric_is_on_the_dashboard_and_in_the_readme() -> None:
    """No metric is exported that an operator can't find: each has a panel and a README row
    (with its scraped name and labels conventions: counters end in _total, durations in
    _seconds)."""
    used = {name for expr in expressions() for name in NAME.findall(expr)}
    readme = (ROOT / "README.md").read_text()
    for family, names in exported().items():
        assert names & used, f"{family} has no panel"
        listed = next(iter(sorted(names))) if len(names) == 1 else family + (
            "_total" if any(n.endswith("_total") for n in names) else "")
        assert f"`{listed}`" in readme, f"{listed} is not in the README's metrics table"
        if "duration" in family or "lag" in family or "age" in family or "delay" in family:
            assert family.endswith("_seconds"), family
