"""The driver alone: the service's round trips from bare psycopg, with no HTTP and no framework.

    python benchmarks/driver_alone.py URL STRATEGY SECONDS CONNECTIONS
        [--shape statement|interactive] [--keyed] [--isolation LEVEL]

One process (uvloop, like a worker) with CONNECTIONS connections at the strategy's isolation
level (or ``--isolation``), each reserving 5 units on a random hot authorization in a closed
loop, retrying 40001/40P01 as the service does (the same jittered backoff, at most
``MAX_RETRIES`` times, then the reservation counts as failed):

- ``statement``: the service's own change statement (target/reservation_sql.py) on an
  autocommit connection, one round trip.
- ``interactive``: the round trips the service's ORM unit of work sends, written out by hand
  with the same SQL text: BEGIN; with ``--keyed`` the key's advisory lock and the stored-key
  read; SELECT the authorization; the check in Python; UPDATE the counters (absolute values);
  with ``--keyed`` INSERT the key's stored outcome; INSERT the ledger row; COMMIT. No
  SQLAlchemy, no service code: the floor the service's interactive shape is measured against.

Prints one JSON line: reservations committed, retries, failures, seconds, this process's CPU
seconds, the p50/p95/p99 latency of a reservation (first attempt to commit) in ms, and the
aborts by PostgreSQL's message (`concurrent update`, or SSI's reason code with the pivot's
number dropped).
service_throughput.py runs it beside the service.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import random
import re
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg
import uvloop
from psycopg.types.json import Jsonb

from target.database import POSTGRES_ISOLATION
from target.operations import Operation, UnitChange
from target.reservation_sql import AUTHORIZATION_COLUMNS, CHANGE_STATEMENTS
from target.reservations import RETRYABLE_SQLSTATES, backoff_s, statement_parameters
from target.settings import DEFAULT_ISOLATION

UNITS = 5
MAX_RETRIES = 5  # the service's TARGET_MAX_RETRIES default
SHAPES = ("statement", "interactive")
PERCENTILES = (50, 95, 99)

# The statements the service's unit of work sends (as its SQLAlchemy session renders them,
# read from PostgreSQL's statement log), with psycopg placeholders.
CLAIM_KEY = (
    "SELECT pg_try_advisory_xact_lock("
    "hashtextextended(CAST(%(organization_id)s AS text) || '/' || %(key)s, 0)) AS held"
)
SELECT_STORED_KEY = (
    "SELECT idempotency_keys.organization_id, idempotency_keys.key, "
    "idempotency_keys.fingerprint, idempotency_keys.applied, idempotency_keys.image, "
    "idempotency_keys.transaction_id, idempotency_keys.created_at \nFROM idempotency_keys \n"
    "WHERE idempotency_keys.organization_id = %(organization_id)s::UUID "
    "AND idempotency_keys.key = %(key)s::VARCHAR"
)
SELECT_AUTHORIZATION = (
    "SELECT authorizations.id, authorizations.organization_id, authorizations.patient_id, "
    "authorizations.service_code, authorizations.total_units, authorizations.used_units, "
    "authorizations.scheduled_units, authorizations.start_date, authorizations.end_date, "
    "authorizations.status, authorizations.updated_at, CURRENT_DATE AS current_date_1 \n"
    "FROM authorizations \n"
    "WHERE authorizations.id = %(id)s::UUID AND authorizations.organization_id = "
    "%(organization_id)s::UUID"
)
UPDATE_COUNTERS = (
    "UPDATE authorizations SET scheduled_units=%(scheduled_units)s::INTEGER, updated_at=now() "
    "WHERE authorizations.id = %(id)s::UUID"
)
INSERT_STORED_KEY = (
    "INSERT INTO idempotency_keys (organization_id, key, fingerprint, applied, image, "
    "transaction_id) VALUES (%(organization_id)s::UUID, %(key)s::VARCHAR, "
    "%(fingerprint)s::VARCHAR, %(applied)s, %(image)s::JSONB, %(transaction_id)s::UUID)"
)
INSERT_LEDGER_ROW = (
    "INSERT INTO unit_transactions (id, authorization_id, organization_id, practitioner_id, "
    "kind, units, request_id, idempotency_key) VALUES (%(id)s::UUID, %(authorization_id)s::UUID, "
    "%(organization_id)s::UUID, %(practitioner_id)s::UUID, %(kind)s::VARCHAR, "
    "%(units)s::INTEGER, %(request_id)s::VARCHAR, %(key)s::VARCHAR)"
)
IMAGE_COLUMNS = AUTHORIZATION_COLUMNS


class GaveUp(Exception):
    """A reservation still conflicted after ``MAX_RETRIES`` retries."""


def connect_options(strategy: str, isolation: str | None) -> str:
    """Return libpq options setting the connection's default isolation level, as the service."""
    level = POSTGRES_ISOLATION[isolation or DEFAULT_ISOLATION[strategy]]
    return "-c default_transaction_isolation=" + level.replace(" ", "\\ ")


