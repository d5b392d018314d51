"""Helpers shared by the integrity tests: a hand-seeded world and its result folder."""

from __future__ import annotations

import csv
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from integrity import IntegrityReport, run_checks

UNITS_PER_REQUEST = 10
HC_TOTAL = 50
SCHEDULE = {"reserve": (1, 0), "release": (-1, 0), "consume": (-1, 1)}
NO_RESPONSE = "0"


@dataclass
class World:
    """A hand-seeded database, its fixtures and one scenario's result folder."""

    url: str
    result_dir: Path
    fixtures_path: Path
    organization_id: str
    practitioner_id: str
    high_contention: list[str]
    normal: list[str]
    operations: list[tuple[str, str, str, int]] = field(default_factory=list)
    by_status: dict[str, int] = field(default_factory=dict)
    # Requests that got no response (unanswered.csv); None: the file is not written at all.
    unanswered: list[tuple[str, str, str, int]] | None = None

    def apply(
        self,
        authorization_id: str,
        kind: str,
        units: int,
        *,
        in_ledger: bool = True,
        in_counters: bool = True,
        seen_by_client: bool = True,
        request_id: str | None = None,
    ) -> str:
        """Record one operation in any of the ledger, the counters and the client's file."""
        transaction_id = str(uuid.uuid4())
        scheduled_sign, used_sign = SCHEDULE[kind]
        with psycopg.connect(self.url) as conn:
            if in_ledger:
                conn.execute(
                    "INSERT INTO unit_transactions (id, authorization_id, organization_id, "
                    "practitioner_id, kind, units, request_id) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    (
                        transaction_id,
                        authorization_id,
                        self.organization_id,
                        self.practitioner_id,
                        kind,
                        units,
                        request_id,
                    ),
                )
            if in_counters:
                conn.execute(
                    "UPDATE authorizations SET scheduled_units = scheduled_units + %s, "
                    "used_units = used_units + %s WHERE id = %s",
                    (scheduled_sign * units, used_sign * units, authorization_id),
                )
        if seen_by_client:
            self.operations.append((transaction_id, authorization_id, kind, units))
        return transaction_id

    def no_response(
        self, request_id: str, authorization_id: str, kind: str, units: int, *, committed: bool
    ) -> str | None:
        """Record a request that got no response; ``committed``: the server applied it anyway."""
        self.unanswered = [*(self.unanswered or []), (request_id, authorization_id, kind, units)]
        self.by_status[NO_RESPONSE] = self.by_status.get(NO_RESPONSE, 0) + 1
        if not committed:
            return None
        return self.apply(
            authorization_id, kind, units, seen_by_client=False, request_id=request_id
        )

    def execute(self, sql: str, params: tuple[object, ...] = ()) -> None:
        with psycopg.connect(self.url) as conn:
            conn.execute(sql, params)

    def write_results(self, scenario: str = "high_contention") -> None:
        self.result_dir.mkdir(parents=True, exist_ok=True)
        result = {
            "schema_version": 1,
            "scenario": scenario,
            "config": {"units_per_request": UNITS_PER_REQUEST},
            "by_status": self.by_status,
        }
        (self.result_dir / "result.json").write_text(json.dumps(result))
        with (self.result_dir / "operations.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["transaction_id", "authorization_id", "kind", "units"])
            writer.writerows(self.operations)
        if self.unanswered is not None:
            with (self.result_dir / "unanswered.csv").open("w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(["request_id", "authorization_id", "kind", "units"])
                writer.writerows(self.unanswered)

    def check(self, scenario: str = "high_contention", **kwargs: object):
        self.write_results(scenario)
        return run_checks(self.url, [self.result_dir], fixtures_path=self.fixtures_path, **kwargs)


def seed_by_hand(url: str, tmp_path: Path) -> World:
    """Seed a tiny world the way seeding does: rows, seed_baseline and fixtures."""
    org, patient, practitioner = (str(uuid.uuid4()) for _ in range(3))
    high_contention = [str(uuid.uuid4()) for _ in range(2)]
    normal = [str(uuid.uuid4()) for _ in range(2)]
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO organizations (id, name) VALUES (%s, 'OrgA')", (org,))
        conn.execute("INSERT INTO service_codes VALUES ('97151', 'Behavior identification')")
        conn.execute(
            "INSERT INTO patients VALUES (%s, %s, 'Ada', 'Lovelace', '1990-01-01', 'M1')",
            (patient, org),
        )
        conn.execute(
            "INSERT INTO practitioners VALUES (%s, %s, 'a@example.org', 'A B', 'bcba', 'x')",
            (practitioner, org),
        )
        for authorization_id, total, used, scheduled in [
            *((hc, HC_TOTAL, 0, 0) for hc in high_contention),
            *((n, 100, 20, 10) for n in normal),
        ]:
            conn.execute(
                "INSERT INTO authorizations (id, organization_id, patient_id, service_code, "
                "total_units, used_units, scheduled_units, start_date, end_date) "
                "VALUES (%s, %s, %s, '97151', %s, %s, %s, '2026-01-01', '2026-12-31')",
                (authorization_id, org, patient, total, used, scheduled),
            )
        conn.execute(
            "CREATE TABLE seed_baseline (authorization_id uuid PRIMARY KEY, total_units int, "
            "used_units int, scheduled_units int, status text)"
        )
        conn.execute(
            "INSERT INTO seed_baseline SELECT id, total_units, used_units, scheduled_units, "
            "status FROM authorizations"
        )
    fixtures_path = tmp_path / "test-data.json"
    fixtures_path.write_text(
        json.dumps(
            {
                "schema_version": 1,
                "pools": {
                    "high_contention": [
                        {"id": hc, "total_units": HC_TOTAL} for hc in high_contention
                    ],
                    "normal": [{"id": n} for n in normal],
                    "high_throughput": [],
                },
            }
        )
    )
    return World(
        url, tmp_path / "high_contention", fixtures_path, org, practitioner, high_contention, normal
    )


def failed_checks(report: IntegrityReport) -> set[str]:
    return {check.name for check in report.checks if not check.ok}
