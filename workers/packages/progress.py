"""Install progress as the caller sees it: a few stages, each marked once, in order."""

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from workers.packages.process import output_tail

logger = logging.getLogger("berth.worker.packages")

Stage = Literal["resolving", "downloading", "installing", "done"]
STAGES: tuple[Stage, ...] = ("resolving", "downloading", "installing", "done")
OUTPUT_LINES_KEPT = 60


@dataclass(frozen=True)
class InstallProgress:
    stage: Stage
    package: str  # "pypi mcp-server-time==2026.10.19"
    message: str
    output_tail: str = ""  # the installer's last lines
    cached: bool = False  # done without installing anything

    def as_event_data(self) -> dict:
        """The `data` of the job event that reports it."""
        data = {"stage": self.stage, "package": self.package, "cached": self.cached}
        return data | ({"output_tail": self.output_tail} if self.output_tail else {})


ProgressCallback = Callable[[InstallProgress], Awaitable[None]]


class Listeners:
    """Everyone waiting on one install; a failing callback never fails the install."""

    def __init__(self) -> None:
        self.callbacks: list[ProgressCallback] = []

    def add(self, callback: ProgressCallback | None) -> None:
        if callback is not None:
            self.callbacks.append(callback)

    async def __call__(self, progress: InstallProgress) -> None:
        for callback in list(self.callbacks):
            try:
                await callback(progress)
            except Exception:
                logger.exception("package progress callback failed")


class StageTracker:
    """Moves through STAGES, never back, announcing each stage once with the output so far:
    from the installer's own lines (its `stage_markers`) or from the cache's steps."""

    def __init__(self, package: str, markers: tuple[tuple[re.Pattern[str], Stage], ...],
                 announce: Callable[[InstallProgress], Awaitable[None]]):
        self.package, self.markers, self.announce = package, markers, announce
        self.reached = -1
        self.lines: list[str] = []

    async def advance(self, stage: Stage, message: str) -> None:
        if STAGES.index(stage) > self.reached:
            self.reached = STAGES.index(stage)
            await self.announce(InstallProgress(stage, self.package, message, output_tail(self.lines)))

    async def on_line(self, line: str) -> None:
        self.lines.append(line)
        del self.lines[:-OUTPUT_LINES_KEPT]
        for pattern, stage in self.markers:
            if pattern.search(line):
                await self.advance(stage, f"{stage} {self.package}")
