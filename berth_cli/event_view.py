"""A job's events as a person watches them: one line per event (time, sequence number, step,
status, message) and, on a terminal, a live status line with a progress bar for each step
whose events carry byte counts (`data.bytes_done` / `data.bytes_total`, as model pulls do)."""

import time
from types import TracebackType

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.spinner import Spinner

from berth_cli import output
from berth_cli.client.jobs import JobEvent


def byte_counts(event: JobEvent) -> tuple[int, int] | None:
    data = event.get("data") or {}
    done, total = data.get("bytes_done"), data.get("bytes_total")
    if isinstance(done, int) and isinstance(total, int) and total > 0:
        return done, total
    return None


def event_line(event: JobEvent) -> str:
    """One event as rich markup: `12:00:03    4  download  running  config.json (1.2 kB / 4.0 kB)`."""
    at = (event.get("at") or "")[11:19]
    counts = byte_counts(event)
    amount = f" [dim]({output.size(counts[0])} / {output.size(counts[1])})[/]" if counts else ""
    padding = " " * max(9 - len(event["status"]), 0)
    return (f"[dim]{escape(at)}[/] [dim]{event['seq']:>4}[/]  {escape(event['step']):<10} "
            f"{output.status(event['status'])}{padding} {escape(event.get('message') or '')}{amount}".rstrip())


class EventView:
    def __init__(self, console: Console, job_id: str, job_status: str):
        self.console = console
        self.job_id = job_id
        self.job_status = job_status
        self.latest = "waiting for events"
        self.started = time.monotonic()
        self.progress = Progress(TextColumn("  {task.description}"), BarColumn(), DownloadColumn(),
                                 TransferSpeedColumn(), TimeRemainingColumn(), console=console)
        self.bars: dict[str, tuple[TaskID, str]] = {}  # bar key -> (task, the status it last showed)
        self.spinner = Spinner("dots")
        self.live: Live | None = None

    def __enter__(self) -> "EventView":
        if self.console.is_terminal:
            self.live = Live(console=self.console, refresh_per_second=8, transient=True, get_renderable=self._render)
            self.live.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self.live:
            self.live.stop()

    def show(self, event: JobEvent) -> None:
        if event["step"] == "job":
            self.job_status = "running" if event["status"] == "start" else event["status"]
        self.latest = f"{event['step']}: {event.get('message') or event['status']}"
        counts = byte_counts(event)
        if counts and self.live:
            # On a terminal the bar shows the bytes: a line only when the step's status changes.
            if self._advance(event, *counts):
                self.console.print(event_line(event))
        else:
            self.console.print(event_line(event))

    def _advance(self, event: JobEvent, done: int, total: int) -> bool:
        name = str((event.get("data") or {}).get("file") or "")
        key = f"{event['step']}/{name}"
        if key not in self.bars:
            task = self.progress.add_task(escape(f"{event['step']} {name}".strip()), total=total)
            self.bars[key] = (task, "")
        task, shown = self.bars[key]
        self.progress.update(task, completed=done, total=total)
        self.bars[key] = (task, event["status"])
        return shown != event["status"]

    def _render(self) -> RenderableType:
        elapsed = time.monotonic() - self.started
        line = (f"{escape(self.job_id)}  {output.status(self.job_status)}  [dim]{elapsed:.0f} s[/]  "
                f"{escape(self.latest)}")
        self.spinner.update(text=line)
        return Group(self.spinner, self.progress) if self.bars else self.spinner
