"""The worker's event-loop lag: how late a timer fires, as a gauge on /metrics.

A worker busy with CPU (or stopped by the kernel) answers every request late; the report's
slow-second attribution reads this gauge to tell that apart from waiting on PostgreSQL.
"""

from __future__ import annotations

import asyncio

from target import metrics

TICK_S = 0.05
WINDOW_TICKS = 20  # the gauge holds the worst lag of the last second


async def watch_loop_lag() -> None:
    """Measure timer lateness every TICK_S until cancelled; publish the last second's worst."""
    loop = asyncio.get_running_loop()
    metrics.EVENT_LOOP_LAG.set(0)
    worst, ticks = 0.0, 0
    while True:
        expected = loop.time() + TICK_S
        await asyncio.sleep(TICK_S)
        worst = max(worst, loop.time() - expected)
        ticks += 1
        if ticks == WINDOW_TICKS:
            metrics.EVENT_LOOP_LAG.set(worst)
            worst, ticks = 0.0, 0
