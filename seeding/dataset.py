"""Build the seeded data set in memory: deterministic for a seed, a scale and a day.

Every random choice comes from a stream of its own (``random.Random("<seed>/<purpose>")``),
so the active data set does not change when only the background size changes, and two
seedings with the same seed on the same day produce the same rows and the same ids (with the
same Faker version, whose name lists feed the name pools).
Authorization date ranges are relative to ``today`` on purpose: the service refuses a
reserve outside an authorization's range, so a fixed calendar anchor would expire.
"""

from __future__ import annotations

import datetime as dt
import random
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from faker import Faker

ORGANIZATION_NAMES = ("OrgA", "OrgB", "OrgC")
# CPT codes for adaptive behavior services, the authorizations an ABA clinic books against.
SERVICE_CODES = {
    "97151": "Behavior identification assessment",
    "97153": "Adaptive behavior treatment by protocol",
    "97155": "Adaptive behavior treatment with protocol modification",
    "97156": "Family adaptive behavior treatment guidance",
    "97157": "Multiple-family group adaptive behavior treatment guidance",
}
PATIENTS_PER_SCALE = 20
PRACTITIONERS_PER_SCALE = 10
PRACTITIONER_ROLES = ("bcba", "rbt")
HIGH_CONTENTION = "high_contention"
NORMAL = "normal"
HIGH_THROUGHPUT = "high_throughput"
SCHEDULING = "scheduling"  # session_scheduling books sessions against these, with no counters
ACTIVE = "active"
CLOSED = "closed"
# Share of an active authorization already used / scheduled at seeding (high contention: none).
USED_SHARE_MAX = 0.10
SCHEDULED_SHARE_MAX = 0.05
# Active ranges started 30-120 days ago and last a year: they cover any run by months.
ACTIVE_STARTED_DAYS_AGO = (30, 120)
AUTHORIZATION_LENGTH_DAYS = 365
# Historic authorizations ended within the last two years, mostly used up.
CLOSED_ENDED_DAYS_AGO = (1, 730)
CLOSED_TOTAL_UNITS = (50, 100, 200, 500, 1000)
BACKGROUND_AUTHORIZATIONS_PER_PATIENT = 5
# Faker costs tens of microseconds a call: draw names from small seeded pools instead, so
# that scale 1000 seeds in seconds.
NAME_POOL_SIZE = 256
FAKER_LOCALE = "en_US"
BIRTH_DATE_EARLIEST = dt.date(1985, 1, 1)
BIRTH_DATE_SPAN_DAYS = 35 * 365
ORGANIZATION_AGE_DAYS = 1000
EMAIL_DOMAIN = "example.test"


@dataclass(frozen=True)
class Pool:
    """A named group of active authorizations with the same budget."""

    name: str
    count_per_scale: int
    total_units: int


POOLS = (
    Pool(HIGH_CONTENTION, 10, 50),
    Pool(NORMAL, 20, 200),
    Pool(HIGH_THROUGHPUT, 25, 1000),
    Pool(SCHEDULING, 12, 40),
)
POOL_NAMES = tuple(pool.name for pool in POOLS)


# Field order is the column order of the COPY statements.
class OrganizationRow(NamedTuple):
    id: uuid.UUID
    name: str
    created_at: dt.datetime


class ServiceCodeRow(NamedTuple):
    code: str
    description: str


class PatientRow(NamedTuple):
    id: uuid.UUID
    organization_id: uuid.UUID
    first_name: str
    last_name: str
    date_of_birth: dt.date
    member_id: str


class PractitionerRow(NamedTuple):
    id: uuid.UUID
    organization_id: uuid.UUID
    email: str
    full_name: str
    role: str
    password_hash: str


class AuthorizationRow(NamedTuple):
    id: uuid.UUID
    organization_id: uuid.UUID
    patient_id: uuid.UUID
    service_code: str
    total_units: int
    used_units: int
    scheduled_units: int
    start_date: dt.date
    end_date: dt.date
    status: str
    updated_at: dt.datetime


