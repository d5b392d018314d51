"""The seeded fixtures against the real service: tokens open their own organization only."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import psycopg
from support_seeding import DUMPED_TABLES, TEST_JWT_SECRET, dump, fixtures_path, scalar

from pipeline.service_process import start_service
from seeding import KNOWN_PASSWORD, POOL_NAMES, reset_to_baseline, seed_database

CLIENT_TIMEOUT_S = 30.0
RESERVED_UNITS = 5


def test_every_token_opens_its_own_organization_and_no_other(
    database_url: str, tmp_path: Path
) -> None:
    path = fixtures_path(tmp_path)
    seed_database(database_url, background=0, jwt_secret=TEST_JWT_SECRET, fixtures_path=path)
    fixtures = json.loads(path.read_text())
    seeded = seeded_state(database_url)
    authorizations = [entry for name in POOL_NAMES for entry in fixtures["pools"][name]]
    checked = 0
    with (
        start_service(database_url, env={"JWT_SECRET": TEST_JWT_SECRET}) as service,
        httpx.Client(base_url=service.base_url, timeout=CLIENT_TIMEOUT_S) as client,
    ):
        for practitioner in fixtures["practitioners"]:
            headers = {"Authorization": f"Bearer {practitioner['token']}"}
            own_org = practitioner["organization_id"]
            own = [a for a in authorizations if a["organization_id"] == own_org]
            others = [a for a in authorizations if a["organization_id"] != own_org]
            # One of each pool of its own organization, and one of every other organization.
            picks = {a["organization_id"]: a for a in others}
            for authorization in [*{a["total_units"]: a for a in own}.values()]:
                response = client.get(f"/api/authorizations/{authorization['id']}", headers=headers)
                assert response.status_code == 200, response.text
                body = response.json()
                assert body["id"] == authorization["id"]
                assert body["total_units"] == authorization["total_units"]
                assert body["used_units"] == authorization["used_units"]
                checked += 1
            assert len(picks) == 2
            for authorization in picks.values():
                response = client.get(f"/api/authorizations/{authorization['id']}", headers=headers)
                assert response.status_code == 404, response.text
                assert response.json()["code"] == "not_found"

        # A seeded authorization takes a reservation today: active, and its range covers it.
        practitioner = fixtures["practitioners"][0]
        target = next(
            a
            for a in fixtures["pools"]["high_contention"]
            if a["organization_id"] == practitioner["organization_id"]
        )
        response = client.post(
            f"/api/authorizations/{target['id']}/reserve",
            json={"units": RESERVED_UNITS},
            headers={"Authorization": f"Bearer {practitioner['token']}"},
        )
        assert response.status_code == 200, response.text
        assert response.json()["authorization"]["scheduled_units"] == RESERVED_UNITS

        # The stored hash is a real bcrypt hash of the documented password.
        login = {"email": practitioner["email"], "password": KNOWN_PASSWORD}
        assert client.post("/api/auth/token", json=login).status_code == 200
        login["password"] = KNOWN_PASSWORD + "!"
        assert client.post("/api/auth/token", json=login).status_code == 401

    assert checked == len(fixtures["practitioners"]) * len(POOL_NAMES)
    assert scalar(database_url, "SELECT count(*) FROM unit_transactions") == 1
    assert seeded_state(database_url) != seeded
    reset_to_baseline(database_url)
    assert seeded_state(database_url) == seeded


def seeded_state(url: str) -> tuple[object, ...]:
    """Return every row that a reset restores: all but the authorizations' updated_at."""
    other_tables = tuple(table for table in DUMPED_TABLES if table != "authorizations")
    with psycopg.connect(url) as conn:
        authorizations = conn.execute(
            "SELECT id, organization_id, patient_id, service_code, total_units, used_units, "
            "scheduled_units, start_date, end_date, status FROM authorizations ORDER BY id"
        ).fetchall()
    return dump(url, other_tables), authorizations
