"""The framework floor: the service's reserve route with nothing behind it (or only the SQL).

A minimal Quart app, served by the same supervisor, Hypercorn settings and worker class as
the service: it parses the JSON body and answers a JSON document of the same shape, with no
token check, no metrics and no request log.

- `benchmarks.floor_app:create_app()`: no database at all (the framework alone).
- `benchmarks.floor_app:create_app_with_sql()`: also runs the service's own change statement
  on a bare psycopg connection of its own (one per concurrent request, no pool library):
  framework plus driver, so that the service's CPU minus this is the service's own code.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid

import psycopg
from quart import Quart, Response, request

from target.database import POSTGRES_ISOLATION
from target.operations import Operation, UnitChange
from target.reservation_sql import CHANGE_STATEMENTS
from target.reservations import RETRYABLE_SQLSTATES, backoff_s, statement_parameters
from target.settings import DEFAULT_ISOLATION

MAX_RETRIES = 5


def create_app() -> Quart:
    """Build the floor app: the framework alone."""
    app = Quart(__name__)

    @app.get("/healthz")
    async def get_health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/api/authorizations/<authorization_id>/reserve")
    async def reserve_units(authorization_id: str) -> Response:
        body = json.loads(await request.get_data())
        answer = {
            "transaction_id": str(uuid.uuid4()),
            "authorization": {"id": authorization_id, "units": body["units"]},
        }
        return Response(json.dumps(answer), content_type="application/json")

    return app


def create_app_with_sql() -> Quart:
    """Build the floor app that also runs the service's statement on bare psycopg."""
    app = Quart(__name__)
    url = os.environ["DATABASE_URL"]
    strategy = os.environ.get("TARGET_CONCURRENCY", "serializable")
    level = POSTGRES_ISOLATION[DEFAULT_ISOLATION[strategy]]
    options = "-c default_transaction_isolation=" + level.replace(" ", "\\ ")
    statement = CHANGE_STATEMENTS[strategy, Operation.RESERVE, False]
    pool_size = int(os.environ.get("TARGET_POOL_SIZE", "8"))
    idle: asyncio.Queue[psycopg.AsyncConnection] = asyncio.Queue()
    opened: list[psycopg.AsyncConnection] = []
    owners: dict[str, tuple[uuid.UUID, uuid.UUID]] = {}

    async def checkout() -> psycopg.AsyncConnection:
        """A pool as small as can be: open up to pool_size connections, then wait for one."""
        if idle.empty() and len(opened) < pool_size:
            opened.append(
                await psycopg.AsyncConnection.connect(url, autocommit=True, options=options)
            )
            return opened[-1]
        return await idle.get()

    @app.before_serving
    async def load_owners() -> None:
        with psycopg.connect(url) as conn:
            for authorization_id, organization_id, practitioner_id in conn.execute(
                "SELECT a.id, a.organization_id, min(p.id::text)::uuid FROM authorizations a "
                "JOIN practitioners p USING (organization_id) WHERE a.status = 'active' "
                "GROUP BY a.id, a.organization_id"
            ):
                owners[str(authorization_id)] = (organization_id, practitioner_id)

    @app.get("/healthz")
    async def get_health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/api/authorizations/<authorization_id>/reserve")
    async def reserve_units(authorization_id: str) -> Response:
        body = json.loads(await request.get_data())
        organization_id, practitioner_id = owners[authorization_id]
        change = UnitChange(
            Operation.RESERVE,
            uuid.UUID(authorization_id),
            organization_id,
            practitioner_id,
            body["units"],
            "floor",
            uuid.uuid4(),
        )
        connection = await checkout()
        try:
            for attempt in range(1, MAX_RETRIES + 2):
                try:
                    cursor = await connection.execute(statement, statement_parameters(change))
                    row = await cursor.fetchone()
                    break
                except psycopg.Error as error:
                    if error.sqlstate not in RETRYABLE_SQLSTATES or attempt > MAX_RETRIES:
                        raise
                    await asyncio.sleep(backoff_s(attempt))
        finally:
            # A request cancelled mid-statement (a client gone) leaves its connection closed.
            if connection.closed or connection.broken:
                opened.remove(connection)
            else:
                idle.put_nowait(connection)
        if not (row and row[1]):
            return Response("{}", status=409, content_type="application/json")
        answer = {
            "transaction_id": str(change.transaction_id),
            "authorization": {"id": authorization_id},
        }
        return Response(json.dumps(answer), content_type="application/json")

    return app
