"""Seed a database and write the fixtures: the one entry point the pipeline calls."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from pathlib import Path

from seeding.credentials import KNOWN_PASSWORD, issue_tokens, password_hash
from seeding.database import SeedingError, check_seedable, load_dataset, vacuum_seeded_tables
from seeding.dataset import build_dataset
from seeding.defaults import (
    DEFAULT_BACKGROUND,
    DEFAULT_SCALE,
    DEFAULT_SEED,
    DEFAULT_TOKEN_TTL_S,
)
from seeding.fixtures import DEFAULT_FIXTURES_PATH, fixture_document, publish, write_pending


@dataclass(frozen=True)
class SeedSummary:
    """What one seeding wrote, and how long it took."""

    seed: int
    scale: int
    organizations: int
    service_codes: int
    patients: int
    practitioners: int
    active_authorizations: int
    background_authorizations: int
    fixtures_path: Path
    elapsed_s: float

    @property
    def rows(self) -> int:
        """Rows written in all tables, the baseline included."""
        authorizations = self.active_authorizations + self.background_authorizations
        return (
            self.organizations
            + self.service_codes
            + self.patients
            + self.practitioners
            + 2 * authorizations
        )


def utc_now() -> dt.datetime:
    """Return the current time in UTC (one seam, so tests can pin the day)."""
    return dt.datetime.now(dt.UTC)


def check_options(*, scale: int, background: int, token_ttl_s: int = DEFAULT_TOKEN_TTL_S) -> None:
    """Raise SeedingError for options no seeding can honour."""
    for name, value, least in (
        ("scale", scale, 1),
        ("background", background, 0),
        ("token ttl", token_ttl_s, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise SeedingError(f"{name} must be an integer >= {least}, not {value!r}")


def seed_database(
    database_url: str,
    *,
    seed: int = DEFAULT_SEED,
    scale: int = DEFAULT_SCALE,
    background: int = DEFAULT_BACKGROUND,
    force: bool = False,
    fixtures_path: Path = DEFAULT_FIXTURES_PATH,
    jwt_secret: str,
    token_ttl_s: int = DEFAULT_TOKEN_TTL_S,
) -> SeedSummary:
    """Wipe and seed the database, then write the fixture file; all or nothing.

    Rows are identical for the same seed on the same (UTC) day: date ranges are relative
    to today so that the active authorizations always cover the run.
    """
    started = time.perf_counter()
    check_options(scale=scale, background=background, token_ttl_s=token_ttl_s)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise SeedingError(f"seed must be an integer, not {seed!r}")
    if not jwt_secret:
        raise SeedingError("the JWT secret must not be empty")
    check_seedable(database_url, force=force)
    generated_at = utc_now().replace(microsecond=0)
    dataset = build_dataset(
        seed=seed,
        scale=scale,
        background=background,
        today=generated_at.date(),
        password_hash=password_hash(seed),
    )
    tokens_expire_at = generated_at + dt.timedelta(seconds=token_ttl_s)
    tokens = issue_tokens(
        dataset.practitioners,
        jwt_secret=jwt_secret,
        issued_at=generated_at,
        expires_at=tokens_expire_at,
    )
    document = fixture_document(
        dataset,
        seed=seed,
        scale=scale,
        background=background,
        password=KNOWN_PASSWORD,
        tokens=tokens,
        generated_at=generated_at,
        tokens_expire_at=tokens_expire_at,
    )
    fixtures_path = Path(fixtures_path)
    try:
        pending = write_pending(document, fixtures_path)
    except OSError as error:
        raise SeedingError(f"cannot write fixtures to {fixtures_path}: {error}") from error
    try:
        load_dataset(database_url, dataset)
    except BaseException:
        pending.unlink(missing_ok=True)
        raise
    # The rows are committed; the fixtures describing them replace the old file in one step.
    publish(pending, fixtures_path)
    vacuum_seeded_tables(database_url)
    return SeedSummary(
        seed=seed,
        scale=scale,
        organizations=len(dataset.organizations),
        service_codes=len(dataset.service_codes),
        patients=len(dataset.all_patients),
        practitioners=len(dataset.practitioners),
        active_authorizations=len(dataset.active_authorizations),
        background_authorizations=len(dataset.background_authorizations),
        fixtures_path=fixtures_path,
        elapsed_s=time.perf_counter() - started,
    )
