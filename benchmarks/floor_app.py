"""The framework floor: the service's reserve route with nothing behind it (or only the SQL).

A minimal Quart app, served by the same supervisor, Hypercorn settings and worker class as
the service: it parses the JSON body and answers a JSON document of the same shape, with no
token check, no metrics and no request log.

- `benchmarks.floor_app:create_app()`: no database at all (the framework alone).
- `benchmarks.floor_app:create_app_with_sql()`: also runs the service's own change statement
  on a bare psycopg connection of its own (one per concurrent request, no pool library):
  framework plus driver, so that the service's CPU minus this is the service's own code.
  Under `TARGET_TRANSACTION_SHAPE=interactive` it runs instead the round trips of the
  service's unit of work, by hand (`driver_alone.reserve_in_transaction`), at
  `TARGET_ISOLATION`; a request with an Idempotency-Key takes the keyed statement or the
  keyed round trips, as the service does. It counts its 40001/40P01 retries as the service
  does, in `floor_serialization_retries_total` on `/metrics` (summed over the workers).
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid

import psycopg
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    generate_latest,
    multiprocess,
)
from quart import Quart, Response, request

from benchmarks.driver_alone import GaveUp, connect_options, reserve_in_transaction
from target.operations import Operation, UnitChange
from target.reservation_sql import CHANGE_STATEMENTS
from target.reservations import RETRYABLE_SQLSTATES, backoff_s, statement_parameters

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
    options = connect_options(strategy, os.environ.get("TARGET_ISOLATION") or None)
    interactive = os.environ.get("TARGET_TRANSACTION_SHAPE", "statement") == "interactive"
    pool_size = int(os.environ.get("TARGET_POOL_SIZE", "8"))
    idle: asyncio.Queue[psycopg.AsyncConnection] = asyncio.Queue()
    opened: list[psycopg.AsyncConnection] = []
    owners: dict[str, tuple[uuid.UUID, uuid.UUID]] = {}
    # The supervisor gives every worker the same PROMETHEUS_MULTIPROC_DIR, as to the service.
    # Not the service's own counter's name: target.metrics, imported with target.reservations,
    # registers that one in this process.
    retries = Counter("floor_serialization_retries", "Transactions rerun after 40001/40P01")

    async def checkout() -> psycopg.AsyncConnection:
        """A pool as small as can be: open up to pool_size connections, then wait for one."""
        if idle.empty() and len(opened) < pool_size:
            opened.append(
                await psycopg.AsyncConnection.connect(
                    url, autocommit=not interactive, options=options
                )
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

    @app.get("/metrics")
    async def get_metrics() -> Response:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)

    @app.post("/api/authorizations/<authorization_id>/reserve")
    async def reserve_units(authorization_id: str) -> Response:
        body = json.loads(await request.get_data())
        organization_id, practitioner_id = owners[authorization_id]
        key = request.headers.get("Idempotency-Key")
        change = UnitChange(
            Operation.RESERVE,
            uuid.UUID(authorization_id),
            organization_id,
            practitioner_id,
            body["units"],
            "floor",
            uuid.uuid4(),
            key,
        )
        connection = await checkout()
        try:
            for attempt in range(1, MAX_RETRIES + 2):
                try:
                    if interactive:
                        applied = await reserve_in_transaction(
                            connection,
                            change.authorization_id,
                            organization_id,
                            practitioner_id,
                            change.units,
                            key,
                        )
                    else:
                        statement = CHANGE_STATEMENTS[strategy, Operation.RESERVE, key is not None]
                        cursor = await connection.execute(statement, statement_parameters(change))
                        row = await cursor.fetchone()
                        applied = bool(row and row[1])
                    break
                except psycopg.Error as error:
                    if error.sqlstate not in RETRYABLE_SQLSTATES:
                        raise
                    if attempt > MAX_RETRIES:
                        raise GaveUp from error
                    retries.inc()
                    await asyncio.sleep(backoff_s(attempt))
        finally:
            # A request cancelled mid-statement (a client gone) leaves its connection closed.
            if connection.closed or connection.broken:
                opened.remove(connection)
            else:
                idle.put_nowait(connection)
        if not applied:
            return Response("{}", status=409, content_type="application/json")
        answer = {
            "transaction_id": str(change.transaction_id),
            "authorization": {"id": authorization_id},
        }
        return Response(json.dumps(answer), content_type="application/json")

    return app
