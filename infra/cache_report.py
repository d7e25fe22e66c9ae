"""Human renderings of the cache tools' reports."""

from __future__ import annotations

from redis_spanner.consumers.verify import VerifyReport
from rich.console import Console
from rich.table import Table


def render_verify(report: VerifyReport, console: Console) -> None:
    summary = report.as_dict()
    table = Table(title="cache vs Spanner", show_header=False)
    for name in ("checked", "fresh", "tombstones", "stale", "orphaned", "unversioned",
                 "repaired", "deleted", "stale_remaining"):
        table.add_row(name, str(summary[name]))
    console.print(table)
    for label, keys in (("stale", report.stale), ("orphaned", report.orphaned),
                        ("unversioned", report.unversioned)):
        for key in keys[:20]:
            # Keys are data: no markup, no emoji shortcodes (":ghost:" must print as is).
            console.print(f"  {label}: {key}", markup=False, emoji=False, highlight=False)
