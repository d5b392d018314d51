"""The live progress line: elapsed / total, requests per second, p95 so far, errors so far."""

from __future__ import annotations

import sys
import time
from collections import deque
from typing import TextIO

from load_runner.collect import LiveProgress
from results.latency import live_percentile

NON_TTY_EVERY_S = 5.0  # without a terminal, print a plain line this often instead of redrawing
# Processes rewrite their progress about once a second: measure the rate over a few of those.
RATE_WINDOW_S = 3.0


def progress_line(
    scenario: str, *, elapsed_s: float, total_s: float, progress: LiveProgress, rate_rps: float
) -> str:
    """Format one progress line."""
    p95 = live_percentile(progress.buckets, 95)
    p95_text = "-" if p95 is None else f"{p95:.1f} ms"
    share = progress.errors / progress.requests if progress.requests else 0.0
    return (
        f"{scenario}: {elapsed_s:5.1f}/{total_s:.0f} s | {rate_rps:7.1f} req/s | "
        f"p95 {p95_text} | {progress.requests} requests | "
        f"errors {progress.errors} ({share:.1%})"
    )


class ProgressDisplay:
    """Print the progress line to stderr: redrawn in place on a terminal, every 5 s otherwise."""

    def __init__(self, scenario: str, total_s: float, stream: TextIO | None = None) -> None:
        self.scenario = scenario
        self.total_s = total_s
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty()
        self._samples: deque[tuple[float, int]] = deque()
        self._last_printed = -NON_TTY_EVERY_S
        self._width = 0
        self._last_line = ""
        self._last_line_printed = False

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
        line = progress_line(
            self.scenario,
            elapsed_s=elapsed_s,
            total_s=self.total_s,
            progress=progress,
            rate_rps=max(rate, 0.0),
        )
        self._last_line, self._last_line_printed = line, False
        if self.interactive:
            self.stream.write("\r" + line.ljust(self._width))
            self._width = len(line)
        elif elapsed_s - self._last_printed >= NON_TTY_EVERY_S:
            self.stream.write(line + "\n")
            self._last_printed, self._last_line_printed = elapsed_s, True
        self.stream.flush()

    def finish(self) -> None:
        """End the line on a terminal; elsewhere print the last state if it was not shown."""
        if self.interactive and self._width:
            self.stream.write("\n")
        elif not self.interactive and self._last_line and not self._last_line_printed:
            self.stream.write(self._last_line + "\n")
        self.stream.flush()
