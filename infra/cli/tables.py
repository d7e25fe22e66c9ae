"""Tables that read well wherever they go.

On a terminal: a boxed table when it fits the width (one column may give way first), else one
block of ``column  value`` lines per row, values wrapped whole, so nothing is cut at any
width. Piped or redirected: plain columns aligned with spaces, never wrapped or truncated, one
line per row, for ``grep``, ``sort`` and ``column``.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text

GAP = "  "
MIN_SHRUNK = 12


def print_table(console: Console, columns: Sequence[str], rows: Sequence[Sequence[str]], *,
                title: str | None = None, header: bool = True, shrink: str | None = None,
                shrink_to: int = 48) -> None:
    """Print ``rows`` under ``columns``; ``shrink`` names the column that gives way first on
    a terminal (down to ``shrink_to`` at most, 12 at least, with an ellipsis)."""
    if not console.is_terminal:
        _plain(console, columns, rows, title, header)
        return
    widths = _widths(columns, rows, header)
    fixed = sum(w for c, w in zip(columns, widths, strict=True) if c != shrink)
    borders = 3 * len(columns) + 1
    shrunk = min(shrink_to, max(MIN_SHRUNK, console.width - fixed - borders)) if shrink else 0
    if fixed + shrunk + borders > console.width:
        _records(console, columns, rows, title)
        return
    table = Table(title=title, show_header=header)
    for name in columns:
        if name == shrink:
            table.add_column(name, no_wrap=True, overflow="ellipsis", max_width=shrunk)
        else:
            table.add_column(name, no_wrap=True)
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))  # Text: cells are data, never markup
    console.print(table)


def _widths(columns: Sequence[str], rows: Sequence[Sequence[str]], header: bool) -> list[int]:
    return [max([len(name) if header else 0, *(len(row[i]) for row in rows)])
            for i, name in enumerate(columns)]


def _line(console: Console, text: str) -> None:
    console.print(text, markup=False, highlight=False, emoji=False, soft_wrap=True)


def _plain(console: Console, columns: Sequence[str], rows: Sequence[Sequence[str]],
           title: str | None, header: bool) -> None:
    widths = _widths(columns, rows, header)
    if title:
        _line(console, title)
    for cells in ([list(columns)] if header else []) + [list(r) for r in rows]:
        _line(console, GAP.join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())


def _records(console: Console, columns: Sequence[str], rows: Sequence[Sequence[str]],
             title: str | None) -> None:
    if title:
        _line(console, title)
    for n, row in enumerate(rows):
        if n:
            _line(console, "")
        block = Table.grid(padding=(0, 2))
        block.add_column(no_wrap=True)
        block.add_column(overflow="fold")  # a long value wraps under itself, whole
        for name, cell in zip(columns, row, strict=True):
            block.add_row(Text(name), Text(cell))
        console.print(block)
