"""Where a reservation's CPU goes: py-spy samples of the service's workers, by part.

    python benchmarks/cpu_breakdown.py PROFILE.txt [...] [--cpu-ms-per-reservation X]
        [--within FRAME]

Reads py-spy's raw (collapsed-stack) files, as `service_throughput.py --py-spy DIR` writes
them, and attributes every sample to one part of the request's path. A sample counts for the
deepest frame of the service's own parts (token, body, metrics, request log, pool, SQL); a
sample in none of them counts for the deepest framework frame (Quart, Hypercorn, the event
loop). With the measured CPU milliseconds per reservation, each share becomes milliseconds.

SQLAlchemy is split by layer (the interactive shape's unit of work runs through all of them):
the ORM (session, flush, loading), Core (statement compilation, cache keys, execution context,
results), the asyncio bridge (greenlet switches in and out of the sync API) and the pool with
the psycopg dialect's adapter. ``--within`` keeps only samples whose stack holds that text
(say ``drive (driver_alone.py``: the closed loop, without the process's imports).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

# (part, pattern on a frame "function (file:line)"), checked in this order for each frame.
SERVICE_PARTS = (
    ("JWT verification", r"target/auth\.py|jwt/"),
    ("body parsing and validation", r"target/payloads\.py|target/idempotency\.py"),
    ("metrics (prometheus_client)", r"prometheus_client/"),
    ("request log", r"target/request_log\.py \(.*(emit|dumps)|logging/"),
    (
        "SQLAlchemy pool and psycopg adapter",
        r"target/database\.py|sqlalchemy/(pool|dialects|connectors)/",
    ),
    (
        "SQLAlchemy asyncio bridge (greenlet)",
        r"sqlalchemy/(ext/asyncio|util/_?concurrency)|greenlet",
    ),
    ("SQLAlchemy ORM (session, flush, loading)", r"sqlalchemy/orm/|for sqlalchemy\.orm\."),
    ("SQLAlchemy Core (compile, cache key, execute, result)", r"sqlalchemy/"),
    ("SQL round trip (psycopg)", r"(^|[ (/])psycopg(_binary|_c)?/"),
    ("service code, the rest", r"target/"),
)
FRAMEWORK_PARTS = (
    ("Quart and Werkzeug", r"quart/|werkzeug/"),
    ("Hypercorn and h11", r"hypercorn/|h11/"),
    ("event loop (uvloop, asyncio)", r"asyncio/|uvloop"),
)
UNATTRIBUTED = "other (interpreter, idle)"


def part_of(frames: list[str]) -> str:
    """Return the part one sample's stack (root first) is attributed to."""
    service_part = framework_part = None
    for frame in frames:
        for part, pattern in SERVICE_PARTS:
            if re.search(pattern, frame):
                # A generic frame of ours never hides a more specific part found above it.
                if part != SERVICE_PARTS[-1][0] or service_part is None:
                    service_part = part
                break
        for part, pattern in FRAMEWORK_PARTS:
            if re.search(pattern, frame):
                framework_part = part
                break
    return service_part or framework_part or UNATTRIBUTED


def count_samples(paths: Iterable[Path], within: str | None = None) -> Counter[str]:
    """Count samples per part over py-spy raw files (`stack;stack;... count` per line)."""
    parts: Counter[str] = Counter()
    for path in paths:
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if stack and count.isdigit() and (within is None or within in stack):
                parts[part_of(stack.split(";"))] += int(count)
    return parts


def render(parts: Counter[str], cpu_ms_per_reservation: float | None) -> str:
    """Render the shares (and milliseconds per reservation) as a Markdown table."""
    total = sum(parts.values())
    lines = ["| part | share of worker CPU | ms per reservation |", "|---|---:|---:|"]
    order = [part for part, _ in SERVICE_PARTS + FRAMEWORK_PARTS] + [UNATTRIBUTED]
    for part in order:
        share = parts[part] / total if total else 0.0
        ms = f"{share * cpu_ms_per_reservation:.3f}" if cpu_ms_per_reservation else ""
        lines.append(f"| {part} | {share:.1%} | {ms} |")
    lines.append(f"| (samples) | {total} | {cpu_ms_per_reservation or ''} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profiles", type=Path, nargs="+")
    parser.add_argument("--cpu-ms-per-reservation", type=float)
    parser.add_argument("--within", help="count only samples whose stack holds this text")
    args = parser.parse_args()
    print(render(count_samples(args.profiles, args.within), args.cpu_ms_per_reservation))


if __name__ == "__main__":
    main()
