"""Service settings, read once from the environment."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

# How a change guards its rules. `serializable` takes no lock and leans on the isolation level;
# `for_update` and `constraint` lock (constraint: exclusion constraints for the overlaps of
# scheduling, the authorization's row lock for units); `atomic` checks inside the UPDATE;
# `unsafe` is the planted control that overbooks.
CONCURRENCY_STRATEGIES = ("serializable", "for_update", "atomic", "constraint", "unsafe")
# How the application talks to PostgreSQL: `interactive` is an ORM's unit of work (BEGIN,
# SELECT, a check in Python, UPDATE, INSERT, COMMIT), the shape the team ships; `statement`
# folds each change into one SQL statement (a faster, different test).
TRANSACTION_SHAPES = ("interactive", "statement")
ISOLATION_LEVELS = ("serializable", "repeatable_read", "read_committed")
DEFAULT_STRATEGY = "serializable"
DEFAULT_TRANSACTION_SHAPE = "interactive"
# The level each strategy runs at unless TARGET_ISOLATION names another.
DEFAULT_ISOLATION = {
    "serializable": "serializable",
    "for_update": "read_committed",
    "atomic": "read_committed",
    "constraint": "read_committed",
    "unsafe": "read_committed",
}
DEFAULT_JWT_SECRET = "dev-only-insecure-secret-change-me"
# Hypercorn closes a connection idle this long (whole seconds: its --keep-alive takes an
# integer). The load generator reads the same setting (load_runner hands it to the scenarios)
# and stops reusing an idle connection a margin before the service would close it.
KEEP_ALIVE_ENV = "TARGET_KEEP_ALIVE_S"
DEFAULT_KEEP_ALIVE_S = 5  # Hypercorn's own default, now set explicitly
N = TypeVar("N", int, float)


def sqlalchemy_url(url: str) -> str:
    """Turn a libpq URL (postgresql://...) into SQLAlchemy's psycopg 3 form."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    raise ValueError(f"not a PostgreSQL URL: {url!r}")


def libpq_url(url: str) -> str:
    """Turn a SQLAlchemy URL back into the plain libpq form psql and psycopg accept."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@dataclass(frozen=True)
class Settings:
    database_url: str
    jwt_secret: str = DEFAULT_JWT_SECRET
    jwt_ttl_s: int = 3600
    concurrency: str = DEFAULT_STRATEGY
    transaction_shape: str = DEFAULT_TRANSACTION_SHAPE
    isolation: str = ""  # empty: the strategy's own level (DEFAULT_ISOLATION)
    max_retries: int = 5
    unsafe_delay_ms: int = 0
    # Test settings (target/injected_delays.py): a known slowdown, a stall of known size.
    extra_latency_ms: int = 0
    stall_ms: int = 0
    stall_after_changes: int = 1
    pool_size: int = 8
    pool_timeout_s: float = 2.0
    max_body_bytes: int = 64 * 1024
    keep_alive_s: int = DEFAULT_KEEP_ALIVE_S
    # Off: keys are written to the ledger but not enforced (the exactly-once checks' control).
    idempotency: bool = True
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.concurrency not in CONCURRENCY_STRATEGIES:
            raise ValueError(
                f"TARGET_CONCURRENCY (the concurrency strategy) must be one of "
                f"{', '.join(CONCURRENCY_STRATEGIES)}, "
                f"not {self.concurrency!r}"
            )
        if self.transaction_shape not in TRANSACTION_SHAPES:
            raise ValueError(
                f"TARGET_TRANSACTION_SHAPE must be one of {', '.join(TRANSACTION_SHAPES)}, "
                f"not {self.transaction_shape!r}"
            )
        if self.isolation and self.isolation not in ISOLATION_LEVELS:
            raise ValueError(
                f"TARGET_ISOLATION must be one of {', '.join(ISOLATION_LEVELS)}, "
                f"not {self.isolation!r}"
            )
        for name, value, minimum in (
            ("TARGET_JWT_TTL_S", self.jwt_ttl_s, 1),
            ("TARGET_MAX_RETRIES", self.max_retries, 0),
            ("TARGET_UNSAFE_DELAY_MS", self.unsafe_delay_ms, 0),
            ("TARGET_EXTRA_LATENCY_MS", self.extra_latency_ms, 0),
            ("TARGET_STALL_MS", self.stall_ms, 0),
            ("TARGET_STALL_AFTER_CHANGES", self.stall_after_changes, 1),
            ("TARGET_POOL_SIZE", self.pool_size, 1),
            (KEEP_ALIVE_ENV, self.keep_alive_s, 1),
        ):
            if value < minimum:
                raise ValueError(f"{name} must be at least {minimum}, not {value}")
        if not self.pool_timeout_s > 0:
            raise ValueError(f"TARGET_POOL_TIMEOUT_S must be positive, not {self.pool_timeout_s}")
        if not self.jwt_secret:
            raise ValueError("JWT_SECRET must not be empty")

    @property
    def isolation_level(self) -> str:
        """Return the isolation level the service's transactions run at."""
        return self.isolation or DEFAULT_ISOLATION[self.concurrency]

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        """Read the settings from the environment; a bad value raises one clear ValueError."""
        env = dict(os.environ if environ is None else environ)
        database_url = env.get("DATABASE_URL")
        if not database_url:
            raise ValueError("DATABASE_URL is not set")
        return cls(
            database_url=database_url,
            jwt_secret=env.get("JWT_SECRET", DEFAULT_JWT_SECRET),
            jwt_ttl_s=_env_number(env, "TARGET_JWT_TTL_S", 3600, int),
            concurrency=env.get("TARGET_CONCURRENCY", DEFAULT_STRATEGY),
            transaction_shape=env.get("TARGET_TRANSACTION_SHAPE", DEFAULT_TRANSACTION_SHAPE),
            isolation=env.get("TARGET_ISOLATION", ""),
            max_retries=_env_number(env, "TARGET_MAX_RETRIES", 5, int),
            unsafe_delay_ms=_env_number(env, "TARGET_UNSAFE_DELAY_MS", 0, int),
            extra_latency_ms=_env_number(env, "TARGET_EXTRA_LATENCY_MS", 0, int),
            stall_ms=_env_number(env, "TARGET_STALL_MS", 0, int),
            stall_after_changes=_env_number(env, "TARGET_STALL_AFTER_CHANGES", 1, int),
            pool_size=_env_number(env, "TARGET_POOL_SIZE", 8, int),
            pool_timeout_s=_env_number(env, "TARGET_POOL_TIMEOUT_S", 2.0, float),
            idempotency=_env_switch(env, "TARGET_IDEMPOTENCY", True),
            keep_alive_s=keep_alive_s(env),
        )


def keep_alive_s(environ: Mapping[str, str]) -> int:
    """Return how long the service keeps an idle connection open, in seconds (at least 1)."""
    value = _env_number(dict(environ), KEEP_ALIVE_ENV, DEFAULT_KEEP_ALIVE_S, int)
    if value < 1:
        raise ValueError(f"{KEEP_ALIVE_ENV} must be at least 1, not {value}")
    return value


def _env_number(env: dict[str, str], name: str, default: N, kind: Callable[[str], N]) -> N:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return kind(raw)
    except ValueError as error:
        expected = "an integer" if kind is int else "a number"
        raise ValueError(f"{name} must be {expected}, not {raw!r}") from error


def _env_switch(env: dict[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in ("on", "true", "1"):
        return True
    if raw in ("off", "false", "0"):
        return False
    raise ValueError(f"{name} must be on or off, not {raw!r}")
