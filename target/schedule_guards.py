"""The `constraint` strategy's exclusion constraints: the database refuses overlapping sessions.

They exist only while a service with that strategy serves: every other strategy must keep the
rules itself, and the integrity checks must be able to see it fail. The service puts the
schema in its strategy's shape when it starts (`apply_schedule_guards`), under an advisory
lock so that workers starting together do it once.
"""

from __future__ import annotations

import psycopg

PRACTITIONER_OVERLAP = "ex_therapy_sessions_practitioner_overlap"
PATIENT_OVERLAP = "ex_therapy_sessions_patient_overlap"
# Cancelled sessions free their slot; booked and completed ones hold it.
EXCLUSIONS = {
    PRACTITIONER_OVERLAP: "practitioner_id WITH =",
    PATIENT_OVERLAP: "patient_id WITH =",
}
GUARDS_LOCK = 7_402_113  # an advisory lock id of this module's own


def guard_statements(strategy: str) -> list[str]:
    """Return the DDL that gives the sessions table the guards ``strategy`` relies on."""
    if strategy != "constraint":
        return [
            f"ALTER TABLE therapy_sessions DROP CONSTRAINT IF EXISTS {name}" for name in EXCLUSIONS
        ]
    statements = ["CREATE EXTENSION IF NOT EXISTS btree_gist"]
    for name, column in EXCLUSIONS.items():
        statements += [
            f"ALTER TABLE therapy_sessions DROP CONSTRAINT IF EXISTS {name}",
            f"ALTER TABLE therapy_sessions ADD CONSTRAINT {name} EXCLUDE USING gist"
            f" ({column}, tstzrange(starts_at, ends_at) WITH &&)"
            " WHERE (status <> 'cancelled')",
        ]
    return statements


async def apply_schedule_guards(database_url: str, strategy: str) -> None:
    """Add the exclusion constraints for `constraint`, drop them for every other strategy."""
    connection = await psycopg.AsyncConnection.connect(database_url)
    async with connection, connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock(%s)", (GUARDS_LOCK,))
        present = await connection.execute(
            "SELECT count(*) FROM pg_constraint WHERE conname = ANY(%s)",
            (list(EXCLUSIONS),),
        )
        (count,) = await present.fetchone() or (0,)
        wanted = len(EXCLUSIONS) if strategy == "constraint" else 0
        if count == wanted:
            return
        for statement in guard_statements(strategy):
            await connection.execute(statement)  # type: ignore[arg-type]
