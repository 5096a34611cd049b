"""How `ahub` shows lists and verdicts to people: Rich tables, with sizes and times in the web's
formats (`client.formatting`).

On a terminal a table is styled and fitted to its width. Piped (a script, a test capturing
stdout, `| grep`), it is plain text: no colour, no box, no wrapping whatever the line length, no
trailing spaces, columns two spaces apart, so its lines stay stable to parse.
"""

from __future__ import annotations

import io
import shutil
import sys
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from client import formatting

# Wide enough that no real row wraps when piped; Rich pads lines to the table's width only.
PIPED_WIDTH = 100_000

Cell = str | int | float | Text | None

VERDICT_STYLES = {"validated": "green", "rejected": "bold red", "pending": "yellow", "none": "dim"}


def render(renderable: RenderableType) -> str:
    """The text Rich draws for `renderable`, for stdout as it is now (a terminal or not)."""
    terminal = sys.stdout.isatty()
    buffer = io.StringIO()
    console = Console(
        file=buffer,
        force_terminal=terminal,
        color_system="auto" if terminal else None,
        width=shutil.get_terminal_size().columns if terminal else PIPED_WIDTH,
        highlight=False,
        markup=False,
        emoji=False,
    )
    console.print(renderable)
    return "\n".join(line.rstrip() for line in buffer.getvalue().rstrip("\n").splitlines())


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence[Cell]],
    *,
    right: Collection[str] = (),
    ellipsis: Collection[str] = (),
) -> str:
    """Rows under headers. `right`: headers of columns aligned right (numbers); `ellipsis`:
    headers of columns shortened with … rather than wrapped on a narrow terminal."""
    grid = Table(box=None, pad_edge=False, show_edge=False, header_style="bold", expand=False)
    for header in headers:
        grid.add_column(
            header,
            justify="right" if header in right else "left",
            overflow="ellipsis" if header in ellipsis else "fold",
            no_wrap=header in ellipsis,
        )
    for row in rows:
        grid.add_row(*(cell if isinstance(cell, Text) else Text("" if cell is None else str(cell)) for cell in row))
    return render(grid)


# --- Values -----------------------------------------------------------------------------------------


def ago(when: str | datetime | None) -> str:
    """A time the hub sent, relative to now ("3 minutes ago", "in 2 days"); as given if unparsable."""
    try:
        return formatting.ago(when)
    except (TypeError, ValueError):
        return str(when)


def between(start: str | None, end: str | None) -> str:
    """How long from one of the hub's times to another ("2.5 s"); "–" when either is missing."""
    if not start or not end:
        return "–"
    try:
        seconds = (formatting.moment(end) - formatting.moment(start)).total_seconds()
    except ValueError:
        return "–"
    return formatting.duration(max(seconds, 0.0))


def number(value: float | int | None) -> str:
    return "–" if value is None else f"{value:.4g}"


def clip(text: str, width: int = 50) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def verdict_word(validation: str | None) -> Text:
    """The gate's verdict, coloured on a terminal."""
    word = validation or "none"
    return Text(word, style=VERDICT_STYLES.get(word, ""))


# --- The validation gate ------------------------------------------------------------------------------


def verdict(validation: str | None, reasons: Sequence[Mapping[str, Any]]) -> str:
    """`validation: rejected` and why: the gate's check on each suite (the version's score, what it
    had to reach, the best parent's score), then any other reason (a failed evaluation, no suite)."""
    state = validation or "none"
    checks = [r for r in reasons if "required" in r]
    notes = [r for r in reasons if "required" not in r]
    head = Text("validation: ")
    head.append(verdict_word(state))
    if state == "pending":
        head.append(" (the gate decides once the version's evaluations finish)")
    if len(notes) == 1 and not checks and not notes[0].get("suite"):
        head.append(f" ({notes[0].get('reason', '')})")
        notes = []
    lines = [render(head)]
    if checks:
        rows = []
        for check in checks:
            bound = ">=" if check.get("higher_is_better", True) else "<="
            passed = check.get("passed")
            rows.append(
                (
                    check.get("suite", ""),
                    check.get("metric", ""),
                    number(check.get("value")),
                    f"{bound} {number(check.get('required'))}",
                    f"{check.get('best_parent', '')} ({number(check.get('best_parent_value'))})",
                    Text("yes", style="green") if passed else Text("no", style="bold red"),
                )
            )
        lines.append(table(("SUITE", "METRIC", "VALUE", "REQUIRED", "BEST PARENT", "PASSED"), rows, right=("VALUE",)))
    for note in notes:
        suite = note.get("suite")
        lines.append(f"{suite}: {note.get('reason', '')}" if suite else str(note.get("reason", "")))
    return "\n".join(lines)
