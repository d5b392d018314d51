"""What a run tests, beside the load: strategy, transaction shape, isolation, database latency.

Resolved once from the command's options (one clear line and exit 2 for a bad one, before
anything starts) and handed to the service as its environment and to run.json as facts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.exits import fail
from target.settings import (
    CONCURRENCY_STRATEGIES,
    DEFAULT_ISOLATION,
    DEFAULT_STRATEGY,
    DEFAULT_TRANSACTION_SHAPE,
    ISOLATION_LEVELS,
    TRANSACTION_SHAPES,
)

SCHEDULING_SCENARIO = "session_scheduling"
MAX_DB_LATENCY_MS = 1000.0


@dataclass(frozen=True)
class ServiceDimensions:
    """How the service under test runs its transactions, and how far its database is."""

    strategy: str = DEFAULT_STRATEGY
    transaction_shape: str = DEFAULT_TRANSACTION_SHAPE
    isolation: str = ""  # empty: the strategy's own level
    db_latency_ms: float = 0.0  # round trip added by a relay between service and PostgreSQL

    @property
    def isolation_level(self) -> str:
        """Return the level the service's transactions run at."""
        return self.isolation or DEFAULT_ISOLATION[self.strategy]

    def service_environment(self) -> dict[str, str]:
        """Return the environment that sets these dimensions in the service."""
        return {
            "TARGET_CONCURRENCY": self.strategy,
            "TARGET_TRANSACTION_SHAPE": self.transaction_shape,
            "TARGET_ISOLATION": self.isolation_level,
        }

    def facts(self) -> dict[str, object]:
        """Return what run.json and summary.json record of them."""
        return {
            "strategy": self.strategy,
            "transaction_shape": self.transaction_shape,
            "isolation": self.isolation_level,
            "db_latency_ms": self.db_latency_ms,
        }

    def label(self) -> str:
        """Return a short name for tables: strategy, shape and level."""
        return f"{self.strategy}/{self.transaction_shape}/{self.isolation_level}"


def resolve_dimensions(
    *,
    strategy: str = DEFAULT_STRATEGY,
    transaction_shape: str = "",
    isolation: str = "",
    db_latency_ms: str | float = 0.0,
    scenarios: Sequence[str] = (),
) -> ServiceDimensions:
    """Check the options once; exit 2 with one line on a bad value or combination."""
    transaction_shape = transaction_shape or DEFAULT_TRANSACTION_SHAPE
    if strategy not in CONCURRENCY_STRATEGIES:
        fail(f"--strategy must be one of {', '.join(CONCURRENCY_STRATEGIES)}, not {strategy!r}")
    if transaction_shape not in TRANSACTION_SHAPES:
        fail(
            f"--transaction-shape must be one of {', '.join(TRANSACTION_SHAPES)}, "
            f"not {transaction_shape!r}"
        )
    if isolation and isolation not in ISOLATION_LEVELS:
        fail(f"--isolation must be one of {', '.join(ISOLATION_LEVELS)}, not {isolation!r}")
    latency = parse_db_latency(db_latency_ms)
    if transaction_shape == "statement" and SCHEDULING_SCENARIO in scenarios:
        fail(
            f"{SCHEDULING_SCENARIO} has no statement shape (a booking is an interactive "
            "transaction): run it with --transaction-shape interactive, or leave it out with "
            "--scenarios"
        )
    return ServiceDimensions(strategy, transaction_shape, isolation, latency)


def parse_db_latency(value: str | float) -> float:
    """Turn --db-latency-ms into milliseconds; exit 2 unless it is 0 to 1000."""
    try:
        latency = float(value or 0)
    except ValueError:
        fail(f"--db-latency-ms must be a number of milliseconds, not {value!r}")
    if not 0 <= latency <= MAX_DB_LATENCY_MS:
        fail(f"--db-latency-ms must be between 0 and {MAX_DB_LATENCY_MS:g}, not {value!r}")
    return latency


def parse_scenarios(value: str, known: Sequence[str]) -> tuple[str, ...]:
    """Turn --scenarios (comma-separated, empty for all) into names; exit 2 on an unknown one."""
    chosen = tuple(part.strip() for part in value.split(",") if part.strip())
    for name in chosen:
        if name not in known:
            fail(f"--scenarios: unknown scenario {name!r}; choose from {', '.join(known)}")
    return chosen or tuple(known)
