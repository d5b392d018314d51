"""Service settings, read once from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

CONCURRENCY_STRATEGIES = ("serializable", "for_update", "atomic", "unsafe")
DEFAULT_JWT_SECRET = "dev-only-insecure-secret-change-me"


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
    concurrency: str = "serializable"
    max_retries: int = 5
    unsafe_delay_ms: int = 0
    pool_size: int = 8
    pool_timeout_s: float = 2.0
    max_body_bytes: int = 64 * 1024
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.concurrency not in CONCURRENCY_STRATEGIES:
            raise ValueError(
                f"TARGET_CONCURRENCY must be one of {', '.join(CONCURRENCY_STRATEGIES)}, "
                f"not {self.concurrency!r}"
            )

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if environ is None else environ)
        database_url = env.get("DATABASE_URL")
        if not database_url:
            raise ValueError("DATABASE_URL is not set")
        return cls(
            database_url=database_url,
            jwt_secret=env.get("JWT_SECRET", DEFAULT_JWT_SECRET),
            jwt_ttl_s=int(env.get("TARGET_JWT_TTL_S", "3600")),
            concurrency=env.get("TARGET_CONCURRENCY", "serializable"),
            max_retries=int(env.get("TARGET_MAX_RETRIES", "5")),
            unsafe_delay_ms=int(env.get("TARGET_UNSAFE_DELAY_MS", "0")),
            pool_size=int(env.get("TARGET_POOL_SIZE", "8")),
            pool_timeout_s=float(env.get("TARGET_POOL_TIMEOUT_S", "2.0")),
        )
