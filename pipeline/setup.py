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
from seeding.defaults import DEFAULT_BACKGROUND, DEFAULT_SCALE, DEFAULT_SEED
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
    seed: int = DEFAULT_SEED,
    scale: int = DEFAULT_SCALE,
    background: int = DEFAULT_BACKGROUND,
    force: bool = False,
    fixtures_path: Path | None = None,
) -> str:
    """Bring the database up, migrate it and seed it; return its URL. Safe to run again."""
    check_options(scale=scale, background=background)
    url = database_url()
    migrate_for_seeding(url, force=force)
    seed_database(
        url,
        seed=seed,
        scale=scale,
        background=background,
        force=force,
        fixtures_path=resolve_fixtures_path(fixtures_path),
        jwt_secret=jwt_secret(),
    )
    return url


def migrate_for_seeding(url: str, *, force: bool) -> None:
    """Migrate the database to head once it is one this project may seed."""
    # Before migrating: a mistyped DATABASE_URL must not even get our tables added.
    check_seedable(url, force=force, require_schema=False)
    upgrade(url)


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
    seed: int = DEFAULT_SEED,
    scale: int = DEFAULT_SCALE,
    background: int = DEFAULT_BACKGROUND,
    force: bool = False,
    fixtures_path: Path | None = None,
    set_up: bool = False,
) -> None:
    """Reset and seed the database; print one summary line, or one error line and exit 2.

    ``set_up`` first starts the project's PostgreSQL (unless DATABASE_URL is set) and migrates
    it (`load-test.setup`); without it the database must be running and migrated
    (`load-test.seed`).
    """
    resolved = resolve_fixtures_path(fixtures_path)
    cleanly(lambda: check_options(scale=scale, background=background))
    url = cleanly(database_url if set_up else existing_database_url)
    with ExitStack() as held:
        cleanly(lambda: hold_database(held, url))
        if set_up:
            cleanly(lambda: migrate_for_seeding(url, force=force))
        summary = cleanly(
            lambda: seed_database(
                url,
                seed=seed,
                scale=scale,
                background=background,
                force=force,
                fixtures_path=resolved,
                jwt_secret=jwt_secret(),
            )
        )
    print(summary_line(summary))
    if set_up:
        print(f"database ready: {url}")


def setup_command(
    *,
    seed: int = DEFAULT_SEED,
    scale: int = DEFAULT_SCALE,
    background: int = DEFAULT_BACKGROUND,
    force: bool = False,
    fixtures_path: Path | None = None,
) -> None:
    """Database up, migrations, seed; print a summary line and the URL, or one error line."""
    seed_command(
        seed=seed,
        scale=scale,
        background=background,
        force=force,
        fixtures_path=fixtures_path,
        set_up=True,
    )


def hold_database(held: ExitStack, url: str) -> None:
    """Take the load-test lock on ``url`` for as long as ``held`` lasts."""
    # Seeding's own connect first: an unreachable database gets its one-line wording.
    connect(url).close()
    held.enter_context(exclusive_database(url))