async def reserve_in_transaction(
    connection: psycopg.AsyncConnection,
    authorization_id: uuid.UUID,
    organization_id: uuid.UUID,
    practitioner_id: uuid.UUID,
    units: int,
    key: str | None,
) -> bool:
    """Run one reservation as the service's unit of work does; return True if it applied.

    The connection is not in autocommit: psycopg sends BEGIN before the first statement.
    A psycopg error is left to the caller, after the ROLLBACK.
    """
    transaction_id = uuid.uuid4()
    try:
        if key is not None:
            names = {"organization_id": str(organization_id), "key": key}
            held = await (await connection.execute(CLAIM_KEY, names)).fetchone()
            if not (held and held[0]):
                await connection.rollback()
                return False
            stored = await (await connection.execute(SELECT_STORED_KEY, names)).fetchone()
            if stored is not None:
                await connection.commit()
                return False
        cursor = await connection.execute(
            SELECT_AUTHORIZATION, {"id": authorization_id, "organization_id": organization_id}
        )
        row = await cursor.fetchone()
        assert row is not None
        (_, _, patient_id, service_code, total, used, scheduled, start, end, status, _, today) = row
        allowed = status == "active" and start <= today <= end and used + scheduled + units <= total
        if allowed:
            scheduled += units
            await connection.execute(
                UPDATE_COUNTERS, {"scheduled_units": scheduled, "id": authorization_id}
            )
        if key is not None:
            values = (
                authorization_id,
                organization_id,
                patient_id,
                service_code,
                total,
                used,
                scheduled,
                status,
                start,
                end,
            )
            image: dict[str, Any] = {
                name: str(value) if isinstance(value, uuid.UUID | dt.date) else value
                for name, value in zip(IMAGE_COLUMNS, values, strict=True)
            }
            image["today"] = str(today)
            await connection.execute(
                INSERT_STORED_KEY,
                {
                    "organization_id": organization_id,
                    "key": key,
                    "fingerprint": f"reserve:{authorization_id}:{units}",
                    "applied": allowed,
                    "image": Jsonb(image),
                    "transaction_id": transaction_id if allowed else None,
                },
            )
        if allowed:
            await connection.execute(
                INSERT_LEDGER_ROW,
                {
                    "id": transaction_id,
                    "authorization_id": authorization_id,
                    "organization_id": organization_id,
                    "practitioner_id": practitioner_id,
                    "kind": "reserve",
                    "units": units,
                    "request_id": transaction_id.hex,
                    "key": key,
                },
            )
        await connection.commit()
    except BaseException:
        if not connection.broken:
            await connection.rollback()
        raise
    return allowed


def abort_reason(error: psycopg.Error) -> str:
    """Say why PostgreSQL aborted: its message, and SSI's reason code without the pivot's id."""
    detail = re.sub(r"\d+", "N", error.diag.message_detail or "")
    return f"{error.sqlstate} {error.diag.message_primary} {detail}".strip()


async def with_retries(
    attempt: Any, counts: dict[str, int], aborts: Counter[str], *args: Any
) -> Any:
    """Run ``attempt(*args)``; on 40001/40P01 run it again after the service's backoff."""
    retries = 0
    while True:
        try:
            return await attempt(*args)
        except psycopg.Error as error:
            if error.sqlstate not in RETRYABLE_SQLSTATES:
                raise
            aborts[abort_reason(error)] += 1
            if retries >= MAX_RETRIES:
                raise GaveUp from error
            retries += 1
            counts["retries"] += 1
            await asyncio.sleep(backoff_s(retries))


