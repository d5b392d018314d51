"""Deterministic multi-tenant test data: the database rows, the baseline and the fixture file.

The names below load their modules on first use (PEP 562), so that `seeding.defaults` costs
`invoke --list` nothing: the rest pulls in Faker, bcrypt and psycopg.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from seeding.credentials import KNOWN_PASSWORD
    from seeding.database import SeedingError, check_seedable, reset_to_baseline
    from seeding.dataset import POOL_NAMES, POOLS
    from seeding.fixtures import DEFAULT_FIXTURES_PATH, load_fixtures
    from seeding.seed import SeedSummary, check_options, seed_database

_HOMES = {
    "KNOWN_PASSWORD": "seeding.credentials",
    "SeedingError": "seeding.database",
    "check_seedable": "seeding.database",
    "reset_to_baseline": "seeding.database",
    "POOL_NAMES": "seeding.dataset",
    "POOLS": "seeding.dataset",
    "DEFAULT_FIXTURES_PATH": "seeding.fixtures",
    "load_fixtures": "seeding.fixtures",
    "SeedSummary": "seeding.seed",
    "check_options": "seeding.seed",
    "seed_database": "seeding.seed",
}

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


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'seeding' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
