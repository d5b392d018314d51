"""The engine and its pool: connections handed out with a timeout, problems mapped to 503.

SQLAlchemy owns the pool (size, timeout, no overflow, invalidation). Under the `interactive`
shape, the one the team ships, a change is an ORM unit of work on an `AsyncSession` bound to
a checked-out connection (`Database.session`). Under the `statement` shape a change is one
statement run on the pooled psycopg connection itself (`Database.connect`): going through
SQLAlchemy's execution layer cost about 0.5 ms of CPU per statement here (a greenlet switch
and result wrapping each time), which on a 2-core machine halved that shape's throughput.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import TypeVar

import psycopg
import sqlalchemy.exc
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.util import greenlet_spawn

from target import metrics
from target.injected_delays import InjectedDelays
from target.problems import unavailable
from target.schedule_guards import apply_schedule_guards
from target.settings import Settings, libpq_url, sqlalchemy_url

Checked = TypeVar("Checked")

# The isolation level is each connection's default (set once when it connects, no SET per
# checkout). Under the statement shape every change is its own transaction: the connections
# autocommit (no BEGIN/COMMIT round trips); under the interactive shape psycopg sends BEGIN
# before a unit of work's first statement and the session commits it, as an ORM app does.
POSTGRES_ISOLATION = {
    "serializable": "serializable",
    "repeatable_read": "repeatable read",
    "read_committed": "read committed",
}
APPLICATION_NAME = "clinic-target"
# libpq counts connect_timeout in whole seconds and treats 1 as 2.
MIN_CONNECT_TIMEOUT_S = 2


def create_engine(settings: Settings) -> AsyncEngine:
    """Create the async engine with a small fixed pool, no pre-ping and no overflow."""
    statement_shape = settings.transaction_shape == "statement"
    return create_async_engine(
        sqlalchemy_url(settings.database_url),
        pool_size=settings.pool_size,
        max_overflow=0,
        pool_timeout=settings.pool_timeout_s,
        # A ping per checkout costs a round trip on the hot path; a dead connection
        # fails one request with 503, and the pool is replaced (Database._replace_pool).
        pool_pre_ping=False,
        **({"isolation_level": "AUTOCOMMIT"} if statement_shape else {}),
        connect_args={
            "connect_timeout": max(MIN_CONNECT_TIMEOUT_S, round(settings.pool_timeout_s)),
            "application_name": APPLICATION_NAME,
            "options": "-c default_transaction_isolation="
            + POSTGRES_ISOLATION[settings.isolation_level].replace(" ", "\\ "),
        },
    )


def is_database_unreachable(error: BaseException) -> bool:
    """Tell whether a database error means the server is down or the connection is lost."""
    if isinstance(error, sqlalchemy.exc.DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(
        error,
        psycopg.OperationalError
        | sqlalchemy.exc.OperationalError
        | sqlalchemy.exc.InterfaceError
        | psycopg.InterfaceError,
    )


class Database:
    """One worker's pool plus the pool gauges the report reads."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = create_engine(settings)
        # Bound to a connection Database.session checks out; expire_on_commit off so the
        # objects a unit of work returns stay readable after its COMMIT.
        self._sessions = async_sessionmaker(expire_on_commit=False)
        self.injected_delays = InjectedDelays(settings)
        self._pool_generation = 0  # one more each time the pool is replaced
        self._schedule_guards_applied = False
        metrics.POOL_SIZE.set(settings.pool_size)

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[psycopg.AsyncConnection]:
        """Check a connection out of the pool, or raise 503 within the pool timeout."""
        pooled = await self._check_out(self.engine.raw_connection())
        connection: psycopg.AsyncConnection = pooled.driver_connection
        generation = self._pool_generation
        try:
            yield connection
        finally:
            metrics.POOL_CHECKED_OUT.dec()
            # A connection the server dropped goes, not back into the pool.
            release = pooled.invalidate if connection.broken else pooled.close
            await greenlet_spawn(release)
            if connection.broken and generation == self._pool_generation:
                await self._replace_pool()

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """Check a connection out (or raise 503 within the pool timeout) and bind a session to it.

        The caller begins and commits the transaction (`async with session.begin():`).
        """
        connection = await self._check_out(self.engine.connect())
        generation = self._pool_generation
        try:
            async with self._sessions(bind=connection) as session:
                yield session
        except sqlalchemy.exc.DBAPIError as error:
            if error.connection_invalidated and generation == self._pool_generation:
                await connection.close()
                await self._replace_pool()
            raise
        finally:
            metrics.POOL_CHECKED_OUT.dec()
            await connection.close()

    async def _check_out(self, acquire: Awaitable[Checked]) -> Checked:
        """Await a pooled connection, counted as waiting, then checked out; 503 on failure."""
        metrics.POOL_WAITING.inc()
        try:
            checked = await acquire
        except sqlalchemy.exc.TimeoutError as error:
            metrics.POOL_TIMEOUTS.inc()
            raise unavailable(
                f"no database connection free within {self.settings.pool_timeout_s:g} s"
            ) from error
        except (sqlalchemy.exc.DBAPIError, psycopg.Error, OSError) as error:
            raise unavailable("database unreachable") from error
        finally:
            metrics.POOL_WAITING.dec()
        metrics.POOL_CHECKED_OUT.inc()
        return checked

    async def ensure_schedule_guards(self) -> None:
        """Give the sessions table the strategy's guards once (at start, or on first need).

        A database that is down when the service starts must not keep the service from
        serving 503s until it is back: the guards are then applied before the first booking.
        """
        if self._schedule_guards_applied:
            return
        await apply_schedule_guards(
            libpq_url(self.settings.database_url), self.settings.concurrency
        )
        self._schedule_guards_applied = True

    async def _replace_pool(self) -> None:
        """Drop every pooled connection once one turns out dead: the server restarted (or
        dropped them all), so its idle siblings are dead too. Without this each one would fail
        a request with 503 whenever it was next used, long after the server came back."""
        self._pool_generation += 1
        await self.engine.dispose()

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()
        metrics.POOL_SIZE.set(0)
