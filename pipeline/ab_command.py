"""`invoke load-test.ab BASE [NEW] --repeats N`: two commits in interleaved pairs, compared.

Each side runs from a git worktree of its own (a temporary folder), with its own code: the
worktree's own `python -m invoke load-test.all`, PYTHONPATH set to the worktree, so its
service, scenarios, checks and migrations are that commit's (the interpreter and installed
packages are this checkout's). Both sides use one PostgreSQL server (DATABASE_URL, else the
project's local cluster), each in a throwaway database of its own (`<database>_ab_base`,
`<database>_ab_new`) so that two commits with different migrations never share a schema.

The pairs alternate their order (base then new, new then base, ...), so a machine that
drifts slower over the minutes weighs on both sides alike. The comparison pools each
side's runs, and its bootstrap resamples runs before seconds: the noise between runs is in
the interval. While it runs it holds the load-test lock of the main database
(pipeline/exclusive.py), so no other load test starts there between two of its runs.

NEW defaults to the working tree. A working tree with uncommitted changes is refused unless
``dirty``; then it is snapshot with `git stash create` (tracked files only: untracked files
are not in the snapshot, and the progress says so).

Exit codes: 0 when the comparison was written and nothing is worse, 1 when something is
worse; 2 on bad input (an unknown revision, a dirty tree not allowed, N < 1), with one line.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import subprocess
import sys
import tempfile
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from load_runner.profiles import DEFAULT_PROFILE
from local_postgres import create_marked_database, database_url
from pipeline.compare_command import comparison_margins, summary_line
from pipeline.exclusive import exclusive_database
from pipeline.exits import EXIT_FAILED, cleanly, fail
from pipeline.rundirs import PROJECT_ROOT, resolve_reports_root
from reporting.compare import WORSE, Margin
from reporting.compare_inputs import CompareInputError
from reporting.compare_report import compare_runs, write_comparison
from target.settings import DEFAULT_STRATEGY

AB_PREFIX = "ab-"
REPOSITORY = PROJECT_ROOT  # the git repository whose commits are compared
SIDES = ("base", "new")
RUN_GLOB = "*T*Z-*"
# Set for the outer run by CI or a user; a side's run must not gate itself on them.
CHILD_ENV_DROPPED = (
    "LOADTEST_BASELINE",
    "LOADTEST_REGRESSION_GATE",
    "LOADTEST_JUNIT",
    "LOADTEST_REPORTS_DIR",
    "PYTHONPATH",
)


class AbError(RuntimeError):
    """A side's run could not be made; the message says which and why, in one line."""


@dataclass(frozen=True)
class Side:
    """One side: what the user named, the commit it resolved to, and how it was made."""

    name: str  # base or new
    revision: str  # as given, or "working tree"
    commit: str  # full hash of the commit (or stash snapshot) checked out
    note: str = ""


@dataclass(frozen=True)
class AbPlan:
    """Everything the A/B needs, resolved once at the edge."""

    base: Side
    new: Side
    repeats: int
    profile: str
    strategy: str
    scenarios: str
    out_dir: Path
    margins: Mapping[str, Margin]


def ab_command(
    base: str,
    new: str | None = None,
    *,
    repeats: str | int = 3,
    profile: str = "",
    strategy: str = "",
    scenarios: str = "",
    dirty: bool = False,
    reports_dir: str | None = None,
    tolerance: str | float | None = None,
) -> None:
    """Resolve the plan (exit 2 on bad input), run the pairs, compare, print the gist."""
    count = parse_repeats(repeats)
    # Explicit in both worktrees' commands: another commit's defaults may differ from ours.
    profile, strategy = profile or DEFAULT_PROFILE, strategy or DEFAULT_STRATEGY
    margins = comparison_margins(tolerance)
    base_side = Side("base", base, resolve_revision(base))
    new_side = working_tree_side(dirty) if new is None else Side("new", new, resolve_revision(new))
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    plan = AbPlan(
        base=base_side,
        new=new_side,
        repeats=count,
        profile=profile,
        strategy=strategy,
        scenarios=scenarios,
        out_dir=resolve_reports_root(reports_dir) / f"{AB_PREFIX}{stamp}",
        margins=margins,
    )
    try:
        document = cleanly(lambda: run_ab(plan))
    except (AbError, CompareInputError) as error:
        fail(str(error))
    raise SystemExit(EXIT_FAILED if document["outcome"] == WORSE else 0)


def parse_repeats(repeats: str | int) -> int:
    """Return --repeats as a whole number of at least 1; exit 2 otherwise."""
    try:
        count = int(repeats)
    except ValueError:
        fail(f"--repeats must be a whole number of at least 1, not {repeats!r}")
    if count < 1:
        fail(f"--repeats must be at least 1, not {count}")
    return count


def resolve_revision(revision: str) -> str:
    """Return the full commit hash of ``revision``; exit 2 when git does not know it."""
    completed = _git("rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}")
    if completed.returncode != 0 or not completed.stdout.strip():
        fail(f"unknown revision {revision!r}: git rev-parse cannot find such a commit")
    return completed.stdout.strip()


