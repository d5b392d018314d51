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

from molotov_scenarios.records import Record, is_error
from results.latency import latency_summary

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
    latencies: dict[str, list[float]] = {}
    errors: dict[str, dict[str, int]] = {}
    for record in records:
        owner = index.owner_of.get(record.authorization_id, UNKNOWN_ORGANIZATION)
        latencies.setdefault(owner, []).append(record.latency_ms)
        codes = errors.setdefault(owner, {})
        if is_error(record.status, record.code):
            code = record.code or str(record.status)
            codes[code] = codes.get(code, 0) + 1
    figures: list[OrganizationFigures] = []
    for owner, values in latencies.items():
        summary = latency_summary(values)
        error_count = sum(errors[owner].values())
        figures.append(
            {
                "organization_id": owner,
                "name": index.names.get(owner, owner),
                "requests": len(values),
                "errors": error_count,
                "error_rate": round(error_count / len(values), 6),
                "p50_ms": summary["p50"],
                "p95_ms": summary["p95"],
                "p99_ms": summary["p99"],
                "by_code": dict(sorted(errors[owner].items())),
            }
        )
    return sorted(figures, key=lambda entry: (entry["name"], entry["organization_id"]))
