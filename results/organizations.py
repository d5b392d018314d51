"""Figures per organization (tenant): does one organization's load cost another its latency?

Records carry the authorization they hit; the fixtures file the run used says which
organization owns it. Records for an authorization the fixtures do not know count under
UNKNOWN_ORGANIZATION rather than vanish.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

import numpy as np

from results.latency import latency_summary
from results.record_format import Record
from results.record_table import RecordTable

UNKNOWN_ORGANIZATION = "unknown"


class OrganizationFigures(TypedDict):
    """One organization's requests in one scenario (result.json `by_organization`)."""

    organization_id: str
    name: str
    requests: int
    errors: int
    error_rate: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    by_code: dict[str, int]  # error codes only


@dataclass(frozen=True)
class OrganizationIndex:
    """Who owns each authorization, and each organization's name."""

    owner_of: Mapping[str, str]
    names: Mapping[str, str]


def organization_index(fixtures: Mapping[str, Any]) -> OrganizationIndex:
    """Build the index from a fixtures document (seeding/fixtures.py, schema_version 1)."""
    owner_of = {
        str(entry["id"]): str(entry["organization_id"])
        for pool in (fixtures.get("pools") or {}).values()
        for entry in pool
    }
    names = {
        str(org["id"]): str(org.get("name") or org["id"])
        for org in fixtures.get("organizations") or []
    }
    return OrganizationIndex(owner_of=owner_of, names=names)


def read_organization_index(fixtures_path: Path) -> OrganizationIndex | None:
    """Read the fixtures file's index; None when it cannot be read (the figures are extra)."""
    try:
        document = json.loads(fixtures_path.read_text(encoding="utf-8"))
        return organization_index(document)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def summarise_by_organization(
    records: Iterable[Record], index: OrganizationIndex
) -> list[OrganizationFigures]:
    """Count, time and list the errors of each organization's requests, by name."""
    table = RecordTable.from_records(records)
    authorizations = table.authorization_id
    owners = [index.owner_of.get(label, UNKNOWN_ORGANIZATION) for label in authorizations.labels]
    owner_names = sorted(set(owners))
    owner_code = np.array([owner_names.index(owner) for owner in owners], dtype=np.int64)
    owner_of_row = owner_code[authorizations.codes] if len(owners) else authorizations.codes
    codes = table.code
    figures: list[OrganizationFigures] = []
    for code, owner in enumerate(owner_names):
        rows = owner_of_row == code
        if not rows.any():
            continue
        summary = latency_summary(table.latency_ms[rows])
        failed = rows & table.error
        by_code: dict[str, int] = {}
        pairs = np.stack([codes.codes[failed].astype(np.int64), table.status[failed]], axis=1)
        distinct, counts = np.unique(pairs, axis=0, return_counts=True)
        for (label_code, status), count in zip(distinct.tolist(), counts.tolist(), strict=True):
            # An error without a code of its own counts under its status.
            key = codes.labels[label_code] or str(status)
            by_code[key] = by_code.get(key, 0) + count
        requests = int(rows.sum())
        error_count = int(failed.sum())
        figures.append(
            {
                "organization_id": owner,
                "name": index.names.get(owner, owner),
                "requests": requests,
                "errors": error_count,
                "error_rate": round(error_count / requests, 6),
                "p50_ms": summary["p50"],
                "p95_ms": summary["p95"],
                "p99_ms": summary["p99"],
                "by_code": dict(sorted(by_code.items())),
            }
        )
    return sorted(figures, key=lambda entry: (entry["name"], entry["organization_id"]))
