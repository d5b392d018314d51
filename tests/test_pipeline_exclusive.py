"""One load test at a time per database, and a bad --target-url changes nothing.

A second run on the same database would reset the first one's counters and empty its ledger
mid-scenario (the reconciliation check then reports every operation as lost): the commands
that write test data hold an advisory lock and refuse, in one line, when it is taken.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from support_seeding import dump, fixtures_path, scalar

from local_postgres import ClusterInfo
from local_postgres.cluster import free_port
from pipeline.commands import scenario_command
from pipeline.exclusive import DatabaseBusyError, exclusive_database
from pipeline.run import run_all
from pipeline.setup import seed_command, setup_command

SMALL_BACKGROUND = 10


def only_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.fixture(name="seeded_url")
def _seeded_url(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("LOADTEST_REPORTS_DIR", str(tmp_path / "reports"))
    seed_command(background=SMALL_BACKGROUND, fixtures_path=fixtures_path(tmp_path))
    return database_url


def test_the_lock_is_exclusive_and_released_on_exit(database_url: str) -> None:
    with (
        exclusive_database(database_url),
        pytest.raises(DatabaseBusyError, match="another load test is running"),
        exclusive_database(database_url),
    ):
        pass
    with exclusive_database(database_url):
        pass  # free again once the holder is gone


@pytest.mark.parametrize("command", [seed_command, setup_command])
def test_seeding_refuses_while_another_run_holds_the_database(
    command: object,
    seeded_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    capsys.readouterr()
    before = dump(seeded_url)
    with exclusive_database(seeded_url), pytest.raises(SystemExit) as exit_info:
        command(background=SMALL_BACKGROUND, fixtures_path=fixtures_path(tmp_path, "other.json"))  # type: ignore[operator]
    assert exit_info.value.code == 2
    assert only_error_line(capsys).startswith("error: another load test is running")
    assert dump(seeded_url) == before
    assert not fixtures_path(tmp_path, "other.json").exists()


def test_the_pipeline_reports_a_busy_database_as_a_failed_setup(
    seeded_url: str, tmp_path: Path
) -> None:
    before = dump(seeded_url)
    with exclusive_database(seeded_url):
        outcome = run_all(reports_root=tmp_path / "reports", progress=False)
    assert outcome.decision == "NO-GO"
    assert any("another load test is running" in reason for reason in outcome.reasons)
    assert dump(seeded_url) == before


def test_an_unreachable_target_url_is_refused_before_the_database_is_touched(
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A fresh, unseeded database stays unseeded: the target is checked first."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("LOADTEST_FIXTURES_PATH", str(fixtures_path(tmp_path)))
    target = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(SystemExit) as exit_info:
        scenario_command("high_contention", target_url=target, out=str(tmp_path / "out"))
    assert exit_info.value.code == 2
    assert only_error_line(capsys).startswith(f"error: target {target} is unreachable")
    assert scalar(database_url, "SELECT count(*) FROM authorizations") == 0
    assert not (tmp_path / "out").exists()


def test_a_scenario_on_expired_fixtures_is_refused_before_anything_is_touched(
    seeded_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = fixtures_path(tmp_path)
    monkeypatch.setenv("LOADTEST_FIXTURES_PATH", str(path))
    document = json.loads(path.read_text())
    document["tokens_expire_at"] = "2020-01-01T00:00:00+00:00"
    path.write_text(json.dumps(document))
    with psycopg.connect(seeded_url) as conn:  # a scenario's leftovers the reset would undo
        conn.execute("UPDATE authorizations SET scheduled_units = scheduled_units + 1")
    before = dump(seeded_url)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        scenario_command("high_contention", out=str(tmp_path / "out"))
    assert exit_info.value.code == 2
    assert only_error_line(capsys) == (
        f"error: fixtures at {path} hold tokens that expired at 2020-01-01T00:00:00+00:00: "
        "run `invoke load-test.seed`"
    )
    assert dump(seeded_url) == before
    assert not (tmp_path / "out").exists()


class FakeCluster:
    """Stands in for LocalCluster: up() reports whether it started the server, down() is noted."""

    def __init__(self, url: str, *, starts_it: bool, calls: list[str]) -> None:
        self.url_, self.starts_it, self.calls = url, starts_it, calls

    def is_running(self) -> bool:
        return False  # stopped when looked at: another run may start it before our up()

    def up(self) -> ClusterInfo:
        self.calls.append("up")
        return ClusterInfo(self.url_, 0, Path("."), started_here=self.starts_it)

    def down(self) -> bool:
        self.calls.append("down")
        return True


def replace_local_cluster(
    monkeypatch: pytest.MonkeyPatch, factory: Callable[[], FakeCluster]
) -> None:
    """Make every module that starts or stops the local cluster use ``factory`` instead."""
    for where in ("local_postgres", "pipeline.setup", "pipeline.run"):
        monkeypatch.setattr(f"{where}.LocalCluster", factory)


@pytest.mark.parametrize(("starts_it", "expected"), [(False, ["up"]), (True, ["up", "down"])])
def test_the_pipeline_stops_the_local_cluster_only_if_it_started_it(
    starts_it: bool,
    expected: list[str],
    seeded_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two runs on a stopped cluster: the one that did not start it must not stop it."""
    calls: list[str] = []
    monkeypatch.delenv("DATABASE_URL")
    replace_local_cluster(
        monkeypatch, lambda: FakeCluster(seeded_url, starts_it=starts_it, calls=calls)
    )
    with exclusive_database(seeded_url):  # the other run holds the database
        outcome = run_all(reports_root=tmp_path / "reports", progress=False)
    assert any("another load test is running" in reason for reason in outcome.reasons)
    assert calls == expected


def test_the_pipeline_never_stops_the_local_cluster_under_database_url(
    seeded_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    replace_local_cluster(monkeypatch, lambda: FakeCluster(seeded_url, starts_it=True, calls=calls))
    with exclusive_database(seeded_url):
        run_all(reports_root=tmp_path / "reports", progress=False)
    assert calls == []


def test_a_target_url_without_database_url_is_refused_before_anything_is_touched(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The reset and the checks would read the local database, which says nothing of the target."""
    calls: list[str] = []
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("LOADTEST_FIXTURES_PATH", str(fixtures_path(tmp_path)))
    replace_local_cluster(
        monkeypatch, lambda: FakeCluster("postgresql://nowhere", starts_it=True, calls=calls)
    )
    with pytest.raises(SystemExit) as exit_info:
        scenario_command(
            "high_contention", target_url="http://127.0.0.1:9", out=str(tmp_path / "out")
        )
    assert exit_info.value.code == 2
    assert only_error_line(capsys) == (
        "error: --target-url needs DATABASE_URL pointing at that service's database, "
        "so the checks read the right one"
    )
    assert calls == [], "the local cluster was not even started"
    assert not (tmp_path / "out").exists()
