"""`load-test.ab`: bad input in one line with exit 2, and one real A/B of HEAD against HEAD."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import ab_command
from pipeline.exclusive import exclusive_database

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHORT_PROFILE = """
[high_contention]
expected_error_codes = ["insufficient_units"]

[high_contention.thresholds]
p95_ms = 200
p99_ms = 500
unexpected_error_rate_max = 0.01

[high_contention.smoke]
users = 10
duration_s = 3
ramp_up_s = 0
think_time_s = [0.1, 0.3]
processes = 1
units_per_request = 10
"""


def invoke(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "invoke", "load-test.ab", *args],
        cwd=PROJECT_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["no-such-revision-here", "--new", "HEAD"], "unknown revision 'no-such-revision-here'"),
        (["HEAD", "--new", "no-such-revision-here"], "unknown revision 'no-such-revision-here'"),
        (["HEAD", "--new", "HEAD", "--repeats", "0"], "--repeats must be at least 1, not 0"),
        (["HEAD", "--new", "HEAD", "--repeats", "two"], "--repeats must be a whole number"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, args: list[str], expected: str) -> None:
    completed = invoke(*args, "--reports-dir", str(tmp_path))
    assert completed.returncode == 2, completed.stderr
    assert expected in completed.stderr
    assert len(completed.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_a_dirty_working_tree_is_refused_unless_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    repository = tmp_path / "repo"
    repository.mkdir()
    for command in (
        ["init", "-q"],
        ["-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "c"],
    ):
        subprocess.run(["git", *command], cwd=repository, check=True)
    (repository / "tracked.txt").write_text("one\n")
    subprocess.run(["git", "add", "tracked.txt"], cwd=repository, check=True)
    monkeypatch.setattr(ab_command, "REPOSITORY", repository)
    with pytest.raises(SystemExit) as refused:
        ab_command.working_tree_side(dirty=False)
    assert refused.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "uncommitted changes" in line
    assert "--dirty" in line
    snapshot = ab_command.working_tree_side(dirty=True)
    head = ab_command.resolve_revision("HEAD")
    assert snapshot.commit != head
    assert "snapshot" in snapshot.note


def test_head_against_head_runs_a_pair_and_compares_it(database_url: str, tmp_path: Path) -> None:
    profiles = tmp_path / "profiles.toml"
    profiles.write_text(SHORT_PROFILE)
    completed = invoke(
        "HEAD", "--new", "HEAD", "--repeats", "1", "--scenarios", "high_contention",
        "--reports-dir", str(tmp_path / "reports"),
        DATABASE_URL=database_url, LOADTEST_PROFILES_PATH=str(profiles),
    )  # fmt: skip
    assert completed.returncode in (0, 1), completed.stderr
    assert "[ab] pair 1/1: base" in completed.stderr
    assert "[ab] pair 1/1: new" in completed.stderr
    (ab_dir,) = (tmp_path / "reports").glob("ab-*")
    document = json.loads((ab_dir / "compare.json").read_text())
    assert (document["method"]["base_runs"], document["method"]["new_runs"]) == (1, 1)
    assert document["method"]["between_runs"] == "not covered"
    assert document["ab"]["base"]["commit"] == document["ab"]["new"]["commit"]
    assert [s["scenario"] for s in document["scenarios"]] == ["high_contention"]
    assert completed.stdout.strip().endswith(str(ab_dir / "compare.html"))
    # The worktrees are gone afterwards.
    listed = subprocess.run(
        ["git", "worktree", "list"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert "loadtest-ab-" not in listed


def test_another_load_test_holding_the_database_is_one_line_and_exit_2(
    database_url: str, tmp_path: Path
) -> None:
    with exclusive_database(database_url):
        completed = invoke(
            "HEAD", "--new", "HEAD", "--reports-dir", str(tmp_path), DATABASE_URL=database_url
        )
    assert completed.returncode == 2
    (line,) = completed.stderr.strip().splitlines()
    assert "another load test is running" in line
    assert list(tmp_path.iterdir()) == []