def percentiles_ms(latencies_s: list[float]) -> dict[str, float]:
    """Return nearest-rank p50/p95/p99 in milliseconds."""
    ordered = sorted(latencies_s)
    if not ordered:
        return {f"p{p}": float("nan") for p in PERCENTILES}
    return {
        f"p{p}": round(ordered[max(0, -(-p * len(ordered) // 100) - 1)] * 1000, 2)
        for p in PERCENTILES
    }


async def drive(
    url: str,
    strategy: str,
    seconds: float,
    connections: int,
    *,
    shape: str,
    keyed: bool,
    isolation: str | None,
) -> dict[str, Any]:
    """Run the closed loops; return what was committed, the CPU it took and the latencies."""
    with psycopg.connect(url) as conn:
        targets = conn.execute(
            "SELECT a.id, a.organization_id, min(p.id::text)::uuid FROM authorizations a "
            "JOIN practitioners p USING (organization_id) WHERE a.status = 'active' "
            "GROUP BY a.id, a.organization_id"
        ).fetchall()
    statement = CHANGE_STATEMENTS[strategy, Operation.RESERVE, keyed]
    counts = {"reservations": 0, "retries": 0, "failures": 0}
    latencies_s: list[float] = []
    aborts: Counter[str] = Counter()
    deadline = 0.0
    prefix = uuid.uuid4().hex[:12]
    serial = 0

    async def loop(connection: psycopg.AsyncConnection) -> None:
        nonlocal serial
        cursor = connection.cursor()

        async def one_statement(target: tuple[uuid.UUID, ...], key: str | None) -> bool:
            authorization_id, organization_id, practitioner_id = target
            change = UnitChange(
                Operation.RESERVE,
                authorization_id,
                organization_id,
                practitioner_id,
                UNITS,
                "driver",
                uuid.uuid4(),
                key,
            )
            await cursor.execute(statement, statement_parameters(change))
            row = await cursor.fetchone()
            return bool(row and row[1])

        async def unit_of_work(target: tuple[uuid.UUID, ...], key: str | None) -> bool:
            authorization_id, organization_id, practitioner_id = target
            return await reserve_in_transaction(
                connection, authorization_id, organization_id, practitioner_id, UNITS, key
            )

        attempt = one_statement if shape == "statement" else unit_of_work
        while time.monotonic() < deadline:
            target = random.choice(targets)
            serial += 1
            key = f"{prefix}-{serial}" if keyed else None
            started = time.monotonic()
            try:
                applied = await with_retries(attempt, counts, aborts, target, key)
            except GaveUp:
                counts["failures"] += 1
                continue
            latencies_s.append(time.monotonic() - started)
            counts["reservations"] += applied

    options = connect_options(strategy, isolation)
    pool = [
        await psycopg.AsyncConnection.connect(url, autocommit=shape == "statement", options=options)
        for _ in range(connections)
    ]
    cpu_before, started = time.process_time(), time.monotonic()
    deadline = started + seconds
    await asyncio.gather(*(loop(connection) for connection in pool))
    elapsed, cpu = time.monotonic() - started, time.process_time() - cpu_before
    for connection in pool:
        await connection.close()
    return {
        **counts,
        "seconds": elapsed,
        "cpu_s": cpu,
        "latency_ms": percentiles_ms(latencies_s),
        "aborts": dict(aborts.most_common()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("strategy")
    parser.add_argument("seconds", type=float)
    parser.add_argument("connections", type=int)
    parser.add_argument("--shape", choices=SHAPES, default="statement")
    parser.add_argument("--keyed", action="store_true", help="a unique Idempotency-Key each")
    parser.add_argument("--isolation", choices=tuple(POSTGRES_ISOLATION))
    args = parser.parse_args()
    result = uvloop.run(
        drive(
            args.url,
            args.strategy,
            args.seconds,
            args.connections,
            shape=args.shape,
            keyed=args.keyed,
            isolation=args.isolation,
        )
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
