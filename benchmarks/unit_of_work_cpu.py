"""CPU of one interactive reservation, with no HTTP and no contention: bare psycopg vs the service.

    python benchmarks/unit_of_work_cpu.py [--operations 2000] [--rounds 5] [--json PATH]
        [--only VARIANT]

On a throwaway cluster seeded as service_throughput.py seeds it, one connection, one keyed
reservation after another (so no serialization conflicts and no retries), SERIALIZABLE.
Each round runs every variant in turn (interleaved, fresh order each round) and takes its
CPU (`time.process_time`) per reservation; medians over the rounds are printed.

- ``bare psycopg``: benchmarks/driver_alone.py's unit of work, the same round trips by hand;
- ``service``: the service's own `target.reservations.change_units` on a `Database` with a
  one-connection pool (pool checkout, AsyncSession, the ORM unit of work, the retry wrapper,
  metrics), under the interactive shape: what the service spends beyond the driver, without
  the framework;
- ``service, prebuilt selects``: the same with the two ORM reads built once with bind
  parameters, as a candidate change (monkeypatched here, target/ is not edited): the same
  SQL text, the same round trips;
- ``service, no RETURNING created_at``: the same with the two INSERTs' server-default fetch
  off (the mappers' eager_defaults), a second candidate: one fewer column to read per INSERT.

``--only`` runs one variant (to record it with ``py-spy record -- python ...``).
Nothing passes or fails: a measurement for benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import psycopg
import uvloop
from driver_alone import connect_options, reserve_in_transaction
from service_throughput import reset_service_database, seeded_service_cluster
from sqlalchemy import bindparam, func, select

import target.interactive_changes as interactive_changes
from target.database import Database
from target.idempotency import StoredOutcome
from target.models import Authorization, IdempotencyKey, UnitTransaction
from target.operations import Operation, UnitChange
from target.reservations import RetryCount, change_units
from target.settings import Settings

DEFAULT_OPERATIONS = 2000
DEFAULT_ROUNDS = 5
WARMUP_OPERATIONS = 200
UNITS = 5
ISOLATION = "serializable"
VARIANTS = (
    "bare psycopg",
    "service",
    "service, prebuilt selects",
    "service, no RETURNING created_at",
)
DEFAULT_JSON = Path(__file__).resolve().parent.parent / ".loadtest" / "unit_of_work_cpu.json"

SELECT_AUTHORIZATION = select(Authorization, func.current_date()).where(
    Authorization.id == bindparam("authorization_id"),
    Authorization.organization_id == bindparam("organization_id"),
)
SELECT_STORED_KEY = select(IdempotencyKey).where(
    IdempotencyKey.organization_id == bindparam("organization_id"),
    IdempotencyKey.key == bindparam("key"),
)


async def select_authorization_prebuilt(
    session: Any, authorization_id: uuid.UUID, organization_id: uuid.UUID, *, lock: bool
) -> tuple[Authorization | None, Any]:
    """The service's select_authorization with a statement built once (no lock: serializable)."""
    assert not lock
    found = (
        await session.execute(
            SELECT_AUTHORIZATION,
            {"authorization_id": authorization_id, "organization_id": organization_id},
        )
    ).first()
    return (None, None) if found is None else (found[0], found[1])


async def select_stored_key_prebuilt(
    session: Any, organization_id: uuid.UUID, key: str | None
) -> StoredOutcome | None:
    """The service's select_stored_key with a statement built once instead of Session.get."""
    stored = await session.scalar(
        SELECT_STORED_KEY, {"organization_id": organization_id, "key": key}
    )
    if stored is None:
        return None
    return StoredOutcome(stored.fingerprint, stored.applied, stored.image, stored.transaction_id)


@contextmanager
def prebuilt_selects() -> Iterator[None]:
    """Swap the two ORM reads of target.interactive_changes for prebuilt ones, then restore."""
    saved = (interactive_changes.select_authorization, interactive_changes.select_stored_key)
    interactive_changes.select_authorization = select_authorization_prebuilt  # type: ignore[assignment]
    interactive_changes.select_stored_key = select_stored_key_prebuilt
    try:
        yield
    finally:
        interactive_changes.select_authorization, interactive_changes.select_stored_key = saved


