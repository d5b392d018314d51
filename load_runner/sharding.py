"""Split one scenario run over N load-generator hosts ("shards") that start together.

Each shard runs 1/N of the users (closed model) or of the arrival rate (open model), draws its
users' picks from streams seeded by the run and its shard index, puts `s<I>-` before every
request id, Idempotency-Key and worker name (so no two shards can produce the same one, even
with the same pids in two containers), and starts at a shared UNIX time. The merge
(load_runner/merge.py) puts the shards' records back together on that shared time base.

The shared time is read on the service's clock: a shard estimates how far its own clock is
from the service's `Date` header (or is told, `--clock-offset`) and starts when the service's
clock reads the start time. Its records then count from that moment, like every other shard's.
"""

from __future__ import annotations

import email.utils
import math
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, replace
from typing import Any

from load_runner.profiles import ScenarioConfig

# A start time this far in the past is refused: the other shards would be well under way.
START_AT_TOLERANCE_S = 5.0
# Molotov is launched this long before the start (imports and forks take about a second);
# its workers then wait for the start time itself.
LAUNCH_LEAD_S = 3.0
CLOCK_OFFSET_WARNING_S = 0.050
# The Date header counts whole seconds: sample it until its second ticks over (at most
# this long), which pins the offset to within a request's round trip.
CLOCK_PROBE_MAX_S = 2.5
CLOCK_PROBE_INTERVAL_S = 0.005
CLOCK_PROBE_TIMEOUT_S = 2.0


class ShardError(ValueError):
    """Bad shard input: the message is the one line the user sees."""


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count` (1-based, as the command line says it)."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def id_prefix(self) -> str:
        return f"s{self.index}-"


@dataclass(frozen=True)
class ClockOffset:
    """How far this host's clock is ahead of the service's (negative: behind)."""

    offset_s: float
    uncertainty_s: float  # half the width of the interval the offset is known to lie in
    source: str  # "date_header" or "given"

    @property
    def too_large(self) -> bool:
        return abs(self.offset_s) > CLOCK_OFFSET_WARNING_S

    def to_result(self) -> dict[str, Any]:
        return {
            "offset_ms": round(self.offset_s * 1000, 3),
            "uncertainty_ms": round(self.uncertainty_s * 1000, 3),
            "source": self.source,
            "warning": self.warning() or None,
        }

    def warning(self) -> str:
        if not self.too_large:
            return ""
        return (
            f"this host's clock is {self.offset_s * 1000:+.0f} ms off the service's "
            f"(limit ±{CLOCK_OFFSET_WARNING_S * 1000:.0f} ms): the shards' per-second series "
            "line up only that well; synchronise the clocks (NTP/chrony)"
        )


def parse_shard(text: str) -> Shard:
    """Read `I/N` (1 <= I <= N); raise ShardError otherwise."""
    parts = str(text).strip().split("/")
    try:
        index, count = (int(part) for part in parts)
    except ValueError:
        raise ShardError(f"--shard must look like I/N (e.g. 2/4), not {text!r}") from None
    if count < 1 or not 1 <= index <= count:
        raise ShardError(f"--shard {text}: the index must be within 1..{max(count, 1)}")
    return Shard(index, count)


def parse_start_at(text: str | float, *, now: float | None = None) -> float:
    """Read a UNIX time; refuse one more than START_AT_TOLERANCE_S in the past."""
    try:
        start_at = float(text)
    except (TypeError, ValueError):
        raise ShardError(f"--start-at must be a UNIX time in seconds, not {text!r}") from None
    if not math.isfinite(start_at):
        raise ShardError(f"--start-at must be a UNIX time in seconds, not {text!r}")
    current = time.time() if now is None else now
    if start_at < current - START_AT_TOLERANCE_S:
        raise ShardError(
            f"--start-at {start_at:.0f} is {current - start_at:.0f} s in the past "
            f"(more than {START_AT_TOLERANCE_S:.0f} s): the other shards started without this one"
        )
    return start_at


def parse_clock_offset(text: str | float) -> ClockOffset:
    """Read `--clock-offset` in milliseconds (this host ahead of the service: positive)."""
    try:
        offset_ms = float(text)
    except (TypeError, ValueError):
        raise ShardError(f"--clock-offset must be milliseconds, not {text!r}") from None
    if not math.isfinite(offset_ms):
        raise ShardError(f"--clock-offset must be milliseconds, not {text!r}")
    return ClockOffset(offset_ms / 1000, 0.0, "given")


def shard_config(config: ScenarioConfig, shard: Shard) -> ScenarioConfig:
    """Return this shard's share of a profile: 1/N of the users, and of the arrival rate.

    The users are dealt out as evenly as they go (the first `users % N` shards get one more);
    a shard keeps the profile's processes when its users divide among them, else runs one.
    """
    users = config.users // shard.count + (1 if shard.index <= config.users % shard.count else 0)
    if users < 1:
        raise ShardError(
            f"{config.scenario} under {config.profile!r} has {config.users} users: "
            f"too few for {shard.count} shards"
        )
    processes = config.processes if users % config.processes == 0 else 1
    rate = config.arrival_rate_rps
    return replace(
        config,
        users=users,
        processes=processes,
        arrival_rate_rps=None if rate is None else rate / shard.count,
    )


def run_key(scenario: str, profile: str, start_at: float, count: int) -> str:
    """Name the run a shard belongs to: shards of one run share all four."""
    return f"{scenario}/{profile}/{start_at:.3f}/{count}"


def estimate_clock_offset(
    base_url: str, *, max_s: float = CLOCK_PROBE_MAX_S, interval_s: float = CLOCK_PROBE_INTERVAL_S
) -> ClockOffset:
    """Estimate this host's clock offset from the service's `Date` header.

    Every answer bounds the offset: the service wrote its Date (a whole second D) at some
    local time within [sent, received], when its clock read within [D, D + 1). So
    offset = local - service lies in (sent - D - 1, received - D]. Intersecting those intervals
    over answers on both sides of a tick of D narrows it to about one round trip.
    """
    low, high = -math.inf, math.inf
    seconds_seen: set[int] = set()
    deadline = time.time() + max_s
    url = f"{base_url.rstrip('/')}/healthz"
    while True:
        sent = time.time()
        date = _date_header(url)
        received = time.time()
        if date is not None:
            low, high = max(low, sent - date - 1), min(high, received - date)
            seconds_seen.add(date)
        if (len(seconds_seen) >= 2 and high - low < 1) or time.time() > deadline:
            break
        time.sleep(interval_s)
    if not seconds_seen:
        raise ShardError(f"{base_url} sends no Date header: give --clock-offset instead")
    if low > high:
        # Contradictory bounds: the service's clock stepped while we watched. Use the last.
        low = high
    return ClockOffset((low + high) / 2, (high - low) / 2, "date_header")


def _date_header(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=CLOCK_PROBE_TIMEOUT_S) as response:
            header = response.headers.get("Date")
    except urllib.error.HTTPError as error:
        header = error.headers.get("Date")
    except (urllib.error.URLError, OSError):
        return None
    if not header:
        return None
    try:
        return int(email.utils.parsedate_to_datetime(header).timestamp())
    except (TypeError, ValueError):
        return None
