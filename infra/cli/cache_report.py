"""Human renderings of the cache tools' reports."""

from __future__ import annotations

from redis_spanner.consumers.verify import VerifyReport
from redis_spanner.infra.cli.tables import print_table
from rich.console import Console


def render_verify(report: VerifyReport, console: Console) -> None:
    summary = report.as_dict()
    print_table(console, ("measure", "count"), [
        [name, str(summary[name])]
        for name in ("checked", "fresh", "tombstones", "stale", "orphaned", "foreign",
                     "repaired", "deleted", "stale_remaining", "foreign_remaining")
    ], title="cache vs Spanner", header=False)
    labelled = [*(("stale", key) for key in report.stale[:20]),
                *(("orphaned", key) for key in report.orphaned[:20]),
                *((f"foreign ({kind})", key) for key, kind in list(report.foreign.items())[:20])]
    for label, key in labelled:
        # Keys are data: no markup, no emoji shortcodes (":ghost:" must print as is).
        console.print(f"  {label}: {key}", markup=False, emoji=False, highlight=False)
