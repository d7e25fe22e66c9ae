"""Human renderings of the cache tools' reports."""

from __future__ import annotations

from redis_spanner.consumers.verify import VerifyReport
from rich.console import Console
from rich.table import Table


def render_verify(report: VerifyReport, console: Console) -> None:
    summary = report.as_dict()
    table = Table(title="cache vs Spanner", show_header=False)
    for name in ("checked", "fresh", "tombstones", "stale", "orphaned", "foreign",
                 "repaired", "deleted", "stale_remaining", "foreign_remaining"):
        table.add_row(name, str(summary[name]))
    console.print(table)
    labelled = [*(("stale", key) for key in report.stale[:20]),
                *(("orphaned", key) for key in report.orphaned[:20]),
                *((f"foreign ({kind})", key) for key, kind in list(report.foreign.items())[:20])]
    for label, key in labelled:
        # Keys are data: no markup, no emoji shortcodes (":ghost:" must print as is).
        console.print(f"  {label}: {key}", markup=False, emoji=False, highlight=False)
