"""Live progress: elapsed / total, requests per second, p95 so far, errors so far.

On a terminal a rich progress bar redraws in place; elsewhere (CI logs, files) a plain line
is printed every few seconds, so a log holds a readable history rather than control codes.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn

from results.collect import LiveProgress
from results.latency import live_percentile

NON_TTY_EVERY_S = 5.0  # without a terminal, print a plain line this often instead of redrawing
# Processes rewrite their progress about once a second: measure the rate over a few of those.
RATE_WINDOW_S = 3.0


def progress_line(
    scenario: str, *, elapsed_s: float, total_s: float, progress: LiveProgress, rate_rps: float
) -> str:
    """Format the plain progress line (printed when there is no terminal)."""
    figures = progress_figures(progress, rate_rps)
    return " | ".join([f"{scenario}: {elapsed_s:5.1f}/{total_s:.0f} s", *figures.values()])


def progress_figures(progress: LiveProgress, rate_rps: float) -> dict[str, str]:
    """Return the figures beside the bar: rate, p95 so far, requests and errors."""
    p95 = live_percentile(progress.buckets, 95)
    share = progress.errors / progress.requests if progress.requests else 0.0
    return {
        "rate": f"{rate_rps:7.1f} req/s",
        "p95": "p95 -" if p95 is None else f"p95 {p95:.1f} ms",
        "requests": f"{progress.requests} requests",
        "errors": f"errors {progress.errors} ({share:.1%})",
    }


def rich_progress(stream: TextIO) -> Progress:
    """Return a rich progress bar on ``stream`` with the same figures as the plain line."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:5.1f}/{task.total:.0f} s"),
        TextColumn("{task.fields[rate]}"),
        TextColumn("{task.fields[p95]}"),
        TextColumn("{task.fields[requests]}"),
        TextColumn("{task.fields[errors]}"),
        console=Console(file=stream),
        # Redrawn on each update (about once a second): no refresh thread of its own.
        auto_refresh=False,
    )


class ProgressDisplay:
    """Show progress on stderr: a rich bar on a terminal, a plain line every 5 s otherwise."""

    def __init__(self, scenario: str, total_s: float, stream: TextIO | None = None) -> None:
        self.scenario = scenario
        self.total_s = total_s
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty()
        self._samples: deque[tuple[float, int]] = deque()
        self._last_printed = -NON_TTY_EVERY_S
        self._last_line = ""
        self._last_line_printed = False
        self._bar: Progress | None = None
        self._task: TaskID | None = None

    def update(self, elapsed_s: float, progress: LiveProgress, *, final: bool = False) -> None:
        """Show the latest counts; the final update shows the average rate of the whole run."""
        now = time.monotonic()
        self._samples.append((now, progress.requests))
        while len(self._samples) > 2 and now - self._samples[1][0] >= RATE_WINDOW_S:
            self._samples.popleft()
        first_time, first_requests = self._samples[0]
        rate = 0.0
        if final:
            rate = progress.requests / elapsed_s if elapsed_s > 0 else 0.0
        elif now > first_time:
            rate = (progress.requests - first_requests) / (now - first_time)
        rate = max(rate, 0.0)
        if self.interactive:
            self._draw(elapsed_s, progress, rate)
            return
        line = progress_line(
            self.scenario,
            elapsed_s=elapsed_s,
            total_s=self.total_s,
            progress=progress,
            rate_rps=rate,
        )
        self._last_line, self._last_line_printed = line, False
        if elapsed_s - self._last_printed >= NON_TTY_EVERY_S:
            self.stream.write(line + "\n")
            self._last_printed, self._last_line_printed = elapsed_s, True
        self.stream.flush()

    def finish(self) -> None:
        """Leave the bar's last state on a terminal; elsewhere print it if it was not shown."""
        if self._bar is not None:
            self._bar.refresh()
            self._bar.stop()
        elif not self.interactive and self._last_line and not self._last_line_printed:
            self.stream.write(self._last_line + "\n")
        self.stream.flush()

    def _draw(self, elapsed_s: float, progress: LiveProgress, rate_rps: float) -> None:
        figures = progress_figures(progress, rate_rps)
        if self._bar is None or self._task is None:
            self._bar = rich_progress(self.stream)
            self._task = self._bar.add_task(self.scenario, total=self.total_s, **figures)
        self._bar.update(self._task, completed=min(elapsed_s, self.total_s), **figures)
        if not self._bar.live.is_started:
            self._bar.start()
        self._bar.refresh()
