"""Where runs go: reports/<run-id>/, with run-id = UTC timestamp + short git commit."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
from pathlib import Path

from results.files import RESULT_FILE

PROJECT_ROOT = Path(__file__).resolve().parent.parent
REPORTS_DIR_ENV = "LOADTEST_REPORTS_DIR"
DEFAULT_REPORTS_ROOT = PROJECT_ROOT / "reports"
NO_COMMIT = "nogit"


class RunDirError(ValueError):
    """No run folder where one was expected."""


def resolve_reports_root(explicit: str | Path | None = None) -> Path:
    """Return the folder runs go to: the argument, else $LOADTEST_REPORTS_DIR, else reports/."""
    chosen = explicit or os.environ.get(REPORTS_DIR_ENV) or DEFAULT_REPORTS_ROOT
    return Path(chosen).expanduser().resolve()


def git_state() -> tuple[str, bool]:
    """Return the short commit of the checkout and whether it has uncommitted changes."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return NO_COMMIT, False
    return commit or NO_COMMIT, bool(status)


def new_run_dir(root: Path) -> Path:
    """Create and return a fresh reports/<UTC timestamp>-<commit>/ folder."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    commit, _ = git_state()
    root.mkdir(parents=True, exist_ok=True)
    base = f"{stamp}-{commit}"
    for attempt in range(1, 100):
        run_dir = root / (base if attempt == 1 else f"{base}-{attempt}")
        try:
            run_dir.mkdir()
        except FileExistsError:
            continue
        return run_dir
    raise RunDirError(f"cannot create a run folder under {root}")


def latest_run_dir(root: Path) -> Path:
    """Return the newest run folder under ``root`` (names sort by their UTC timestamp)."""
    runs = sorted(path for path in root.glob("*T*Z-*") if path.is_dir()) if root.is_dir() else []
    if not runs:
        raise RunDirError(
            f"no run under {root}: run `invoke load-test.all` or a scenario task first"
        )
    return runs[-1]


def latest_result_dir(run_dir: Path) -> Path:
    """Return the scenario folder of ``run_dir`` whose run ended last."""
    results = [path.parent for path in run_dir.glob(f"*/{RESULT_FILE}")]
    if not results:
        raise RunDirError(f"no scenario results (*/{RESULT_FILE}) in {run_dir}")
    return max(results, key=_ended_at)


def _ended_at(result_dir: Path) -> tuple[str, float]:
    path = result_dir / RESULT_FILE
    try:
        ended = str(json.loads(path.read_text(encoding="utf-8")).get("ended_at") or "")
    except (OSError, ValueError, AttributeError):
        ended = ""
    return ended, path.stat().st_mtime
