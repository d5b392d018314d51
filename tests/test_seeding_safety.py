"""Seeding refuses what it must not wipe, rejects bad input, and never half-seeds."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
from support_seeding import (
    SMALL_BACKGROUND,
    TEST_JWT_SECRET,
    all_tables,
    dump,
    extra_database,
    fixtures_path,
    scalar,
)

from local_postgres import ClusterInfo
from local_postgres.cluster import free_port, url_for
from seeding import SeedingError, seed_database
from seeding.dataset import CLOSED, DataSet, build_dataset

FOREIGN_ORGANIZATION = "Somebody else's clinic"


def seed(url: str, path: Path, **options: object) -> None:
    seed_database(url, jwt_secret=TEST_JWT_SECRET, fixtures_path=path, **options)  # type: ignore[arg-type]


def add_foreign_data(url: str) -> None:
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO organizations (id, name) VALUES (gen_random_uuid(), %s)",
            (FOREIGN_ORGANIZATION,),
        )


def test_refuses_an_unmarked_database_holding_data_unless_forced(
    pg_cluster: ClusterInfo, migrated_template: str, tmp_path: Path
) -> None:
    path = fixtures_path(tmp_path)
    with extra_database(pg_cluster, marked=False, template=migrated_template) as url:
        add_foreign_data(url)
        before = dump(url)
        with pytest.raises(SeedingError, match=r"refusing to wipe .*not marked.*--force"):
            seed(url, path, background=0)
        assert dump(url) == before
        assert not path.exists()

        seed(url, path, background=0, force=True)
        assert scalar(url, "SELECT count(*) FROM authorizations") == 67
        assert (
            scalar(
                url, "SELECT count(*) FROM organizations WHERE name = %s", (FOREIGN_ORGANIZATION,)
            )
            == 0
        )
        assert path.exists()


def test_seeds_an_unmarked_database_whose_tables_are_empty(
    pg_cluster: ClusterInfo, migrated_template: str, tmp_path: Path
) -> None:
    with extra_database(pg_cluster, marked=False, template=migrated_template) as url:
        seed(url, fixtures_path(tmp_path), background=0)
        assert scalar(url, "SELECT count(*) FROM authorizations") == 67


def test_refuses_an_unmarked_database_with_tables_of_its_own(
    pg_cluster: ClusterInfo, migrated_template: str, tmp_path: Path
) -> None:
    with extra_database(pg_cluster, marked=False, template=migrated_template) as url:
        with psycopg.connect(url) as conn:
            conn.execute("CREATE TABLE invoices (id int PRIMARY KEY)")
        with pytest.raises(SeedingError, match=r"refusing to wipe .*invoices"):
            seed(url, fixtures_path(tmp_path), background=0)
        assert scalar(url, "SELECT count(*) FROM authorizations") == 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"scale": 0}, "scale must be an integer >= 1"),
        ({"scale": -2}, "scale must be an integer >= 1"),
        ({"scale": True}, "scale must be an integer >= 1"),
        ({"background": -1}, "background must be an integer >= 0"),
        ({"token_ttl_s": 0}, "token ttl must be an integer >= 1"),
        ({"seed": "2024"}, "seed must be an integer"),
    ],
)
def test_bad_options_change_nothing(
    database_url: str, tmp_path: Path, options: dict[str, object], message: str
) -> None:
    path = fixtures_path(tmp_path)
    seed(database_url, path, background=SMALL_BACKGROUND)
    before, fixtures_before = dump(database_url), path.read_bytes()
    with pytest.raises(SeedingError, match=message):
        seed(database_url, path, **options)
    assert dump(database_url) == before
    assert path.read_bytes() == fixtures_before


def test_unreachable_database_is_one_clear_error(tmp_path: Path) -> None:
    url = url_for(free_port(), "loadtest")
    with pytest.raises(SeedingError, match=r"^database unreachable \(database 'loadtest' on 127"):
        seed(url, fixtures_path(tmp_path), background=0)
    assert not fixtures_path(tmp_path).exists()


def test_database_without_migrations_is_left_as_it_was(
    pg_cluster: ClusterInfo, tmp_path: Path
) -> None:
    with extra_database(pg_cluster, marked=True) as url:
        with pytest.raises(SeedingError, match=r"has no schema .*invoke db.migrate"):
            seed(url, fixtures_path(tmp_path), background=0)
        assert all_tables(url) == set()
    assert not fixtures_path(tmp_path).exists()


def test_a_failure_while_loading_leaves_the_previous_seed_intact(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = fixtures_path(tmp_path)
    seed(database_url, path, background=SMALL_BACKGROUND)
    before, fixtures_before = dump(database_url), path.read_bytes()

    def broken_dataset(**options: object) -> DataSet:
        # The very last row breaks a CHECK: every table was truncated and loaded before it.
        dataset = build_dataset(**options)  # type: ignore[arg-type]
        last = dataset.background_authorizations[-1]
        dataset.background_authorizations[-1] = last._replace(used_units=-1, status=CLOSED)
        return dataset

    monkeypatch.setattr("seeding.seed.build_dataset", broken_dataset)
    with pytest.raises(SeedingError, match=r"failed, nothing was changed: .*used_units"):
        seed(database_url, path, seed=5, background=SMALL_BACKGROUND)
    assert dump(database_url) == before
    assert path.read_bytes() == fixtures_before
    assert [p.name for p in path.parent.iterdir()] == [path.name], "no temporary file left"


def test_a_busy_database_is_a_clear_error_not_a_hang(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = fixtures_path(tmp_path)
    seed(database_url, path, background=0)
    before = dump(database_url)
    monkeypatch.setattr("seeding.database.LOCK_TIMEOUT", "200ms")
    with psycopg.connect(database_url) as holder:
        # What an open transaction of a running load test holds.
        holder.execute("SELECT count(*) FROM authorizations")
        with pytest.raises(SeedingError, match="is busy"):
            seed(database_url, path, seed=5, background=0)
        holder.rollback()
    assert dump(database_url) == before
    assert json.loads(path.read_text())["seed"] == 2024
