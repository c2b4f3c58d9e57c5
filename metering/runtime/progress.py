"""Progress of long CLI runs (`metering produce`, `metering backfill`) with rate and ETA.

On a terminal it is a `rich` bar redrawn in place; off a terminal (a CI log, a file, a pipe)
a redrawn bar would flood the log with carriage returns, so it becomes one log line every
`every_s` seconds and a last one at the end, through `logging` like every other line.
"""

from __future__ import annotations

import logging
import time
from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

log = logging.getLogger("metering.progress")


def progress_line(what: str, done: int, total: int, elapsed_s: float) -> str:
    """One periodic line: `what: done/total events (pct), rate ev/s, ETA m:ss`."""
    fraction = 1.0 if total <= 0 else min(1.0, done / total)
    rate = done / elapsed_s if elapsed_s > 0 else 0.0
    left = (total - done) / rate if rate > 0 and total > done else 0.0
    return (
        f"{what}: {done:,}/{total:,} events ({fraction:.1%}), {rate:,.0f} ev/s, "
        f"ETA {_duration(left)}"
    )


def _duration(seconds: float) -> str:
    whole = int(seconds + 0.5)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class _RateColumn(ProgressColumn):
    """Events per second (rich's own speed column is for bytes)."""

    def render(self, task: Task) -> Text:
        return Text(f"{task.speed or 0:,.0f} ev/s")


class Reporter:
    """Counts events done out of a known total and shows it as a bar or as log lines.

    `out=None` shows nothing (tests, library callers); `every_s` spaces the log lines."""

    def __init__(self, what: str, total: int, out: TextIO | None, *, every_s: float = 5.0) -> None:
        self.what = what
        self.total = total
        self.done = 0
        self._out = out
        self._every_s = every_s
        self._started = time.monotonic()
        self._logged = self._started
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        if out is not None and out.isatty():
            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TaskProgressColumn(),
                _RateColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=Console(file=out),
                transient=False,
            )

    def __enter__(self) -> Reporter:
        self._started = time.monotonic()
        self._logged = self._started
        if self._bar is not None:
            self._bar.start()
            self._task = self._bar.add_task(self.what, total=self.total)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.stop()
        elif self._out is not None and kind is None:
            log.info("%s", progress_line(self.what, self.done, self.total, self.elapsed_s))

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self._started

    def advance(self, count: int) -> None:
        self.done += count
        if self._bar is not None and self._task is not None:
            self._bar.advance(self._task, count)
            return
        now = time.monotonic()
        if self._out is not None and now - self._logged >= self._every_s:
            self._logged = now
            log.info("%s", progress_line(self.what, self.done, self.total, now - self._started))
