"""Human renderings of the cache tools' reports."""

from __future__ import annotations

from redis_spanner.consumers.verify import VerifyReport
from redis_spanner.infra.tables import print_table
from rich.console import Console


def render_verify(report: VerifyReport, console: Console) -> None:
    summary = report.as_dict()
    print_table(console, ("measure", "count"), [
        [name, str(summary[name])]
        for name in ("checked", "fresh", "tombstones", "stale", "orphaned", "unversioned",
                     "repaired", "deleted", "stale_remaining")
    ], title="cache vs Spanner", header=False)
    for label, keys in (("stale", report.stale), ("orphaned", report.orphaned),
                        ("unversioned", report.unversioned)):
        for key in keys[:20]:
            # Keys are data: no markup, no emoji shortcodes (":ghost:" must print as is).
            console.print(f"  {label}: {key}", markup=False, emoji=False, highlight=False)
