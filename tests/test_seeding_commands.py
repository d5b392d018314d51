"""The seed and setup commands: one summary line, or one error line and exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
from support_seeding import (
    all_tables,
    dump,
    extra_database,
    fixtures_path,
    pin_clock,
    scalar,
)

from local_postgres import ClusterInfo, LocalCluster
from local_postgres.cluster import free_port, url_for
from pipeline.commands import default_fixtures_path
from pipeline.setup import resolve_fixtures_path, seed_command, setup_command, setup_database

SMALL = 25


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    return lines[0]


def test_seed_command_prints_one_summary_line(
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("JWT_SECRET", "a secret for the command tests, 32+ bytes")
    path = fixtures_path(tmp_path)
    seed_command(seed=11, scale=2, background=10, fixtures_path=path)
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1
    assert out[0].startswith("seeded 3 organizations, 5 service codes, 42 patients")
    assert "134 active + 10 closed authorizations (seed 11, scale 2)" in out[0]
    assert json.loads(path.read_text())["seed"] == 11
    assert scalar(database_url, "SELECT count(*) FROM authorizations") == 144


def test_the_fixtures_path_resolves_argument_then_environment_then_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("pipeline.setup.DEFAULT_FIXTURES_PATH", tmp_path / "default.json")
    monkeypatch.delenv("LOADTEST_FIXTURES_PATH", raising=False)
    assert resolve_fixtures_path() == tmp_path / "default.json"
    monkeypatch.setenv("LOADTEST_FIXTURES_PATH", str(tmp_path / "env.json"))
    assert resolve_fixtures_path() == tmp_path / "env.json"
    assert resolve_fixtures_path(tmp_path / "given.json") == tmp_path / "given.json"


@pytest.mark.parametrize("command", [seed_command, setup_command])
def test_seed_and_setup_write_the_fixtures_the_scenarios_read(
    command: object,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Without --fixtures-path both honour LOADTEST_FIXTURES_PATH, as scenario and verify do."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setattr("pipeline.setup.DEFAULT_FIXTURES_PATH", tmp_path / "default.json")
    monkeypatch.setenv("LOADTEST_FIXTURES_PATH", str(tmp_path / "env.json"))
    command(background=0)  # type: ignore[operator]
    assert default_fixtures_path() == tmp_path / "env.json"
    assert json.loads((tmp_path / "env.json").read_text())["seed"] == 2024
    assert not (tmp_path / "default.json").exists()
    assert f"fixtures: {tmp_path / 'env.json'}" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"scale": 0}, "error: scale must be an integer >= 1, not 0"),
        ({"scale": -3}, "error: scale must be an integer >= 1, not -3"),
        ({"background": -5}, "error: background must be an integer >= 0, not -5"),
    ],
)
def test_seed_command_rejects_bad_options_with_one_line(
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    options: dict[str, int],
    expected: str,
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    before = dump(database_url)
    with pytest.raises(SystemExit) as exit_info:
        seed_command(fixtures_path=fixtures_path(tmp_path), **options)
    assert exit_info.value.code == 2
    assert error_line(capsys) == expected
    assert dump(database_url) == before


def test_seed_command_on_an_unreachable_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", url_for(free_port(), "loadtest"))
    with pytest.raises(SystemExit) as exit_info:
        seed_command(background=0, fixtures_path=fixtures_path(tmp_path))
    assert exit_info.value.code == 2
    assert error_line(capsys).startswith("error: database unreachable (database 'loadtest' on ")


def test_seed_command_without_a_running_cluster_points_to_setup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setattr("pipeline.setup.LocalCluster", lambda: LocalCluster(tmp_path / "pg"))
    with pytest.raises(SystemExit):
        seed_command(background=0, fixtures_path=fixtures_path(tmp_path))
    assert "invoke load-test.setup" in error_line(capsys)
    assert not (tmp_path / "pg").exists(), "seed must not start a cluster"


def test_seed_command_refuses_an_unmarked_database_with_data(
    pg_cluster: ClusterInfo,
    migrated_template: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with extra_database(pg_cluster, marked=False, template=migrated_template) as url:
        with psycopg.connect(url) as conn:
            conn.execute("INSERT INTO service_codes (code, description) VALUES ('X1', 'theirs')")
        monkeypatch.setenv("DATABASE_URL", url)
        with pytest.raises(SystemExit):
            seed_command(background=0, fixtures_path=fixtures_path(tmp_path))
        assert "refusing to wipe" in error_line(capsys)
        assert scalar(url, "SELECT count(*) FROM service_codes") == 1

        seed_command(background=0, force=True, fixtures_path=fixtures_path(tmp_path))
        assert scalar(url, "SELECT count(*) FROM service_codes") == 5


def test_setup_migrates_and_seeds_a_fresh_database_and_is_idempotent(
    pg_cluster: ClusterInfo,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = fixtures_path(tmp_path)
    pin_clock(monkeypatch)
    with extra_database(pg_cluster, marked=True) as url:
        monkeypatch.setenv("DATABASE_URL", url)
        assert all_tables(url) == set()
        assert setup_database(background=SMALL, fixtures_path=path) == url
        first = dump(url)
        assert scalar(url, "SELECT count(*) FROM authorizations") == 67 + SMALL
        with psycopg.connect(url) as conn:
            conn.execute("UPDATE authorizations SET scheduled_units = scheduled_units + 1")
        setup_command(background=SMALL, fixtures_path=path)
        out = capsys.readouterr().out
        assert f"database ready: {url}" in out
        assert dump(url) == first
        assert "alembic_version" in all_tables(url)


def test_setup_refuses_a_database_that_is_not_ours_before_migrating(
    pg_cluster: ClusterInfo,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with extra_database(pg_cluster, marked=False) as url:
        with psycopg.connect(url) as conn:
            conn.execute("CREATE TABLE invoices (id int PRIMARY KEY)")
            conn.execute("INSERT INTO invoices VALUES (1)")
        monkeypatch.setenv("DATABASE_URL", url)
        with pytest.raises(SystemExit) as exit_info:
            setup_command(background=0, fixtures_path=fixtures_path(tmp_path))
        assert exit_info.value.code == 2
        assert "refusing to wipe" in error_line(capsys)
        assert all_tables(url) == {"invoices"}, "no migration ran"
