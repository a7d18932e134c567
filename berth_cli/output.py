"""How the CLI prints: results on stdout (the API's JSON with `--json`, rich tables otherwise),
notes, progress and errors on stderr, so that `--json` output can always be piped."""

import json
import os
from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console, RenderableType
from rich.markup import escape
from rich.table import Table

from berth_cli.errors import ApiError, CliError

UNBOUNDED_WIDTH = 10_000
stdout = Console(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)
if not stdout.is_terminal and "COLUMNS" not in os.environ:
    # Into a pipe or a file, rows are as long as they need to be: an assumed 80 columns would
    # cut the ids that scripts grep for.
    stdout.width = UNBOUNDED_WIDTH

STATUS_STYLES = {
    "queued": "yellow", "running": "cyan", "complete": "green", "error": "red", "expired": "magenta",
    "cancelled": "magenta", "starting": "yellow", "stopping": "yellow", "stopped": "magenta", "failed": "red",
    "ended": "dim", "ok": "green", "start": "cyan",
}


def print_json(data: Any) -> None:
    """One JSON document, exactly as the API gave it."""
    stdout.out(json.dumps(data, indent=2, ensure_ascii=False), highlight=False)


def print_json_line(data: Any) -> None:
    """One JSON document on one line (a stream of them is JSON Lines)."""
    stdout.out(json.dumps(data, ensure_ascii=False), highlight=False)


def note(text: str) -> None:
    stderr.print(text)


def show_error(error: CliError) -> None:
    if isinstance(error, ApiError):
        request = f", request {error.request_id}" if error.request_id else ""
        stderr.print(f"[bold red]error:[/] {escape(error.message)} "
                     f"[dim](HTTP {error.status} from {escape(error.method)} {escape(error.url)}{request})[/]")
    else:
        stderr.print(f"[bold red]error:[/] {escape(error.message)}")


def status(value: str | None) -> str:
    """A status as rich markup, coloured by what it means."""
    if not value:
        return ""
    style = STATUS_STYLES.get(value)
    return f"[{style}]{escape(value)}[/]" if style else escape(value)


def moment(iso: str | None) -> str:
    """An API timestamp without its fractions and zone, in the API's UTC: `2026-01-02 03:04:05`."""
    if not iso:
        return ""
    return iso.replace("T", " ")[:19]


def table(columns: Sequence[str], rows: Iterable[Sequence[str]], *, title: str | None = None) -> None:
    """Cells are rich markup: callers escape what came from the API (see `text`). Ids and times
    never wrap; the last column takes what room is left."""
    grid = Table(title=title, header_style="bold", box=None, pad_edge=False)
    for position, name in enumerate(columns):
        grid.add_column(name, no_wrap=position < len(columns) - 1)
    for row in rows:
        grid.add_row(*row)
    _print_block(grid)


def fields(pairs: Iterable[tuple[str, str]]) -> None:
    """A record as `name  value` lines."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for name, value in pairs:
        grid.add_row(name, value)
    _print_block(grid)


def _print_block(renderable: RenderableType) -> None:
    """On a terminal as rich draws it; elsewhere without the padding after each row's last cell."""
    if stdout.is_terminal:
        stdout.print(renderable)
        return
    with stdout.capture() as captured:
        stdout.print(renderable)
    stdout.out("\n".join(line.rstrip() for line in captured.get().splitlines()), highlight=False)


def text(value: Any, *, multiline: bool = False) -> str:
    """Any API value as a table cell, escaped so that brackets in it are not read as markup;
    objects as JSON, indented over several lines with `multiline`."""
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return escape(json.dumps(value, ensure_ascii=False, indent=2 if multiline else None))
    return escape(str(value))


def size(count: float) -> str:
    """A byte count for people: `512 B`, `12.3 MB`."""
    unit = "B"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if count < 1000 or unit == "TB":
            break
        count /= 1000
    return f"{count:.0f} B" if unit == "B" else f"{count:.1f} {unit}"
