"""Seeding against a real PostgreSQL: exact counts and pools, determinism, baseline reset."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections import Counter
from pathlib import Path

import bcrypt
import jwt
import psycopg
import pytest
from psycopg import sql
from support_seeding import (
    SMALL_BACKGROUND,
    TEST_JWT_SECRET,
    dump,
    extra_database,
    fixtures_path,
    pin_clock,
    scalar,
)

from local_postgres import ClusterInfo
from seeding import KNOWN_PASSWORD, SeedingError, reset_to_baseline, seed_database
from seeding.dataset import ORGANIZATION_NAMES, SERVICE_CODES
from seeding.fixtures import TIME_DEPENDENT_FIELDS

EXPECTED_POOLS = {"high_contention": (10, 50), "normal": (20, 200), "high_throughput": (25, 1000)}
FIXTURE_KEYS = {
    "schema_version",
    "seed",
    "scale",
    "background",
    "generated_at",
    "tokens_expire_at",
    "password",
    "organizations",
    "service_codes",
    "patients",
    "practitioners",
    "pools",
}
POOL_ENTRY_KEYS = {
    "id",
    "organization_id",
    "patient_id",
    "service_code",
    "total_units",
    "used_units",
    "scheduled_units",
}


def seed(url: str, path: Path, **options: int) -> dict:
    seed_database(url, jwt_secret=TEST_JWT_SECRET, fixtures_path=path, **options)
    return json.loads(path.read_text())


def count(url: str, table: str, where: str = "TRUE") -> int:
    return int(scalar(url, f"SELECT count(*) FROM {table} WHERE {where}"))


def test_default_data_set_has_the_exact_counts_and_pools(database_url: str, tmp_path: Path) -> None:
    path = fixtures_path(tmp_path)
    summary = seed_database(
        database_url, background=SMALL_BACKGROUND, jwt_secret=TEST_JWT_SECRET, fixtures_path=path
    )
    fixtures = json.loads(path.read_text())

    assert scalar(database_url, "SELECT array_agg(name ORDER BY name) FROM organizations") == list(
        ORGANIZATION_NAMES
    )
    assert scalar(database_url, "SELECT array_agg(code ORDER BY code) FROM service_codes") == list(
        SERVICE_CODES
    )
    active_patients = "id IN (SELECT patient_id FROM authorizations WHERE status = 'active')"
    assert count(database_url, "patients", active_patients) == 20
    assert count(database_url, "patients") == 20 + SMALL_BACKGROUND // 5
    assert count(database_url, "practitioners") == 10
    assert count(database_url, "authorizations", "status = 'active'") == 67
    assert count(database_url, "authorizations", "status = 'closed'") == SMALL_BACKGROUND
    assert count(database_url, "authorizations") == 67 + SMALL_BACKGROUND
    assert count(database_url, "unit_transactions") == 0
    assert count(database_url, "seed_baseline") == 67 + SMALL_BACKGROUND
    assert (summary.active_authorizations, summary.background_authorizations) == (67, 40)

    assert set(fixtures) == FIXTURE_KEYS
    assert fixtures["schema_version"] == 1
    assert (fixtures["seed"], fixtures["scale"], fixtures["background"]) == (2024, 1, 40)
    assert len(fixtures["patients"]) == 20
    assert len(fixtures["practitioners"]) == 10
    org_ids = {org["id"] for org in fixtures["organizations"]}
    assert len(org_ids) == 3
    with psycopg.connect(database_url) as conn:
        rows = {
            str(row[0]): row
            for row in conn.execute(
                "SELECT a.id, a.organization_id, a.patient_id, a.service_code, a.total_units, "
                "a.used_units, a.scheduled_units, a.start_date, a.end_date, a.status, "
                "p.organization_id FROM authorizations a JOIN patients p ON p.id = a.patient_id"
            )
        }
    today = dt.datetime.now(dt.UTC).date()
    for pool, (size, total_units) in EXPECTED_POOLS.items():
        entries = fixtures["pools"][pool]
        assert len(entries) == size, pool
        assert {entry["organization_id"] for entry in entries} == org_ids, pool
        assert {entry["service_code"] for entry in entries} == set(SERVICE_CODES), pool
        for entry in entries:
            assert set(entry) == POOL_ENTRY_KEYS
            row = rows[entry["id"]]
            assert entry["total_units"] == row[4] == total_units
            assert (entry["used_units"], entry["scheduled_units"]) == (row[5], row[6])
            assert (entry["organization_id"], entry["patient_id"]) == (str(row[1]), str(row[2]))
            assert row[1] == row[10], "an authorization belongs to its patient's organization"
            assert row[7] < today < row[8], "the date range must cover the run"
            assert row[9] == "active"
            # Plenty left to reserve at the start of a run.
            assert row[4] - row[5] - row[6] >= 0.8 * row[4]
            if pool == "high_contention":
                assert (row[5], row[6]) == (0, 0)
    assert sum(len(entries) for entries in fixtures["pools"].values()) == 67
    patients_with_authorizations = {
        entry["patient_id"] for entries in fixtures["pools"].values() for entry in entries
    }
    assert patients_with_authorizations == {patient["id"] for patient in fixtures["patients"]}


def test_practitioners_have_a_real_hash_of_the_known_password_and_valid_tokens(
    database_url: str, tmp_path: Path
) -> None:
    fixtures = seed(database_url, fixtures_path(tmp_path), background=0)
    with psycopg.connect(database_url) as conn:
        stored = dict(conn.execute("SELECT id::text, password_hash FROM practitioners").fetchall())
    assert fixtures["password"] == KNOWN_PASSWORD
    assert bcrypt.checkpw(KNOWN_PASSWORD.encode(), next(iter(stored.values())).encode())
    assert not bcrypt.checkpw(b"wrong password", next(iter(stored.values())).encode())
    per_org = Counter(entry["organization_id"] for entry in fixtures["practitioners"])
    assert len(per_org) == 3
    assert min(per_org.values()) >= 1
    assert len({entry["email"] for entry in fixtures["practitioners"]}) == 10
    expires_at = dt.datetime.fromisoformat(fixtures["tokens_expire_at"])
    generated_at = dt.datetime.fromisoformat(fixtures["generated_at"])
    assert expires_at - generated_at == dt.timedelta(days=1)
    for entry in fixtures["practitioners"]:
        assert entry["id"] in stored
        claims = jwt.decode(entry["token"], TEST_JWT_SECRET, algorithms=["HS256"])
        assert claims["sub"] == entry["id"]
        assert claims["org"] == entry["organization_id"]
        assert claims["role"] == entry["role"]
        assert claims["exp"] == int(expires_at.timestamp())
        assert claims["iat"] == int(generated_at.timestamp())
        with pytest.raises(jwt.InvalidSignatureError):
            jwt.decode(entry["token"], "another secret of at least 32 bytes", algorithms=["HS256"])


def test_scale_multiplies_patients_authorizations_and_practitioners(
    database_url: str, tmp_path: Path
) -> None:
    fixtures = seed(database_url, fixtures_path(tmp_path), scale=3, background=0)
    assert count(database_url, "patients") == 60
    assert count(database_url, "practitioners") == 30
    assert count(database_url, "authorizations") == 201
    assert count(database_url, "organizations") == 3
    assert count(database_url, "service_codes") == 5
    for pool, (size, total_units) in EXPECTED_POOLS.items():
        assert len(fixtures["pools"][pool]) == 3 * size
        assert {entry["total_units"] for entry in fixtures["pools"][pool]} == {total_units}
    assert len(fixtures["patients"]) == 60
    assert len(fixtures["practitioners"]) == 30


def test_default_background_makes_the_planner_use_the_primary_key(
    database_url: str, tmp_path: Path
) -> None:
    fixtures = seed(database_url, fixtures_path(tmp_path))
    assert count(database_url, "authorizations", "status = 'closed'") == 100_000
    assert count(database_url, "authorizations", "status = 'active'") == 67
    assert count(database_url, "patients") == 20 + 20_000
    last_closed = "SELECT max(end_date) FROM authorizations WHERE status = 'closed'"
    assert scalar(database_url, last_closed) < dt.datetime.now(dt.UTC).date()
    authorization_id = fixtures["pools"]["high_contention"][0]["id"]
    with psycopg.connect(database_url) as conn:
        # A prepared statement with a generic plan is what the service's driver ends up using.
        conn.execute("SET plan_cache_mode = force_generic_plan")
        conn.execute("PREPARE lookup(uuid) AS SELECT * FROM authorizations WHERE id = $1")
        plan = "\n".join(
            row[0]
            for row in conn.execute(
                sql.SQL("EXPLAIN EXECUTE lookup({})").format(sql.Literal(authorization_id))
            )
        )
    assert "Index Scan using authorizations_pkey" in plan, plan
    assert "Seq Scan" not in plan, plan


def test_same_seed_gives_the_same_rows_and_fixtures(
    pg_cluster: ClusterInfo,
    migrated_template: str,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pin_clock(monkeypatch)
    first = seed(database_url, fixtures_path(tmp_path, "first.json"), background=SMALL_BACKGROUND)
    with extra_database(pg_cluster, marked=True, template=migrated_template) as other_url:
        second = seed(
            other_url, fixtures_path(tmp_path, "second.json"), background=SMALL_BACKGROUND
        )
        assert dump(database_url) == dump(other_url)
        third = seed(
            other_url, fixtures_path(tmp_path, "third.json"), seed=7, background=SMALL_BACKGROUND
        )
        other_ids = set(dump(other_url, ("authorizations",))["authorizations"])
    # Tokens and times differ (the clock moved); nothing else does.
    assert first["generated_at"] != second["generated_at"]
    assert first["practitioners"][0]["token"] != second["practitioners"][0]["token"]
    assert without_times(first) == without_times(second)
    assert without_times(first) != without_times(third)
    assert not other_ids & set(dump(database_url, ("authorizations",))["authorizations"])


def without_times(fixtures: dict) -> dict:
    stripped = {key: value for key, value in fixtures.items() if key not in TIME_DEPENDENT_FIELDS}
    stripped["practitioners"] = [
        {key: value for key, value in entry.items() if key != "token"}
        for entry in fixtures["practitioners"]
    ]
    return stripped


def test_reset_to_baseline_empties_the_ledger_and_restores_every_counter(
    database_url: str, tmp_path: Path
) -> None:
    fixtures = seed(database_url, fixtures_path(tmp_path), background=SMALL_BACKGROUND)
    seeded = dump(database_url)
    touched = [entry["id"] for entries in fixtures["pools"].values() for entry in entries[:3]]
    practitioner = fixtures["practitioners"][0]
    with psycopg.connect(database_url) as conn:
        # What a load test leaves behind: counters moved, a status changed, ledger rows.
        conn.execute(
            "UPDATE authorizations SET scheduled_units = scheduled_units + 7, "
            "used_units = used_units + 3 WHERE id = ANY(%s::uuid[])",
            (touched,),
        )
        conn.execute("UPDATE authorizations SET status = 'suspended' WHERE id = %s", (touched[-1],))
        conn.execute(
            "UPDATE authorizations SET used_units = 0 WHERE status = 'closed' "
            "AND id = (SELECT id FROM authorizations WHERE status = 'closed' LIMIT 1)"
        )
        for authorization_id in touched:
            conn.execute(
                "INSERT INTO unit_transactions (id, authorization_id, organization_id, "
                "practitioner_id, kind, units) SELECT %s, id, organization_id, %s, 'reserve', 7 "
                "FROM authorizations WHERE id = %s",
                (uuid.uuid4(), practitioner["id"], authorization_id),
            )
    assert dump(database_url) != seeded
    assert count(database_url, "unit_transactions") == len(touched)

    reset_to_baseline(database_url)

    assert count(database_url, "unit_transactions") == 0
    assert dump(database_url) == seeded


def test_reset_to_baseline_without_a_baseline_is_a_clear_error(database_url: str) -> None:
    with pytest.raises(SeedingError, match="no seed baseline"):
        reset_to_baseline(database_url)


def test_seeding_again_replaces_everything(database_url: str, tmp_path: Path) -> None:
    path = fixtures_path(tmp_path)
    seed(database_url, path, background=SMALL_BACKGROUND)
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE authorizations SET scheduled_units = 999")
    fixtures = seed(database_url, path, seed=99, background=0)
    assert count(database_url, "authorizations") == 67
    assert count(database_url, "seed_baseline") == 67
    assert count(database_url, "authorizations", "scheduled_units = 999") == 0
    ids = {str(row[0]) for row in dump(database_url, ("authorizations",))["authorizations"]}
    assert ids == {entry["id"] for entries in fixtures["pools"].values() for entry in entries}
