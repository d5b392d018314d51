"""Database up, migrations, seed: the steps behind `invoke load-test.setup` and `.seed`."""

from __future__ import annotations

import os
from contextlib import ExitStack
from pathlib import Path

from local_postgres import LocalCluster, database_url
from pipeline.exclusive import exclusive_database
from pipeline.exits import cleanly
from seeding import (
    DEFAULT_FIXTURES_PATH,
    SeedingError,
    SeedSummary,
    check_options,
    check_seedable,
    seed_database,
)
from seeding.database import connect
from target.migrate import upgrade
from target.settings import DEFAULT_JWT_SECRET

JWT_SECRET_ENV = "JWT_SECRET"
FIXTURES_PATH_ENV = "LOADTEST_FIXTURES_PATH"


def jwt_secret() -> str:
    """Return the secret the service verifies tokens with (env JWT_SECRET or its default)."""
    return os.environ.get(JWT_SECRET_ENV) or DEFAULT_JWT_SECRET


def resolve_fixtures_path(explicit: Path | str | None = None) -> Path:
    """Return the fixtures file: ``explicit``, else $LOADTEST_FIXTURES_PATH, else seeding's default.

    Every command resolves it here, so seeding writes the file the scenarios then read.
    """
    if explicit:
        return Path(explicit)
    return Path(os.environ.get(FIXTURES_PATH_ENV) or DEFAULT_FIXTURES_PATH)


def setup_database(
    *,
    seed: int = 2024,
    scale: int = 1,
    background: int = 100_000,
    force: bool = False,
    fixtures_path: Path | None = None,
) -> str:
    """Bring the database up, migrate it and seed it; return its URL. Safe to run again."""
    url, _ = setup_and_seed(
        seed=seed,
        scale=scale,
        background=background,
        force=force,
        fixtures_path=resolve_fixtures_path(fixtures_path),
    )
    return url


def setup_and_seed(
    *, seed: int, scale: int, background: int, force: bool, fixtures_path: Path
) -> tuple[str, SeedSummary]:
    """Do what setup_database does and also return the seeding summary."""
    check_options(scale=scale, background=background)
    url = database_url()
    # Before migrating: a mistyped DATABASE_URL must not even get our tables added.
    check_seedable(url, force=force, require_schema=False)
    upgrade(url)
    summary = seed_database(
        url,
        seed=seed,
        scale=scale,
        background=background,
        force=force,
        fixtures_path=fixtures_path,
        jwt_secret=jwt_secret(),
    )
    return url, summary


def seed_existing(
    *, seed: int, scale: int, background: int, force: bool, fixtures_path: Path
) -> SeedSummary:
    """Seed the database the tools use, without starting or migrating anything."""
    check_options(scale=scale, background=background)
    return seed_database(
        existing_database_url(),
        seed=seed,
        scale=scale,
        background=background,
        force=force,
        fixtures_path=fixtures_path,
        jwt_secret=jwt_secret(),
    )


def bring_up_database() -> tuple[str, bool]:
    """Return the database's URL and whether this call started the local cluster for it.

    Never True under DATABASE_URL: a server we were pointed at is never ours to stop.
    """
    explicit = os.environ.get("DATABASE_URL")
    if explicit:
        return explicit, False
    cluster = LocalCluster().up()
    return cluster.url, cluster.started_here


def existing_database_url() -> str:
    """Return DATABASE_URL or the running local cluster's URL, starting nothing."""
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    cluster = LocalCluster()
    if not cluster.is_running():
        raise SeedingError("the project's PostgreSQL is not running: run `invoke load-test.setup`")
    return cluster.url()


def summary_line(summary: SeedSummary) -> str:
    return (
        f"seeded {summary.organizations} organizations, {summary.service_codes} service codes, "
        f"{summary.patients:,} patients, {summary.practitioners:,} practitioners, "
        f"{summary.active_authorizations:,} active + {summary.background_authorizations:,} "
        f"closed authorizations (seed {summary.seed}, scale {summary.scale}) "
        f"in {summary.elapsed_s:.1f} s; fixtures: {summary.fixtures_path}"
    )


def seed_command(
    *,
    seed: int = 2024,
    scale: int = 1,
    background: int = 100_000,
    force: bool = False,
    fixtures_path: Path | None = None,
) -> None:
    """Reset and seed the database; print one summary line, or one error line and exit 2."""
    resolved = resolve_fixtures_path(fixtures_path)
    cleanly(lambda: check_options(scale=scale, background=background))
    url = cleanly(existing_database_url)
    with ExitStack() as held:
        cleanly(lambda: hold_database(held, url))
        summary = cleanly(
            lambda: seed_existing(
                seed=seed,
                scale=scale,
                background=background,
                force=force,
                fixtures_path=resolved,
            )
        )
    print(summary_line(summary))


def setup_command(
    *,
    seed: int = 2024,
    scale: int = 1,
    background: int = 100_000,
    force: bool = False,
    fixtures_path: Path | None = None,
) -> None:
    """Database up, migrations, seed; print the URL and a summary line, or one error line."""
    resolved = resolve_fixtures_path(fixtures_path)
    cleanly(lambda: check_options(scale=scale, background=background))
    with ExitStack() as held:
        cleanly(lambda: hold_database(held, database_url()))
        url, summary = cleanly(
            lambda: setup_and_seed(
                seed=seed,
                scale=scale,
                background=background,
                force=force,
                fixtures_path=resolved,
            )
        )
    print(summary_line(summary))
    print(f"database ready: {url}")


def hold_database(held: ExitStack, url: str) -> None:
    """Take the load-test lock on ``url`` for as long as ``held`` lasts."""
    # Seeding's own connect first: an unreachable database gets its one-line wording.
    connect(url).close()
    held.enter_context(exclusive_database(url))
