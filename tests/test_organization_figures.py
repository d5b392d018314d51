"""Figures per organization (tenant), from hand-picked records, in result, summary and report."""

from __future__ import annotations

from results.organizations import (
    UNKNOWN_ORGANIZATION,
    organization_index,
    summarise_by_organization,
)
from results.record_format import Record

FIXTURES = {
    "organizations": [{"id": "org-a", "name": "OrgA"}, {"id": "org-b", "name": "OrgB"}],
    "pools": {
        "high_contention": [{"id": "auth-a1", "organization_id": "org-a"}],
        "normal": [
            {"id": "auth-a2", "organization_id": "org-a"},
            {"id": "auth-b1", "organization_id": "org-b"},
        ],
    },
}


def record(authorization_id: str, latency_ms: float, status: int = 200, code: str = "") -> Record:
    return Record(
        request_id=f"r-{authorization_id}-{latency_ms}",
        operation="reserve",
        authorization_id=authorization_id,
        status=status,
        code=code,
        latency_ms=latency_ms,
        started_s=0.0,
        transaction_id="",
        kind="reserve",
        units=1,
    )


def test_each_organization_gets_its_own_count_errors_and_percentiles() -> None:
    # OrgA: 1..100 ms over two authorizations, three of them errors; OrgB: 201..220 ms, none.
    records = [record("auth-a1" if ms % 2 else "auth-a2", ms) for ms in range(1, 98)]
    records += [
        record("auth-a1", 98, 409, "insufficient_units"),
        record("auth-a1", 99, 409, "insufficient_units"),
        record("auth-a2", 100, 0, "timeout"),
    ]
    records += [record("auth-b1", 200 + ms) for ms in range(1, 21)]
    records.append(record("auth-elsewhere", 5000, 404, "not_found"))

    figures = summarise_by_organization(records, organization_index(FIXTURES))

    assert [(f["name"], f["requests"], f["errors"]) for f in figures] == [
        ("OrgA", 100, 3),
        ("OrgB", 20, 0),
        (UNKNOWN_ORGANIZATION, 1, 1),
    ]
    org_a, org_b, unknown = figures
    assert (org_a["p50_ms"], org_a["p95_ms"], org_a["p99_ms"]) == (50, 95, 99)
    assert org_a["error_rate"] == 0.03
    assert org_a["by_code"] == {"insufficient_units": 2, "timeout": 1}
    assert org_a["organization_id"] == "org-a"
    assert (org_b["p50_ms"], org_b["p95_ms"], org_b["p99_ms"]) == (210, 219, 220)
    assert org_b["by_code"] == {}
    assert unknown["by_code"] == {"not_found": 1}


def test_no_records_give_no_organizations() -> None:
    assert summarise_by_organization([], organization_index(FIXTURES)) == []
