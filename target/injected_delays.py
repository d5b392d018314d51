"""Delays the service adds on purpose, for testing the tool itself (off by default).

- TARGET_EXTRA_LATENCY_MS: every change waits this long first (a known slowdown for run
  comparisons).
- TARGET_STALL_MS with TARGET_STALL_AFTER_CHANGES=N: when a worker gets its N-th change, it
  stalls: that change and every change arriving in the next TARGET_STALL_MS milliseconds
  wait until the stall ends, once, as a stop-the-world pause would (a stall of known size
  for the verdict's stall attribution).
"""

from __future__ import annotations

import asyncio

from target.settings import Settings


class InjectedDelays:
    """One worker's injected delays."""

    def __init__(self, settings: Settings) -> None:
        self._extra_s = settings.extra_latency_ms / 1000
        self._stall_s = settings.stall_ms / 1000
        self._changes_before_stall = settings.stall_after_changes
        self._stall_ends: float | None = None

    async def before_change(self) -> None:
        """Wait as the settings say before a change runs."""
        if self._extra_s:
            await asyncio.sleep(self._extra_s)
        if not self._stall_s:
            return
        now = asyncio.get_running_loop().time()
        if self._stall_ends is None:
            self._changes_before_stall -= 1
            if self._changes_before_stall > 0:
                return
            self._stall_ends = now + self._stall_s
        if now < self._stall_ends:
            await asyncio.sleep(self._stall_ends - now)
