"""Rich tables that stay readable at any width (issue 14, item 8).

Rich fits a table to the console by shrinking its columns, and a column of numbers
that cannot wrap is cut to `…`: at 80 columns `sc bench api` printed nothing but
`…`, and headers came out as `conta…`. A table is therefore printed, in this order
of preference:

1. as it is, when its natural width fits;
2. compact: each header word on its own line, no vertical rules, when that fits;
3. whole at its natural width when the output is not a terminal (a pipe, a CI
   log: nothing wraps it there);
4. as it is or compact, with Rich wrapping its text at spaces, when that keeps every
   header word and value whole;
5. else as plain lines, one per row: `header cell: header=value, header=value, …`.

A cell is never cut. `fit()` gives the renderable for a width, for a `Live` view.
"""
from __future__ import annotations

import io

from rich import box
from rich.console import Console, Group, RenderableType
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

_UNBOUNDED = 100_000


def natural_width(console: Console, renderable: RenderableType) -> int:
    """Columns the renderable takes when nothing limits its width."""
    options = console.options.update_width(_UNBOUNDED)
    return Measurement.get(console, options, renderable).maximum


def _header(col_header: RenderableType) -> str:
    return col_header.plain if isinstance(col_header, Text) else str(col_header)


def _cells(table: Table) -> list[list[RenderableType]]:
    columns = [list(c.cells) for c in table.columns]
    return [list(row) for row in zip(*columns)] if columns else []


def compact(table: Table) -> Table:
    """The same table, narrower: header words stacked, no vertical rules, one space apart."""
    # NOTE: SIMPLE_HEAD draws a space between columns: with no padding they are one apart.
    out = Table(title=table.title, caption=table.caption, box=box.SIMPLE_HEAD, padding=(0, 0), pad_edge=False,
                show_edge=False, title_justify=table.title_justify)
    for c in table.columns:
        out.add_column(_header(c.header).replace(" ", "\n"), justify=c.justify, no_wrap=c.no_wrap)
    for row in _cells(table):
        out.add_row(*row)
    return out


def plain(table: Table) -> Group:
    """One line per row: `header cell: header=value, header=value, …` (wrapped at spaces)."""
    headers = [_header(c.header) for c in table.columns]
    lines: list[RenderableType] = []
    if table.title:
        lines.append(Text.from_markup(table.title) if isinstance(table.title, str) else table.title)
    for row in _cells(table):
        texts = [Text.from_markup(c) if isinstance(c, str) else Text(str(c)) for c in row]
        line = Text(f"  {headers[0]} " if headers[0] else "  ")
        line.append_text(texts[0])
        line.append(": ")
        for i, (h, t) in enumerate(zip(headers[1:], texts[1:])):
            if i:
                line.append(", ")
            line.append(f"{h}=")
            line.append_text(t)
        lines.append(line)
    return Group(*lines)


def _words(table: Table) -> set[str]:
    words: set[str] = set()
    for c in table.columns:
        words.update(_header(c.header).split())
        for cell in c.cells:
            words.update((Text.from_markup(cell) if isinstance(cell, str) else Text(str(cell))).plain.split())
    return words


def readable_at(console: Console, table: Table, width: int) -> bool:
    """Whether Rich, wrapping the table to `width`, keeps every header word and every value whole
    (text wrapped at spaces is fine; a value cut to `…` or folded across lines is not)."""
    buf = io.StringIO()
    Console(file=buf, width=width, color_system=None, force_terminal=False, highlight=False).print(table)
    out = buf.getvalue()
    words = _words(table)
    return all(w in out for w in words) and ("…" in "".join(words) or "…" not in out)


def fit(console: Console, table: Table, width: int | None = None) -> RenderableType:
    """The table as it is, compact, wrapped by Rich, or as plain lines: the first whose headers and
    values all show whole at `width`."""
    width = width or console.width
    if natural_width(console, table) <= width:
        return table
    small = compact(table)
    if natural_width(console, small) <= width:
        return small
    for candidate in (table, small):
        if readable_at(console, candidate, width):
            return candidate
    return plain(table)


def print_table(console: Console, table: Table) -> None:
    """Print a table so that every header and number can be read (see the module's order)."""
    natural = natural_width(console, table)
    if natural <= console.width:
        console.print(table)
    elif not console.is_terminal:
        # A pipe or a log: nothing will wrap the lines, so the table is printed whole.
        Console(file=console.file, width=natural, force_terminal=False, color_system=None,
                highlight=False).print(table)
    else:
        console.print(fit(console, table))
