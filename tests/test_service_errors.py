"""Every row of the error table, over HTTP, each checking that the database did not change."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest
from support_service import (
    Clinic,
    ServiceOptions,
    Services,
    add_authorization,
    assert_problem,
    bearer,
    client,
    counters,
    ledger_units,
    mint_token,
    seed_clinic,
    snapshot,
    unsigned_token,
)

from local_postgres import ClusterInfo
from local_postgres.cluster import url_for
from pipeline.service_process import ServiceProcess, start_service

MAX_BODY_BYTES = 64 * 1024
OPERATIONS = ("reserve", "release", "consume")
WAIT_FOR_LOCK_S = 20.0
CONFLICT_ROUNDS = 5
CONFLICT_REQUESTS = 50


@pytest.fixture(scope="module", name="service_options")
def _service_options() -> ServiceOptions:
    return ServiceOptions("serializable")


@pytest.fixture(scope="module", name="authorization_id")
def _authorization_id(clinic: Clinic) -> uuid.UUID:
    """An active authorization with room to reserve, release and consume."""
    return add_authorization(clinic.url, clinic.home, total_units=50, scheduled_units=20)


# -- 401 -----------------------------------------------------------------------------------
def unauthorized_headers(clinic: Clinic) -> dict[str, dict[str, str]]:
    home = clinic.home
    stranger = type(home)(home.organization_id, home.patient_id, uuid.uuid4(), "x@x.test")
    return {
        "missing": {},
        "empty-bearer": {"Authorization": "Bearer"},
        "basic-scheme": {"Authorization": "Basic dXNlcjpwYXNz"},
        "malformed": bearer("not.a.jwt"),
        "bad-signature": bearer(
            mint_token(home, secret="someone-elses-secret-of-32-bytes-or-more")
        ),
        "expired": bearer(mint_token(home, ttl_s=-60)),
        "alg-none": bearer(unsigned_token(home)),
        "no-org": bearer(mint_token(home, drop=("org",))),
        "no-sub": bearer(mint_token(home, drop=("sub",))),
        "no-exp": bearer(mint_token(home, drop=("exp",))),
        "org-not-uuid": bearer(mint_token(home, org="clinic-1")),
        "sub-not-uuid": bearer(mint_token(home, sub="42")),
        "unknown-practitioner": bearer(mint_token(stranger)),
    }


UNAUTHORIZED_CASES = [
    "missing", "empty-bearer", "basic-scheme", "malformed", "bad-signature", "expired",
    "alg-none", "no-org", "no-sub", "no-exp", "org-not-uuid", "sub-not-uuid",
    "unknown-practitioner",
]  # fmt: skip


@pytest.mark.parametrize("case", UNAUTHORIZED_CASES)
@pytest.mark.parametrize("operation", OPERATIONS)
async def test_bad_tokens_are_401_and_change_nothing(
    service: ServiceProcess, clinic: Clinic, authorization_id: uuid.UUID, case: str, operation: str
) -> None:
    before = snapshot(clinic.url)
    async with client(service.base_url) as http:
        response = await http.post(
            f"/api/authorizations/{authorization_id}/{operation}",
            json={"units": 1},
            headers=unauthorized_headers(clinic)[case],
        )
    assert_problem(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert snapshot(clinic.url) == before


@pytest.mark.parametrize("case", [c for c in UNAUTHORIZED_CASES if c != "unknown-practitioner"])
async def test_bad_tokens_cannot_read_either(
    service: ServiceProcess, clinic: Clinic, authorization_id: uuid.UUID, case: str
) -> None:
    async with client(service.base_url) as http:
        response = await http.get(
            f"/api/authorizations/{authorization_id}", headers=unauthorized_headers(clinic)[case]
        )
    assert_problem(response, 401, "unauthorized")


# -- 404 -----------------------------------------------------------------------------------
async def test_unknown_malformed_and_foreign_ids_are_the_same_404(
    service: ServiceProcess, clinic: Clinic
) -> None:
    foreign_id = add_authorization(clinic.url, clinic.other, total_units=50, scheduled_units=20)
    token = mint_token(clinic.home)
    before = snapshot(clinic.url)
    bodies = []
    async with client(service.base_url) as http:
        for target in (uuid.uuid4(), "not-a-uuid", foreign_id):
            response = await http.get(f"/api/authorizations/{target}", headers=bearer(token))
            bodies.append(assert_problem(response, 404, "not_found"))
            for operation in OPERATIONS:
                response = await http.post(
                    f"/api/authorizations/{target}/{operation}",
                    json={"units": 1},
                    headers=bearer(token),
                )
                bodies.append(assert_problem(response, 404, "not_found"))
        # The owner still sees it: the 404 was about who asked, not about the row.
        owner = await http.get(
            f"/api/authorizations/{foreign_id}", headers=bearer(mint_token(clinic.other))
        )
    assert owner.status_code == 200
    assert all(body == bodies[0] for body in bodies)
    assert snapshot(clinic.url) == before


async def test_unknown_route_and_wrong_method_are_problems(service: ServiceProcess) -> None:
    async with client(service.base_url) as http:
        missing = await http.get("/nowhere")
        wrong_method = await http.delete(f"/api/authorizations/{uuid.uuid4()}/reserve")
    assert_problem(missing, 404, "not_found")
    assert_problem(wrong_method, 405, "method_not_allowed")
    assert "POST" in wrong_method.headers["Allow"]


# -- 422 -----------------------------------------------------------------------------------
INVALID_BODIES = {
    "bool": b'{"units": true}',
    "float-fraction": b'{"units": 1.5}',
    "float-whole": b'{"units": 1.0}',
    "exponent": b'{"units": 1e1}',
    "string": b'{"units": "5"}',
    "null": b'{"units": null}',
    "zero": b'{"units": 0}',
    "negative": b'{"units": -1}',
    "too-many": b'{"units": 1000001}',
    "missing": b'{"unit": 5}',
    "empty-object": b"{}",
    "array": b"[5]",
    "number": b"5",
    "json-null": b"null",
    "invalid-json": b"{units: 5}",
    "empty-body": b"",
    "not-utf8": b'{"units": "\xff"}',
}


@pytest.mark.parametrize("case", list(INVALID_BODIES))
@pytest.mark.parametrize("operation", OPERATIONS)
async def test_invalid_bodies_are_422_and_change_nothing(
    service: ServiceProcess, clinic: Clinic, authorization_id: uuid.UUID, case: str, operation: str
) -> None:
    before = snapshot(clinic.url)
    async with client(service.base_url) as http:
        response = await http.post(
            f"/api/authorizations/{authorization_id}/{operation}",
            content=INVALID_BODIES[case],
            headers=bearer(mint_token(clinic.home)) | {"Content-Type": "application/json"},
        )
    assert_problem(response, 422, "invalid_request")
    assert snapshot(clinic.url) == before


async def test_the_largest_valid_units_is_accepted(service: ServiceProcess, clinic: Clinic) -> None:
    authorization_id = add_authorization(clinic.url, clinic.home, total_units=1_000_000)
    async with client(service.base_url) as http:
        response = await http.post(
            f"/api/authorizations/{authorization_id}/reserve",
            json={"units": 1_000_000},
            headers=bearer(mint_token(clinic.home)),
        )
    assert response.status_code == 200, response.text
    assert response.json()["authorization"]["available_units"] == 0


# -- 413 -----------------------------------------------------------------------------------
def padded_body(size: int) -> bytes:
    """Return a valid reserve body, padded with whitespace to exactly ``size`` bytes."""
    body = b'{"units": 1}'
    return body[:-1] + b" " * (size - len(body)) + b"}"


async def test_a_body_of_exactly_64_kib_is_accepted(
    service: ServiceProcess, clinic: Clinic
) -> None:
    authorization_id = add_authorization(clinic.url, clinic.home, total_units=5)
    async with client(service.base_url) as http:
        response = await http.post(
            f"/api/authorizations/{authorization_id}/reserve",
            content=padded_body(MAX_BODY_BYTES),
            headers=bearer(mint_token(clinic.home)),
        )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_a_body_over_64_kib_is_413_and_changes_nothing(
    service: ServiceProcess, clinic: Clinic, authorization_id: uuid.UUID, chunked: bool
) -> None:
    body = padded_body(MAX_BODY_BYTES + 1)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 4096):
            yield body[start : start + 4096]

    before = snapshot(clinic.url)
    async with client(service.base_url) as http:
        response = await http.post(
            f"/api/authorizations/{authorization_id}/reserve",
            content=chunks() if chunked else body,
            headers=bearer(mint_token(clinic.home)),
        )
    assert_problem(response, 413, "payload_too_large")
    assert snapshot(clinic.url) == before


# -- 409 serialization_conflict --------------------------------------------------------------
@pytest.fixture(scope="module", name="no_retry_service")
def _no_retry_service(serve: Services) -> ServiceProcess:
    return serve(ServiceOptions("serializable", env={"TARGET_MAX_RETRIES": "0"}))


async def test_serialization_conflict_without_retries_is_409_and_changes_nothing(
    no_retry_service: ServiceProcess, clinic: Clinic
) -> None:
    authorization_id = add_authorization(clinic.url, clinic.home, total_units=1_000_000)
    headers = bearer(mint_token(clinic.home))
    successes = conflicts = 0
    async with client(no_retry_service.base_url, connections=CONFLICT_REQUESTS) as http:
        # Concurrent SERIALIZABLE updates of one row conflict; a few rounds make it certain.
        for _ in range(CONFLICT_ROUNDS):
            responses = await asyncio.gather(
                *(
                    http.post(
                        f"/api/authorizations/{authorization_id}/reserve",
                        json={"units": 1},
                        headers=headers,
                    )
                    for _ in range(CONFLICT_REQUESTS)
                )
            )
            for response in responses:
                if response.status_code == 200:
                    successes += 1
                else:
                    assert_problem(response, 409, "serialization_conflict")
                    conflicts += 1
            if conflicts:
                break
        metrics_text = (await http.get("/metrics")).text
    print(f"serialization_conflict: {conflicts} conflicts, {successes} successes")
    assert conflicts > 0
    # Every refused request left no trace: the ledger and the counter hold only the successes.
    assert ledger_units(clinic.url, authorization_id) == {"reserve": (successes, successes)}
    assert counters(clinic.url, authorization_id).scheduled_units == successes
    assert f"db_serialization_conflicts_total {float(conflicts)}" in metrics_text


# -- 503 -----------------------------------------------------------------------------------
@pytest.fixture(scope="module", name="one_connection_service")
def _one_connection_service(serve: Services) -> ServiceProcess:
    env = {"TARGET_POOL_SIZE": "1", "TARGET_POOL_TIMEOUT_S": "0.3"}
    return serve(ServiceOptions("for_update", env=env))


def wait_until_service_waits_for_a_lock(url: str) -> None:
    """Block until the service's only connection is waiting on a row lock."""
    deadline = time.monotonic() + WAIT_FOR_LOCK_S
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            waiting = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'clinic-target' "
                "AND wait_event_type = 'Lock'"
            ).fetchone()
            if waiting and waiting[0] > 0:
                return
            time.sleep(0.05)
    raise AssertionError("the service never blocked on the held row lock")


