"""The fixture file scenarios read: which authorizations to hit, with which token."""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from seeding.dataset import POOL_NAMES, SERVICE_CODES, AuthorizationRow, DataSet

SCHEMA_VERSION = 1
DEFAULT_FIXTURES_PATH = Path(__file__).resolve().parent.parent / "fixtures" / "test-data.json"
# Fields that carry the time of seeding; everything else is the same for the same seed and day.
TIME_DEPENDENT_FIELDS = ("generated_at", "tokens_expire_at")
FIXTURE_FILE_MODE = 0o644
JSON_INDENT = 2
PRETTY_PRINT_MAX_AUTHORIZATIONS = 1000


def fixture_document(
    dataset: DataSet,
    *,
    seed: int,
    scale: int,
    background: int,
    password: str,
    tokens: dict[str, str],
    generated_at: dt.datetime,
    tokens_expire_at: dt.datetime,
) -> dict[str, Any]:
    """Return the fixture document (schema_version 1) of a seeded data set."""
    return {
        "schema_version": SCHEMA_VERSION,
        "seed": seed,
        "scale": scale,
        "background": background,
        "generated_at": generated_at.isoformat(),
        "tokens_expire_at": tokens_expire_at.isoformat(),
        "password": password,
        "organizations": [{"id": str(org.id), "name": org.name} for org in dataset.organizations],
        "service_codes": list(SERVICE_CODES),
        # Only the patients behind active authorizations; the background ones are history.
        "patients": [
            {"id": str(patient.id), "organization_id": str(patient.organization_id)}
            for patient in dataset.patients
        ],
        "practitioners": [
            {
                "id": str(row.id),
                "organization_id": str(row.organization_id),
                "email": row.email,
                "role": row.role,
                "token": tokens[str(row.id)],
            }
            for row in dataset.practitioners
        ],
        "pools": {name: [pool_entry(row) for row in dataset.pools[name]] for name in POOL_NAMES},
    }


def pool_entry(row: AuthorizationRow) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "organization_id": str(row.organization_id),
        "patient_id": str(row.patient_id),
        "service_code": row.service_code,
        "total_units": row.total_units,
        "used_units": row.used_units,
        "scheduled_units": row.scheduled_units,
    }


def write_pending(document: dict[str, Any], path: Path) -> Path:
    """Write ``document`` to a temporary file beside ``path``; publish it with ``publish``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=".tmp", dir=path.parent
    )
    try:
        # mkstemp makes the file private; the fixtures are meant to be read by the scenarios.
        os.fchmod(descriptor, FIXTURE_FILE_MODE)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=json_indent(document))
            handle.write("\n")
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return Path(temporary)


def json_indent(document: dict[str, Any]) -> int | None:
    """Indent a small document for people; write a large one compact.

    An indent makes ``json`` fall back to its pure-Python encoder: ten times slower, and
    the file twice as big, at scale 1000 (55,000 authorizations).
    """
    listed = sum(len(entries) for entries in document["pools"].values())
    return JSON_INDENT if listed <= PRETTY_PRINT_MAX_AUTHORIZATIONS else None


def publish(pending: Path, path: Path) -> None:
    """Move a pending fixture file into place atomically."""
    os.replace(pending, path)


def load_fixtures(path: Path = DEFAULT_FIXTURES_PATH) -> dict[str, Any]:
    """Read a fixture file written by seeding."""
    return json.loads(path.read_text(encoding="utf-8"))
