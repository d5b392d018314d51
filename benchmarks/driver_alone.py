"""The driver alone: the service's change statement from psycopg, with no HTTP and no framework.

    python benchmarks/driver_alone.py URL STRATEGY SECONDS CONNECTIONS

One process (uvloop, like a worker) with CONNECTIONS autocommit connections at the strategy's
isolation level, each running the service's own reserve statement (target/reservation_sql.py)
on a random hot authorization in a closed loop, retrying 40001/40P01 as the service does.
Prints one JSON line: reservations committed, retries, seconds, and this process's CPU
seconds. service_throughput.py runs it beside the service: service CPU minus framework floor
minus this is what the service's own code costs.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg
import uvloop

from target.database import POSTGRES_ISOLATION
from target.operations import Operation, UnitChange
from target.reservation_sql import CHANGE_STATEMENTS
from target.reservations import RETRYABLE_SQLSTATES, statement_parameters
from target.settings import DEFAULT_ISOLATION

UNITS = 5


async def drive(url: str, strategy: str, seconds: float, connections: int) -> dict[str, float]:
    """Run the closed loops; return what was committed and the CPU it took."""
    level = POSTGRES_ISOLATION[DEFAULT_ISOLATION[strategy]]
    options = "-c default_transaction_isolation=" + level.replace(" ", "\\ ")
    with psycopg.connect(url) as conn:
        targets = conn.execute(
            "SELECT a.id, a.organization_id, min(p.id::text)::uuid FROM authorizations a "
            "JOIN practitioners p USING (organization_id) WHERE a.status = 'active' "
            "GROUP BY a.id, a.organization_id"
        ).fetchall()
    statement = CHANGE_STATEMENTS[strategy, Operation.RESERVE, False]
    counts = {"reservations": 0, "retries": 0}
    deadline = 0.0

    async def loop(connection: psycopg.AsyncConnection) -> None:
        cursor = connection.cursor()
        while time.monotonic() < deadline:
            authorization_id, organization_id, practitioner_id = random.choice(targets)
            change = UnitChange(
                Operation.RESERVE,
                authorization_id,
                organization_id,
                practitioner_id,
                UNITS,
                "driver",
                uuid.uuid4(),
            )
            try:
                await cursor.execute(statement, statement_parameters(change))
                row = await cursor.fetchone()
            except psycopg.Error as error:
                if error.sqlstate not in RETRYABLE_SQLSTATES:
                    raise
                counts["retries"] += 1
                continue
            counts["reservations"] += bool(row and row[1])

    pool = [
        await psycopg.AsyncConnection.connect(url, autocommit=True, options=options)
        for _ in range(connections)
    ]
    cpu_before, started = time.process_time(), time.monotonic()
    deadline = started + seconds
    await asyncio.gather(*(loop(connection) for connection in pool))
    elapsed, cpu = time.monotonic() - started, time.process_time() - cpu_before
    for connection in pool:
        await connection.close()
    return {**counts, "seconds": elapsed, "cpu_s": cpu}


def main() -> None:
    url, strategy, seconds, connections = sys.argv[1:5]
    result = uvloop.run(drive(url, strategy, float(seconds), int(connections)))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
