"""Helpers for the service tests: minimal rows, tokens, database snapshots, running servers.

No tests live here; the test_service_* modules import it.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import jwt
import psycopg

from local_postgres import ClusterInfo, create_marked_database
from local_postgres.cluster import url_for
from pipeline.service_process import ServiceProcess, service_environment, start_service
from seeding import seed_database
from target.settings import DEFAULT_JWT_SECRET, Settings

PASSWORD = "correct horse battery staple"
SERVICE_CODE = "97153"
# The cheapest bcrypt cost: the tests check the hash, not its strength.
TEST_BCRYPT_ROUNDS = 4
CLIENT_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Tenant:
    organization_id: uuid.UUID
    patient_id: uuid.UUID
    practitioner_id: uuid.UUID
    email: str


@dataclass(frozen=True)
class Clinic:
    """Two organizations, each with a patient and a practitioner."""

    url: str
    home: Tenant
    other: Tenant


@dataclass(frozen=True)
class ServiceOptions:
    """How a test's service runs: its strategy, its workers and extra TARGET_* variables."""

    strategy: str | None = None
    workers: int = 1
    env: dict[str, str] = field(default_factory=dict)

    def label(self) -> str:
        """Name the options in a test id: the strategy and the variables' values."""
        return "-".join(filter(None, (self.strategy, *self.env.values()))) or "default"


class Services:
    """Services on one database, each started on first request and kept until stopped.

    Two requests whose options resolve to the same service settings and worker count share
    one service: starting one costs processes and their imports, the dear part of a test.
    """

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self._running: dict[tuple[str, int], ServiceProcess] = {}

    def __call__(self, options: ServiceOptions) -> ServiceProcess:
        """Return a running service with these options, starting it if none is."""
        key = self._key(options)
        service = self._running.get(key)
        if service is not None and service.is_alive():
            return service
        if service is not None:
            service.stop()  # a test killed it: clean up what is left, then start another
        service = start_service(
            self.database_url, strategy=options.strategy, workers=options.workers, env=options.env
        )
        self._running[key] = service
        return service

    def stop(self, options: ServiceOptions) -> None:
        """Stop the service with these options, if one runs."""
        service = self._running.pop(self._key(options), None)
        if service is not None:
            service.stop()

    def close(self) -> None:
        """Stop every service started here."""
        while self._running:
            self._running.popitem()[1].stop()

    def _key(self, options: ServiceOptions) -> tuple[str, int]:
        environment = service_environment(
            self.database_url, options.strategy, Path(os.devnull), options.env
        )
        # Settings holds a dict, so it does not hash; its repr names every field.
        return repr(Settings.from_env(environment)), options.workers


@contextmanager
def module_database(pg_cluster: ClusterInfo, template: str) -> Iterator[str]:
    """Create a migrated database for a whole test module (its server outlives one test)."""
    name = f"svc_{uuid.uuid4().hex[:12]}"
    admin_url = url_for(pg_cluster.port, "postgres")
    create_marked_database(admin_url, name, template=template)
    try:
        yield url_for(pg_cluster.port, name)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(
                psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    psycopg.sql.Identifier(name)
                )
            )


def seed_clinic(url: str) -> Clinic:
    """Insert two organizations, each with one patient and one practitioner."""
    password_hash = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(TEST_BCRYPT_ROUNDS)).decode()
    tenants = []
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO service_codes (code, description) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (SERVICE_CODE, "Adaptive behavior treatment"),
        )
        for name in ("Home clinic", "Other clinic"):
            tenant = Tenant(uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), f"{uuid.uuid4().hex}@x.test")
            conn.execute(
                "INSERT INTO organizations (id, name) VALUES (%s, %s)",
                (tenant.organization_id, f"{name} {tenant.organization_id}"),
            )
            conn.execute(
                "INSERT INTO patients (id, organization_id, first_name, last_name, "
                "date_of_birth, member_id) VALUES (%s, %s, 'Pat', 'Ient', '2015-01-01', 'M1')",
                (tenant.patient_id, tenant.organization_id),
            )
            conn.execute(
                "INSERT INTO practitioners (id, organization_id, email, full_name, role, "
                "password_hash) VALUES (%s, %s, %s, 'Prac Titioner', 'bcba', %s)",
                (tenant.practitioner_id, tenant.organization_id, tenant.email, password_hash),
            )
            tenants.append(tenant)
    return Clinic(url=url, home=tenants[0], other=tenants[1])


