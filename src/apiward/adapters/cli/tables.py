"""Tables that fit the terminal: ids whole, the least needed columns left out first.

Every listing of the CLI is one of these. At any width, a column marked ``whole`` (an id,
a key's hint: what the next command needs) is printed in full on one line; the other
columns keep one line per row too, cut with an ellipsis when they must be. When the row
still does not fit, columns are left out, the least needed first, and a line under the
table names them and points to ``--json``, which always has every field.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.console import Console
from rich.markup import escape
from rich.table import Table

GAP = 2
"""Columns are separated by two spaces (no borders: they cost a column's worth of width)."""

NARROWEST = 6
"""A cut column keeps at least this many characters (with its ellipsis)."""


@dataclass(frozen=True, slots=True)
class Column:
    title: str
    whole: bool = False
    """Never cut nor left out: ids and key hints."""
    keep: int = 0
    """Higher is kept longer when the terminal is narrow."""
    right: bool = False
    least: int = 0
    """Cut no narrower than this (a time, an address): left out rather than cut more."""


def minute(iso: str) -> str:
    """A stored time as the tables show it: to the minute, in UTC."""
    return iso[:16].replace("T", " ")


def fitted(
    columns: Sequence[Column], rows: Sequence[Sequence[str]], width: int
) -> tuple[list[int], list[int]]:
    """Which columns to show (their indexes) and each one's width, for ``width``."""
    natural = [max([len(c.title), *(len(row[i]) for row in rows)]) for i, c in enumerate(columns)]
    shown = list(range(len(columns)))

    def total(indexes: list[int], widths: list[int]) -> int:
        return sum(widths[i] for i in indexes) + GAP * (len(indexes) - 1)

    widths = list(natural)
    while total(shown, widths) > width:
        # Cut what may be cut, down to NARROWEST (or its title), widest first.
        over = total(shown, widths) - width
        cuttable = sorted(
            (i for i in shown if not columns[i].whole and widths[i] > _floor(columns[i])),
            key=lambda i: -widths[i],
        )
        for i in cuttable:
            if over <= 0:
                break
            cut = min(over, widths[i] - _floor(columns[i]))
            widths[i] -= cut
            over -= cut
        if total(shown, widths) <= width:
            break
        droppable = [i for i in shown if not columns[i].whole]
        if not droppable:
            break  # ids alone wider than the terminal: print them whole anyway
        shown.remove(min(droppable, key=lambda i: (columns[i].keep, -i)))
        widths = list(natural)  # with one column fewer, the others may need no cut
    return shown, widths


def _floor(column: Column) -> int:
    return max(NARROWEST, len(column.title), column.least)


def show(
    console: Console,
    columns: Sequence[Column],
    rows: Sequence[Sequence[str]],
    *,
    footer: str | None = None,
) -> None:
    """Print ``rows`` as a table that fits ``console``'s width."""
    indexes, widths = fitted(columns, rows, console.width)
    table = Table(
        box=None, pad_edge=False, padding=(0, GAP // 2), expand=False, header_style="bold"
    )
    for i in indexes:
        c = columns[i]
        table.add_column(
            c.title,
            no_wrap=True,
            overflow="fold" if c.whole else "ellipsis",
            width=widths[i],
            justify="right" if c.right else "left",
        )
    for row in rows:
        table.add_row(*(escape(row[i]) for i in indexes))
    console.print(table)
    hidden = [columns[i].title for i in range(len(columns)) if i not in indexes]
    notes = [footer] if footer else []
    if hidden:
        notes.append(f"Not shown at this width: {', '.join(hidden)} (--json has every field).")
    for note in notes:
        console.print(note, markup=False, highlight=False)
