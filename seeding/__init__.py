"""Deterministic multi-tenant test data: the database rows, the baseline and the fixture file."""

from __future__ import annotations

from seeding.credentials import KNOWN_PASSWORD
from seeding.database import SeedingError, check_seedable, reset_to_baseline
from seeding.dataset import POOL_NAMES, POOLS
from seeding.fixtures import DEFAULT_FIXTURES_PATH, load_fixtures
from seeding.seed import SeedSummary, check_options, seed_database

__all__ = [
    "DEFAULT_FIXTURES_PATH",
    "KNOWN_PASSWORD",
    "POOLS",
    "POOL_NAMES",
    "SeedSummary",
    "SeedingError",
    "check_options",
    "check_seedable",
    "load_fixtures",
    "reset_to_baseline",
    "seed_database",
]