async def test_no_free_connection_within_the_pool_timeout_is_503_and_changes_nothing(
    one_connection_service: ServiceProcess, clinic: Clinic
) -> None:
    locked_id = add_authorization(clinic.url, clinic.home, total_units=50)
    other_id = add_authorization(clinic.url, clinic.home, total_units=50)
    headers = bearer(mint_token(clinic.home))
    before = snapshot(clinic.url)
    async with client(one_connection_service.base_url) as http:
        with psycopg.connect(clinic.url) as holder:
            holder.execute("SELECT 1 FROM authorizations WHERE id = %s FOR UPDATE", (locked_id,))
            # The pool's one connection now waits on our lock inside this reserve...
            blocked = asyncio.ensure_future(
                http.post(
                    f"/api/authorizations/{locked_id}/reserve", json={"units": 5}, headers=headers
                )
            )
            await asyncio.to_thread(wait_until_service_waits_for_a_lock, clinic.url)
            # ...so this one cannot get a connection and must give up, not hang.
            refused = await http.post(
                f"/api/authorizations/{other_id}/reserve", json={"units": 5}, headers=headers
            )
            assert_problem(refused, 503, "unavailable")
            assert snapshot(clinic.url) == before
            holder.rollback()
        assert (await blocked).status_code == 200
        metrics_text = (await http.get("/metrics")).text
    assert counters(clinic.url, other_id).scheduled_units == 0
    assert counters(clinic.url, locked_id).scheduled_units == 5
    assert "db_pool_timeouts_total 1.0" in metrics_text