@contextmanager
def no_eager_defaults() -> Iterator[None]:
    """Stop the INSERTs fetching created_at with RETURNING (the service never reads it)."""
    mappers = (UnitTransaction.__mapper__, IdempotencyKey.__mapper__)
    saved = [mapper.eager_defaults for mapper in mappers]
    for mapper in mappers:
        mapper.eager_defaults = False
    try:
        yield
    finally:
        for mapper, value in zip(mappers, saved, strict=True):
            mapper.eager_defaults = value


def load_targets(url: str) -> list[tuple[uuid.UUID, uuid.UUID, uuid.UUID]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT a.id, a.organization_id, min(p.id::text)::uuid FROM authorizations a "
            "JOIN practitioners p USING (organization_id) WHERE a.status = 'active' "
            "GROUP BY a.id, a.organization_id"
        ).fetchall()


async def time_loop(operations: int, one: Callable[[int], Awaitable[Any]]) -> float:
    """Run ``one(i)`` ``operations`` times in sequence; return CPU ms per operation."""
    before = time.process_time()
    for index in range(operations):
        await one(index)
    return (time.process_time() - before) * 1000 / operations


async def measure(
    url: str, operations: int, rounds: int, only: str | None = None
) -> dict[str, list[float]]:
    """Run every variant ``rounds`` times, interleaved; return CPU ms per reservation each."""
    targets = load_targets(url)
    settings = Settings.from_env(
        {
            "DATABASE_URL": url,
            "TARGET_CONCURRENCY": "serializable",
            "TARGET_TRANSACTION_SHAPE": "interactive",
            "TARGET_ISOLATION": ISOLATION,
            "TARGET_POOL_SIZE": "1",
        }
    )
    database = Database(settings)
    connection = await psycopg.AsyncConnection.connect(
        url, options=connect_options("serializable", ISOLATION)
    )
    prefix = uuid.uuid4().hex[:8]
    serial = 0

    def next_key() -> str:
        nonlocal serial
        serial += 1
        return f"{prefix}-{serial}"

    async def bare(_: int) -> None:
        authorization_id, organization_id, practitioner_id = random.choice(targets)
        await reserve_in_transaction(
            connection, authorization_id, organization_id, practitioner_id, UNITS, next_key()
        )

    async def service(_: int) -> None:
        authorization_id, organization_id, practitioner_id = random.choice(targets)
        change = UnitChange(
            Operation.RESERVE,
            authorization_id,
            organization_id,
            practitioner_id,
            UNITS,
            uuid.uuid4().hex,
            uuid.uuid4(),
            next_key(),
        )
        await change_units(database, change, RetryCount())

    # (the unit of work, the candidate change in force while it runs)
    variants = {
        "bare psycopg": (bare, nullcontext),
        "service": (service, nullcontext),
        "service, prebuilt selects": (service, prebuilt_selects),
        "service, no RETURNING created_at": (service, no_eager_defaults),
    }
    if only is not None:
        variants = {only: variants[only]}
    for one, change in variants.values():
        with change():
            await time_loop(WARMUP_OPERATIONS, one)
    results: dict[str, list[float]] = {name: [] for name in variants}
    for round_number in range(rounds):
        order = list(variants)
        random.Random(round_number).shuffle(order)
        for name in order:
            one, change = variants[name]
            with change():
                results[name].append(round(await time_loop(operations, one), 4))
        print(f"round {round_number + 1}/{rounds}: {results}", file=sys.stderr)
    await connection.close()
    await database.dispose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--operations", type=int, default=DEFAULT_OPERATIONS)
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    parser.add_argument("--only", choices=VARIANTS)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="unit-of-work-cpu-"))
    with seeded_service_cluster(workdir) as (url, _):
        reset_service_database(url)
        results = uvloop.run(measure(url, args.operations, args.rounds, args.only))
    bare = statistics.median(results.get("bare psycopg", [float("nan")]))
    print("| variant | CPU ms per reservation, median (min-max) | minus bare psycopg |")
    print("|---|---:|---:|")
    for name, values in results.items():
        median = statistics.median(values)
        print(
            f"| {name} | {median:.3f} ({min(values):.3f}-{max(values):.3f}) "
            f"| {median - bare:+.3f} |"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"operations": args.operations, "results": results}, indent=2))


if __name__ == "__main__":
    main()
