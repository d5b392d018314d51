"""Read fixtures/test-data.json: the authorizations to hit and a token for each organization."""

from __future__ import annotations

import datetime as dt
import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FIXTURES_SCHEMA_VERSION = 1
HIGH_CONTENTION = "high_contention"
NORMAL = "normal"
HIGH_THROUGHPUT = "high_throughput"
SCHEDULING = "scheduling"
# The pools whose counters the unit scenarios move; session_scheduling books against its own.
COUNTER_POOLS = (HIGH_CONTENTION, NORMAL, HIGH_THROUGHPUT)
POOL_NAMES = (*COUNTER_POOLS, SCHEDULING)


class FixturesError(ValueError):
    """The fixture file is missing or does not have the shape seeding writes."""


@dataclass(frozen=True)
class Authorization:
    """An authorization the scenarios may load, as seeded."""

    id: str
    organization_id: str
    total_units: int
    pool: str


@dataclass(frozen=True)
class Fixtures:
    """The seeded authorizations by pool, and the practitioners' tokens by organization."""

    pools: dict[str, tuple[Authorization, ...]]
    tokens: dict[str, tuple[str, ...]]
    tokens_expire_at: dt.datetime | None = None

    @functools.cached_property
    def authorizations(self) -> tuple[Authorization, ...]:
        return tuple(authorization for name in COUNTER_POOLS for authorization in self.pools[name])

    @functools.cached_property
    def by_id(self) -> dict[str, Authorization]:
        return {authorization.id: authorization for authorization in self.authorizations}


def load_fixtures(
    path: Path, *, valid_for_s: float = 0.0, now: dt.datetime | None = None
) -> Fixtures:
    """Read and check a fixture file; raise FixturesError with one clear line otherwise.

    Its tokens must still be valid ``valid_for_s`` seconds from ``now`` (a run's length): an
    expired token would turn every request into a 401 and the run into noise.
    """
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise FixturesError(
            f"fixtures file not found: {path} (run `invoke load-test.setup` first)"
        ) from None
    except (OSError, ValueError) as error:
        raise FixturesError(f"fixtures file {path} is not readable JSON: {error}") from None
    try:
        fixtures = _parse(document)
    except (KeyError, TypeError, ValueError) as error:
        raise FixturesError(f"fixtures file {path} is malformed: {error!r}") from None
    _check_expiry(path, fixtures.tokens_expire_at, valid_for_s, now or dt.datetime.now(dt.UTC))
    return fixtures


def _check_expiry(
    path: Path, expires_at: dt.datetime | None, valid_for_s: float, now: dt.datetime
) -> None:
    if expires_at is None:
        return  # a hand-made file without the field: nothing to check
    if expires_at <= now:
        raise FixturesError(
            f"fixtures at {path} hold tokens that expired at {expires_at.isoformat()}: "
            "run `invoke load-test.seed`"
        )
    if expires_at <= now + dt.timedelta(seconds=valid_for_s):
        raise FixturesError(
            f"fixtures at {path} hold tokens that expire at {expires_at.isoformat()}, before "
            f"a {valid_for_s:g} s run would end: run `invoke load-test.seed`"
        )


def _parse(document: dict[str, Any]) -> Fixtures:
    version = document.get("schema_version")
    if version != FIXTURES_SCHEMA_VERSION:
        raise ValueError(f"schema_version {version!r}, expected {FIXTURES_SCHEMA_VERSION}")
    tokens: dict[str, list[str]] = {}
    for practitioner in document["practitioners"]:
        tokens.setdefault(str(practitioner["organization_id"]), []).append(
            str(practitioner["token"])
        )
    pools: dict[str, tuple[Authorization, ...]] = {}
    for name in POOL_NAMES:
        # Fixtures seeded before session_scheduling have no scheduling pool: only it needs one.
        entries = document["pools"].get(name, []) if name == SCHEDULING else document["pools"][name]
        if not entries and name != SCHEDULING:
            raise ValueError(f"pool {name} is empty")
        pools[name] = tuple(
            Authorization(
                id=str(entry["id"]),
                organization_id=str(entry["organization_id"]),
                total_units=int(entry["total_units"]),
                pool=name,
            )
            for entry in entries
        )
    for authorization in (a for pool in pools.values() for a in pool):
        if authorization.organization_id not in tokens:
            raise ValueError(
                f"no practitioner token for organization {authorization.organization_id}"
            )
    return Fixtures(
        pools=pools,
        tokens={org: tuple(found) for org, found in tokens.items()},
        tokens_expire_at=_expiry(document.get("tokens_expire_at")),
    )


def _expiry(value: Any) -> dt.datetime | None:
    """Parse ``tokens_expire_at``; a time without a zone is UTC, as seeding writes it."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"tokens_expire_at {value!r} is not an ISO-8601 time")
    moment = dt.datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