@pytest.fixture(name="outage_service")
def _outage_service(database_url: str) -> Iterator[tuple[ServiceProcess, Clinic]]:
    clinic = seed_clinic(database_url)
    with start_service(database_url, strategy="serializable") as service:
        yield service, clinic


def set_database_reachable(database_url: str, pg_cluster: ClusterInfo, reachable: bool) -> None:
    """Refuse or allow new connections to the database, and end the open ones."""
    name = database_url.rsplit("/", 1)[1]
    with psycopg.connect(url_for(pg_cluster.port, "postgres"), autocommit=True) as conn:
        conn.execute(
            psycopg.sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS {}").format(
                psycopg.sql.Identifier(name), psycopg.sql.SQL("true" if reachable else "false")
            )
        )
        if not reachable:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )


async def test_an_unreachable_database_is_503_and_the_service_recovers(
    outage_service: tuple[ServiceProcess, Clinic], pg_cluster: ClusterInfo
) -> None:
    service, clinic = outage_service
    authorization_id = add_authorization(clinic.url, clinic.home, total_units=50)
    headers = bearer(mint_token(clinic.home))
    path = f"/api/authorizations/{authorization_id}"
    async with client(service.base_url) as http:
        # Warm the pool, so the outage also kills connections the service holds.
        assert (await http.post(f"{path}/reserve", json={"units": 5}, headers=headers)).is_success
        before = snapshot(clinic.url)
        set_database_reachable(clinic.url, pg_cluster, reachable=False)
        try:
            # Several rounds: the first meets dead pooled connections, later ones new refusals.
            for _ in range(3):
                assert_problem(await http.get("/healthz"), 503, "unavailable")
                response = await http.post(f"{path}/reserve", json={"units": 5}, headers=headers)
                assert_problem(response, 503, "unavailable")
                assert_problem(await http.get(path, headers=headers), 503, "unavailable")
        finally:
            set_database_reachable(clinic.url, pg_cluster, reachable=True)
        assert snapshot(clinic.url) == before
        health = await http.get("/healthz")
        assert health.status_code == 200, health.text
        assert (await http.post(f"{path}/reserve", json={"units": 5}, headers=headers)).is_success
    assert counters(clinic.url, authorization_id).scheduled_units == 10