def working_tree_side(dirty: bool) -> Side:
    """Return NEW as the working tree: HEAD when clean, a stash snapshot when allowed dirty."""
    head = resolve_revision("HEAD")
    changed = _git("status", "--porcelain", "--untracked-files=no").stdout.strip()
    if not changed:
        return Side("new", "working tree", head)
    if not dirty:
        fail(
            "the working tree has uncommitted changes: commit them, name NEW explicitly, or "
            "pass --dirty to snapshot them (git stash create; untracked files are left out)"
        )
    snapshot = _git("stash", "create").stdout.strip()
    untracked = _git("ls-files", "--others", "--exclude-standard").stdout.split()
    note = f"snapshot {snapshot[:7]} of the uncommitted changes on {head[:7]}" + (
        f"; {len(untracked)} untracked file(s) left out" if untracked else ""
    )
    return Side("new", "working tree", snapshot or head, note)


def run_ab(plan: AbPlan) -> dict[str, Any]:
    """Hold the lock, make both worktrees and databases, run the pairs, write the comparison."""
    url = database_url()
    with exclusive_database(url), contextlib.ExitStack() as stack:
        plan.out_dir.mkdir(parents=True)  # once the lock is ours: a refusal leaves nothing
        _say(f"writing to {plan.out_dir}")
        for side in (plan.base, plan.new):
            note = f", {side.note}" if side.note else ""
            _say(f"{side.name}: {side.revision} = {side.commit[:7]}{note}")
        trees = {
            side.name: stack.enter_context(worktree(side.commit)) for side in (plan.base, plan.new)
        }
        urls = {name: side_database(url, name) for name in SIDES}
        runs: dict[str, list[Path]] = {name: [] for name in SIDES}
        for pair in range(1, plan.repeats + 1):
            # Alternate the order within pairs: a slow drift of the machine hits both alike.
            order = SIDES if pair % 2 else tuple(reversed(SIDES))
            for name in order:
                _say(f"pair {pair}/{plan.repeats}: {name} …")
                run_dir, line = run_side(plan, name, trees[name], urls[name], pair)
                runs[name].append(run_dir)
                _say(f"pair {pair}/{plan.repeats}: {name}: {line}")
    document, spectra = compare_runs(
        ",".join(map(str, runs["base"])), ",".join(map(str, runs["new"])), margins=plan.margins
    )
    document["ab"] = {
        "base": {
            "revision": plan.base.revision,
            "commit": plan.base.commit,
            "note": plan.base.note,
        },
        "new": {"revision": plan.new.revision, "commit": plan.new.commit, "note": plan.new.note},
        "repeats": plan.repeats,
        "order": "interleaved pairs, alternating: base new, new base, ...",
        "profile": plan.profile,
        "strategy": plan.strategy,
    }
    print(summary_line(write_comparison(document, spectra, plan.out_dir)))
    return document


@contextlib.contextmanager
def worktree(commit: str) -> Iterator[Path]:
    """Check ``commit`` out into a temporary worktree (detached) for the block."""
    path = Path(tempfile.mkdtemp(prefix="loadtest-ab-")) / "tree"
    completed = _git("worktree", "add", "--detach", "--quiet", str(path), commit)
    if completed.returncode != 0:
        raise AbError(f"git worktree add {commit[:7]} failed: {_last_line(completed.stderr)}")
    try:
        yield path
    finally:
        _git("worktree", "remove", "--force", str(path))


def side_database(url: str, side: str) -> str:
    """Return the URL of a fresh throwaway database for one side, on the server of ``url``."""
    parts = urllib.parse.urlsplit(url)
    name = f"{parts.path.lstrip('/') or 'loadtest'}_ab_{side}"
    with psycopg.connect(url, autocommit=True) as connection:
        # Another commit's migrations may have left a schema this one does not know.
        connection.execute(
            psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                psycopg.sql.Identifier(name)
            )
        )
    create_marked_database(url, name)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))


def run_side(plan: AbPlan, name: str, tree: Path, url: str, pair: int) -> tuple[Path, str]:
    """Run one side's `load-test.all` from its worktree; return its run folder and last line."""
    reports = plan.out_dir / name
    before = set(reports.glob(RUN_GLOB))
    env = {key: value for key, value in os.environ.items() if key not in CHILD_ENV_DROPPED}
    env.update(PYTHONPATH=str(tree), DATABASE_URL=url)
    command = [
        sys.executable, "-m", "invoke", "load-test.all", "--profile", plan.profile,
        "--strategy", plan.strategy, "--reports-dir", str(reports),
        *(["--scenarios", plan.scenarios] if plan.scenarios else []),
    ]  # fmt: skip
    completed = subprocess.run(
        command, cwd=tree, env=env, capture_output=True, text=True, check=False
    )
    log = plan.out_dir / f"{name}-{pair}.log"
    log.write_text(completed.stdout + completed.stderr, encoding="utf-8")
    made = sorted(set(reports.glob(RUN_GLOB)) - before)
    if completed.returncode not in (0, EXIT_FAILED) or not made:
        raise AbError(
            f"{name} ({getattr(plan, name).commit[:7]}) run {pair} failed (exit "
            f"{completed.returncode}): {_last_line(completed.stderr or completed.stdout)} "
            f"(log: {log})"
        )
    return made[-1], _last_line(completed.stdout)


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *args], cwd=REPOSITORY, capture_output=True, text=True, check=False
    )


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "(no output)"


def _say(message: str) -> None:
    print(f"[ab] {message}", file=sys.stderr, flush=True)