def add_authorization(
    url: str,
    tenant: Tenant,
    *,
    total_units: int = 50,
    used_units: int = 0,
    scheduled_units: int = 0,
    status: str = "active",
    start_date: dt.date | None = None,
    end_date: dt.date | None = None,
) -> uuid.UUID:
    """Insert an authorization (valid around today unless dates are given); return its id."""
    today = dt.date.today()
    authorization_id = uuid.uuid4()
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO authorizations (id, organization_id, patient_id, service_code, "
            "total_units, used_units, scheduled_units, start_date, end_date, status) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                authorization_id,
                tenant.organization_id,
                tenant.patient_id,
                SERVICE_CODE,
                total_units,
                used_units,
                scheduled_units,
                start_date or today - dt.timedelta(days=30),
                end_date or today + dt.timedelta(days=30),
                status,
            ),
        )
    return authorization_id


def mint_token(
    tenant: Tenant,
    *,
    secret: str = DEFAULT_JWT_SECRET,
    ttl_s: int = 3600,
    drop: tuple[str, ...] = (),
    **claims: Any,
) -> str:
    """Sign a token for ``tenant`` the way the service does; override or drop claims."""
    now = int(time.time())
    payload: dict[str, Any] = {
        "sub": str(tenant.practitioner_id),
        "org": str(tenant.organization_id),
        "role": "bcba",
        "iat": now,
        "exp": now + ttl_s,
    } | claims
    for name in drop:
        payload.pop(name, None)
    return jwt.encode(payload, secret, algorithm="HS256")


def unsigned_token(tenant: Tenant) -> str:
    """Build an ``alg: none`` token, the classic forgery a verifier must refuse."""

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    now = int(time.time())
    claims = {
        "sub": str(tenant.practitioner_id),
        "org": str(tenant.organization_id),
        "role": "bcba",
        "iat": now,
        "exp": now + 3600,
    }
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def snapshot(url: str) -> tuple[Any, ...]:
    """Return every authorization's counters and the whole ledger, to compare before/after."""
    with psycopg.connect(url) as conn:
        authorizations = conn.execute(
            "SELECT id, total_units, used_units, scheduled_units, status, updated_at "
            "FROM authorizations ORDER BY id"
        ).fetchall()
        ledger = conn.execute("SELECT * FROM unit_transactions ORDER BY id").fetchall()
    return tuple(authorizations), tuple(ledger)


@dataclass(frozen=True)
class Counters:
    total_units: int
    used_units: int
    scheduled_units: int


def counters(url: str, authorization_id: uuid.UUID) -> Counters:
    """Return one authorization's counters."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT total_units, used_units, scheduled_units FROM authorizations WHERE id = %s",
            (authorization_id,),
        ).fetchone()
    assert row is not None
    return Counters(*row)


def ledger_units(url: str, authorization_id: uuid.UUID) -> dict[str, tuple[int, int]]:
    """Return {kind: (rows, units)} of one authorization's ledger."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT kind, count(*), coalesce(sum(units), 0) FROM unit_transactions "
            "WHERE authorization_id = %s GROUP BY kind",
            (authorization_id,),
        ).fetchall()
    return {kind: (count, int(units)) for kind, count, units in rows}


def client(base_url: str, connections: int = 100) -> httpx.AsyncClient:
    """Return an HTTP client that can hold ``connections`` requests in flight at once."""
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=CLIENT_TIMEOUT_S,
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
    )


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """Check that ``response`` is a problem document with this status and code."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"].endswith(code)
    assert body["title"]
    assert isinstance(body["detail"], str)
    return body


@dataclass(frozen=True)
class SeededStack:
    """A deterministically seeded database, its fixtures, and a service serving it."""

    database_url: str
    base_url: str
    fixtures_path: Path
    fixtures: dict[str, Any]


@contextmanager
def seeded_stack(
    pg_cluster: ClusterInfo, template: str, folder: Path, *, background: int = 5_000
) -> Iterator[SeededStack]:
    """Seed a module's own database as the pipeline does and serve it for the module."""
    with module_database(pg_cluster, template) as url:
        fixtures_path = folder / "test-data.json"
        seed_database(
            url, background=background, fixtures_path=fixtures_path, jwt_secret=DEFAULT_JWT_SECRET
        )
        with start_service(url) as service:
            yield SeededStack(
                url, service.base_url, fixtures_path, json.loads(fixtures_path.read_text())
            )
