"""The engine and its pool: connections handed out with a timeout, problems mapped to 503."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import sqlalchemy.exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from target import metrics
from target.problems import unavailable
from target.settings import Settings, sqlalchemy_url

# Each strategy's transactions need one isolation level, so the engine is created with it:
# no per-checkout SET. `atomic` is one statement, which PostgreSQL runs as its own transaction.
ISOLATION_BY_STRATEGY = {
    "serializable": "SERIALIZABLE",
    "for_update": "READ COMMITTED",
    "atomic": "AUTOCOMMIT",
    "unsafe": "READ COMMITTED",
}
APPLICATION_NAME = "clinic-target"
# libpq counts connect_timeout in whole seconds and treats 1 as 2.
MIN_CONNECT_TIMEOUT_S = 2


def create_engine(settings: Settings) -> AsyncEngine:
    """Create the async engine with a small fixed pool, no pre-ping and no overflow."""
    return create_async_engine(
        sqlalchemy_url(settings.database_url),
        pool_size=settings.pool_size,
        max_overflow=0,
        pool_timeout=settings.pool_timeout_s,
        # A ping per checkout costs a round trip on the hot path; a dead connection
        # fails one request with 503 instead.
        pool_pre_ping=False,
        isolation_level=ISOLATION_BY_STRATEGY[settings.concurrency],
        connect_args={
            "connect_timeout": max(MIN_CONNECT_TIMEOUT_S, round(settings.pool_timeout_s)),
            "application_name": APPLICATION_NAME,
        },
    )


def is_database_unreachable(error: BaseException) -> bool:
    """Tell whether a database error means the server is down or the connection is lost."""
    if isinstance(error, sqlalchemy.exc.DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError)


class Database:
    """One worker's engine plus the pool gauges the report reads."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = create_engine(settings)
        metrics.POOL_SIZE.set(settings.pool_size)

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        """Check a connection out of the pool, or raise 503 within the pool timeout."""
        connection = self.engine.connect()
        metrics.POOL_WAITING.inc()
        try:
            await connection.start()
        except sqlalchemy.exc.TimeoutError as error:
            metrics.POOL_TIMEOUTS.inc()
            raise unavailable(
                f"no database connection free within {self.settings.pool_timeout_s:g} s"
            ) from error
        except (sqlalchemy.exc.DBAPIError, OSError) as error:
            raise unavailable("database unreachable") from error
        finally:
            metrics.POOL_WAITING.dec()
        metrics.POOL_CHECKED_OUT.inc()
        try:
            yield connection
        finally:
            metrics.POOL_CHECKED_OUT.dec()
            await connection.close()

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()
        metrics.POOL_SIZE.set(0)