@dataclass(frozen=True)
class DataSet:
    """Every row one seeding writes, the active part split by pool."""

    organizations: list[OrganizationRow]
    service_codes: list[ServiceCodeRow]
    patients: list[PatientRow]
    practitioners: list[PractitionerRow]
    pools: dict[str, list[AuthorizationRow]]
    background_patients: list[PatientRow]
    background_authorizations: list[AuthorizationRow]

    @property
    def active_authorizations(self) -> list[AuthorizationRow]:
        return [row for name in POOL_NAMES for row in self.pools[name]]

    @property
    def all_patients(self) -> list[PatientRow]:
        return self.patients + self.background_patients

    @property
    def all_authorizations(self) -> list[AuthorizationRow]:
        return self.active_authorizations + self.background_authorizations


def stream(seed: int, purpose: str) -> random.Random:
    """Return the random stream of one purpose; string seeds hash the same on every run."""
    return random.Random(f"{seed}/{purpose}")


def new_id(rng: random.Random) -> uuid.UUID:
    """Draw a version-4 UUID from a seeded stream."""
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def midnight_utc(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(0), tzinfo=dt.UTC)


def build_dataset(
    *, seed: int, scale: int, background: int, today: dt.date, password_hash: str
) -> DataSet:
    """Build the rows of one seeding; the same arguments always give the same rows."""
    first_names, last_names = name_pools(seed)
    organizations = build_organizations(seed, today)
    org_ids = [org.id for org in organizations]
    patients = build_patients(
        stream(seed, "patients"), org_ids, PATIENTS_PER_SCALE * scale, first_names, last_names
    )
    practitioners = build_practitioners(
        stream(seed, "practitioners"),
        organizations,
        PRACTITIONERS_PER_SCALE * scale,
        first_names,
        last_names,
        password_hash,
    )
    pools = build_pools(stream(seed, "authorizations"), patients, org_ids, scale, today)
    background_patients = build_patients(
        stream(seed, "background-patients"),
        org_ids,
        -(-background // BACKGROUND_AUTHORIZATIONS_PER_PATIENT),
        first_names,
        last_names,
    )
    background_authorizations = build_background(
        stream(seed, "background-authorizations"), background_patients, background, today
    )
    return DataSet(
        organizations=organizations,
        service_codes=[ServiceCodeRow(code, text) for code, text in SERVICE_CODES.items()],
        patients=patients,
        practitioners=practitioners,
        pools=pools,
        background_patients=background_patients,
        background_authorizations=background_authorizations,
    )


def name_pools(seed: int) -> tuple[list[str], list[str]]:
    """Draw pools of first and last names from a Faker seeded with ``seed``."""
    faker = Faker(FAKER_LOCALE)
    faker.seed_instance(seed)
    first_names = [faker.first_name() for _ in range(NAME_POOL_SIZE)]
    last_names = [faker.last_name() for _ in range(NAME_POOL_SIZE)]
    return first_names, last_names


def build_organizations(seed: int, today: dt.date) -> list[OrganizationRow]:
    rng = stream(seed, "organizations")
    created_at = midnight_utc(today - dt.timedelta(days=ORGANIZATION_AGE_DAYS))
    return [OrganizationRow(new_id(rng), name, created_at) for name in ORGANIZATION_NAMES]


def build_patients(
    rng: random.Random,
    org_ids: Sequence[uuid.UUID],
    count: int,
    first_names: Sequence[str],
    last_names: Sequence[str],
) -> list[PatientRow]:
    """Build ``count`` patients, dealt round-robin over the organizations."""
    return [
        PatientRow(
            id=new_id(rng),
            organization_id=org_ids[index % len(org_ids)],
            first_name=rng.choice(first_names),
            last_name=rng.choice(last_names),
            date_of_birth=BIRTH_DATE_EARLIEST
            + dt.timedelta(days=rng.randrange(BIRTH_DATE_SPAN_DAYS)),
            member_id=f"MBR{rng.randrange(10**9):09d}",
        )
        for index in range(count)
    ]


def build_practitioners(
    rng: random.Random,
    organizations: Sequence[OrganizationRow],
    count: int,
    first_names: Sequence[str],
    last_names: Sequence[str],
    password_hash: str,
) -> list[PractitionerRow]:
    """Build ``count`` practitioners dealt round-robin, so every organization has some."""
    rows = []
    for index in range(count):
        organization = organizations[index % len(organizations)]
        first, last = rng.choice(first_names), rng.choice(last_names)
        # The index keeps emails unique however often a name pair repeats.
        local_part = f"{email_part(first)}.{email_part(last)}.{index + 1}"
        rows.append(
            PractitionerRow(
                id=new_id(rng),
                organization_id=organization.id,
                email=f"{local_part}@{organization.name.lower()}.{EMAIL_DOMAIN}",
                full_name=f"{first} {last}",
                role=PRACTITIONER_ROLES[index % len(PRACTITIONER_ROLES)],
                password_hash=password_hash,
            )
        )
    return rows


def email_part(name: str) -> str:
    return re.sub(r"[^a-z]", "", name.lower()) or "x"


def build_pools(
    rng: random.Random,
    patients: Sequence[PatientRow],
    org_ids: Sequence[uuid.UUID],
    scale: int,
    today: dt.date,
) -> dict[str, list[AuthorizationRow]]:
    """Build the active authorizations of every pool.

    Authorization ``i`` (counted across pools) belongs to organization ``i mod 3`` and has
    service code ``i mod 5``: 3 and 5 are coprime, so every pool of 10 or more spans every
    organization and every code, and each organization's patients are taken in turn.
    """
    organization_count = len(org_ids)
    patients_by_org = [[p for p in patients if p.organization_id == org_id] for org_id in org_ids]
    codes = list(SERVICE_CODES)
    updated_at = midnight_utc(today)
    pools: dict[str, list[AuthorizationRow]] = {}
    index = 0
    for pool in POOLS:
        rows = []
        for _ in range(pool.count_per_scale * scale):
            org_patients = patients_by_org[index % organization_count]
            patient = org_patients[(index // organization_count) % len(org_patients)]
            start = today - dt.timedelta(days=rng.randint(*ACTIVE_STARTED_DAYS_AGO))
            # High-contention and scheduling authorizations start empty: the whole budget is
            # contended (a scheduling one's units are held by its sessions, not a counter).
            fresh = pool.name in (HIGH_CONTENTION, SCHEDULING)
            used, scheduled = (0, 0) if fresh else seeded_usage(rng, pool)
            rows.append(
                AuthorizationRow(
                    id=new_id(rng),
                    organization_id=patient.organization_id,
                    patient_id=patient.id,
                    service_code=codes[index % len(codes)],
                    total_units=pool.total_units,
                    used_units=used,
                    scheduled_units=scheduled,
                    start_date=start,
                    end_date=start + dt.timedelta(days=AUTHORIZATION_LENGTH_DAYS - 1),
                    status=ACTIVE,
                    updated_at=updated_at,
                )
            )
            index += 1
        pools[pool.name] = rows
    return pools


def seeded_usage(rng: random.Random, pool: Pool) -> tuple[int, int]:
    """Draw the used and scheduled units an authorization has when the run starts."""
    used = rng.randint(0, int(pool.total_units * USED_SHARE_MAX))
    scheduled = rng.randint(0, int(pool.total_units * SCHEDULED_SHARE_MAX))
    return used, scheduled


def build_background(
    rng: random.Random, patients: Sequence[PatientRow], count: int, today: dt.date
) -> list[AuthorizationRow]:
    """Build ``count`` closed historic authorizations, a few per background patient."""
    codes = list(SERVICE_CODES)
    # A few hundred distinct ranges serve 100,000 rows: build each date triple once.
    ranges = {}
    for days_ago in range(CLOSED_ENDED_DAYS_AGO[0], CLOSED_ENDED_DAYS_AGO[1] + 1):
        end = today - dt.timedelta(days=days_ago)
        start = end - dt.timedelta(days=AUTHORIZATION_LENGTH_DAYS - 1)
        ranges[days_ago] = (start, end, midnight_utc(end + dt.timedelta(days=1)))
    rows = []
    for index in range(count):
        patient = patients[index // BACKGROUND_AUTHORIZATIONS_PER_PATIENT]
        start, end, updated_at = ranges[rng.randint(*CLOSED_ENDED_DAYS_AGO)]
        total = rng.choice(CLOSED_TOTAL_UNITS)
        rows.append(
            AuthorizationRow(
                id=new_id(rng),
                organization_id=patient.organization_id,
                patient_id=patient.id,
                service_code=rng.choice(codes),
                total_units=total,
                used_units=rng.randint(total // 2, total),
                scheduled_units=0,
                start_date=start,
                end_date=end,
                status=CLOSED,
                updated_at=updated_at,
            )
        )
    return rows
