"""The rest of the API over HTTP: health, tokens, metrics across workers, OpenAPI, logs, 500s."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid

import httpx
import jwt
import pytest
from quart import Quart
from support_service import (
    PASSWORD,
    Clinic,
    ServiceOptions,
    add_authorization,
    assert_problem,
    bearer,
    client,
    mint_token,
    snapshot,
)

from pipeline.service_process import ServiceProcess, ServiceStartError, start_service
from target.app import create_app
from target.openapi import openapi_document
from target.settings import DEFAULT_JWT_SECRET, Settings

WORKERS = 2
POOL_SIZE = 3
TOKEN_TTL_S = 900
LOG_FLUSH_WAIT_S = 3.0
METRIC_NAMES = (
    "http_requests_total",
    "http_request_duration_seconds_bucket",
    "db_serialization_retries_total",
    "db_serialization_conflicts_total",
    "db_pool_size",
    "db_pool_checked_out",
    "db_pool_waiting",
    "db_pool_timeouts_total",
    "service_event_loop_lag_seconds",
)
SPREAD_ROUNDS = 20
SPREAD_REQUESTS = 20
WAIT_FOR_WORKERS_S = 30.0
UNREACHABLE_URL = "postgresql://nobody@127.0.0.1:9/nowhere"


@pytest.fixture(scope="module", name="service_options")
def _service_options() -> ServiceOptions:
    env = {"TARGET_POOL_SIZE": str(POOL_SIZE), "TARGET_JWT_TTL_S": str(TOKEN_TTL_S)}
    return ServiceOptions(workers=WORKERS, env=env)


def metric_value(text: str, name: str, labels: dict[str, str] | None = None) -> float:
    """Sum the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        match = re.fullmatch(r"([a-zA-Z_:]+)(?:\{(.*)\})? (\S+)", line)
        if not match or match[1] != name:
            continue
        sample_labels = dict(re.findall(r'(\w+)="([^"]*)"', match[2] or ""))
        if all(sample_labels.get(key) == value for key, value in (labels or {}).items()):
            total += float(match[3])
    return total


# -- health --------------------------------------------------------------------------------
async def test_healthz_names_the_strategy_shape_and_isolation(service: ServiceProcess) -> None:
    async with client(service.base_url) as http:
        response = await http.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "concurrency": "serializable",
        "transaction_shape": "interactive",
        "isolation": "serializable",
    }


def test_start_service_reports_a_database_it_cannot_reach() -> None:
    with pytest.raises(ServiceStartError, match="503"):
        # Long enough for two interpreters to start on a busy machine; the 503 ends it.
        start_service(UNREACHABLE_URL, ready_timeout_s=8.0)


def test_start_service_refuses_an_unknown_strategy() -> None:
    with pytest.raises(ValueError, match="strategy"):
        start_service(UNREACHABLE_URL, strategy="optimistic")


# -- tokens --------------------------------------------------------------------------------
async def test_the_right_password_gets_a_working_token(
    service: ServiceProcess, clinic: Clinic
) -> None:
    authorization_id = add_authorization(clinic.url, clinic.home)
    async with client(service.base_url) as http:
        response = await http.post(
            "/api/auth/token", json={"email": clinic.home.email, "password": PASSWORD}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        fetched = await http.get(
            f"/api/authorizations/{authorization_id}", headers=bearer(body["access_token"])
        )
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == TOKEN_TTL_S
    claims = jwt.decode(body["access_token"], DEFAULT_JWT_SECRET, algorithms=["HS256"])
    assert claims["sub"] == str(clinic.home.practitioner_id)
    assert claims["org"] == str(clinic.home.organization_id)
    assert claims["role"] == "bcba"
    assert claims["exp"] - claims["iat"] == TOKEN_TTL_S
    assert fetched.status_code == 200
    assert fetched.json()["id"] == str(authorization_id)


@pytest.mark.parametrize(
    "credentials",
    [
        {"email": "home", "password": "wrong password"},
        {"email": "nobody@x.test", "password": PASSWORD},
        {"email": "home", "password": PASSWORD + " "},
    ],
    ids=["wrong-password", "unknown-email", "almost-right-password"],
)
async def test_wrong_credentials_are_401(
    service: ServiceProcess, clinic: Clinic, credentials: dict[str, str]
) -> None:
    if credentials["email"] == "home":
        credentials = credentials | {"email": clinic.home.email}
    before = snapshot(clinic.url)
    async with client(service.base_url) as http:
        response = await http.post("/api/auth/token", json=credentials)
    assert_problem(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert snapshot(clinic.url) == before


@pytest.mark.parametrize(
    "body",
    [b'{"email": "a@x.test"}', b'{"email": 5, "password": "x"}', b"[]", b"not json"],
    ids=["no-password", "email-not-string", "not-object", "not-json"],
)
async def test_malformed_token_requests_are_422(service: ServiceProcess, body: bytes) -> None:
    async with client(service.base_url) as http:
        response = await http.post("/api/auth/token", content=body)
    assert_problem(response, 422, "invalid_request")


# -- authorization shape -------------------------------------------------------------------
async def test_get_authorization_has_the_documented_shape(
    service: ServiceProcess, clinic: Clinic
) -> None:
    authorization_id = add_authorization(
        clinic.url, clinic.home, total_units=40, used_units=7, scheduled_units=3
    )
    async with client(service.base_url) as http:
        response = await http.get(
            f"/api/authorizations/{authorization_id}", headers=bearer(mint_token(clinic.home))
        )
    assert response.status_code == 200
    body = response.json()
    document = openapi_document(create_app(Settings(database_url=UNREACHABLE_URL)))
    required = document["components"]["schemas"]["Authorization"]["required"]
    assert set(body) == set(required)
    assert body["id"] == str(authorization_id)
    assert body["organization_id"] == str(clinic.home.organization_id)
    assert body["patient_id"] == str(clinic.home.patient_id)
    assert (body["total_units"], body["used_units"], body["scheduled_units"]) == (40, 7, 3)
    assert body["available_units"] == 30
    assert body["status"] == "active"
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", body["start_date"])


# -- metrics and logs ------------------------------------------------------------------------
async def wait_for_all_workers(http: httpx.AsyncClient) -> str:
    """Poll /metrics until every worker has reported its pool size; return the text."""
    deadline = time.monotonic() + WAIT_FOR_WORKERS_S
    while True:
        text = (await http.get("/metrics")).text
        if metric_value(text, "db_pool_size") == WORKERS * POOL_SIZE:
            return text
        if time.monotonic() > deadline:
            raise AssertionError(f"db_pool_size never reached {WORKERS * POOL_SIZE}:\n{text}")
        await asyncio.sleep(0.1)


def pids_that_answered(service: ServiceProcess, request_id_prefix: str) -> set[int]:
    pids = set()
    for line in service.log_path.read_text().splitlines():
        if line.startswith("{") and request_id_prefix in line:
            pids.add(json.loads(line)["pid"])
    return pids


async def test_metrics_add_up_across_workers(service: ServiceProcess, clinic: Clinic) -> None:
    route_labels = {"route": "/healthz", "method": "GET", "status": "200", "code": "ok"}
    prefix = f"spread-{uuid.uuid4().hex[:8]}"
    async with client(service.base_url) as http:
        before = await wait_for_all_workers(http)
    sent = 0
    for _ in range(SPREAD_ROUNDS):
        # A fresh client per round opens fresh connections, which either worker may accept.
        async with client(service.base_url) as http:
            responses = await asyncio.gather(
                *(
                    http.get("/healthz", headers={"X-Request-ID": f"{prefix}-{sent + n}"})
                    for n in range(SPREAD_REQUESTS)
                )
            )
        assert all(response.status_code == 200 for response in responses)
        sent += SPREAD_REQUESTS
        if len(pids_that_answered(service, prefix)) == WORKERS:
            break
    assert len(pids_that_answered(service, prefix)) == WORKERS
    async with client(service.base_url) as http:
        after = (await http.get("/metrics")).text
    for name in METRIC_NAMES:
        assert re.search(rf"^{name}[{{ ]", after, re.MULTILINE), name
    counted = metric_value(after, "http_requests_total", route_labels) - metric_value(
        before, "http_requests_total", route_labels
    )
    assert counted == sent
    duration_count = metric_value(
        after, "http_request_duration_seconds_count", {"route": "/healthz"}
    ) - metric_value(before, "http_request_duration_seconds_count", {"route": "/healthz"})
    assert duration_count == sent
    assert metric_value(after, "db_pool_size") == WORKERS * POOL_SIZE
    assert metric_value(after, "db_pool_checked_out") == 0
    assert metric_value(after, "db_pool_waiting") == 0


async def test_problem_codes_are_counted_by_route(service: ServiceProcess, clinic: Clinic) -> None:
    labels = {
        "route": "/api/authorizations/<authorization_id>/reserve",
        "method": "POST",
        "status": "404",
        "code": "not_found",
    }
    async with client(service.base_url) as http:
        before = metric_value((await http.get("/metrics")).text, "http_requests_total", labels)
        for _ in range(3):
            response = await http.post(
                f"/api/authorizations/{uuid.uuid4()}/reserve",
                json={"units": 1},
                headers=bearer(mint_token(clinic.home)),
            )
            assert response.status_code == 404
        after = metric_value((await http.get("/metrics")).text, "http_requests_total", labels)
    assert after - before == 3


async def test_every_request_logs_one_structured_line(
    service: ServiceProcess, clinic: Clinic
) -> None:
    request_id = f"log-{uuid.uuid4().hex}"
    authorization_id = add_authorization(clinic.url, clinic.home)
    async with client(service.base_url) as http:
        response = await http.post(
            f"/api/authorizations/{authorization_id}/reserve",
            json={"units": 999},
            headers=bearer(mint_token(clinic.home)) | {"X-Request-ID": request_id},
        )
    assert response.status_code == 409
    # The request log is buffered and reaches the log every 0.2 s.
    deadline = time.monotonic() + LOG_FLUSH_WAIT_S
    while True:
        lines = [line for line in service.log_path.read_text().splitlines() if request_id in line]
        if lines or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["method"] == "POST"
    assert entry["path"] == f"/api/authorizations/{authorization_id}/reserve"
    assert entry["status"] == 409
    assert entry["code"] == "insufficient_units"
    assert entry["retries"] == 0
    assert entry["duration_ms"] > 0


# -- OpenAPI -------------------------------------------------------------------------------
def app_routes(app: Quart) -> set[tuple[str, str]]:
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        routes |= {(path, method.lower()) for method in rule.methods - {"HEAD", "OPTIONS"}}
    return routes


async def test_openapi_documents_every_route(service: ServiceProcess) -> None:
    app = create_app(Settings(database_url=UNREACHABLE_URL))
    document = openapi_document(app)
    documented = {
        (path, method) for path, operations in document["paths"].items() for method in operations
    }
    assert app_routes(app) == documented
    async with client(service.base_url) as http:
        served = (await http.get("/openapi.json")).json()
    assert served == document
    assert served["openapi"].startswith("3.1")
    table = {"401", "404", "409", "413", "422", "503"}
    for operation in ("reserve", "release", "consume"):
        responses = served["paths"][f"/api/authorizations/{{authorization_id}}/{operation}"]
        assert table <= set(responses["post"]["responses"])


# -- 500 -----------------------------------------------------------------------------------
async def test_an_unexpected_error_is_a_500_problem_without_a_traceback() -> None:
    app = create_app(Settings(database_url=UNREACHABLE_URL))

    @app.get("/explode")
    async def explode() -> str:
        raise RuntimeError("secret internals: password=hunter2")

    async with app.test_app():
        response = await app.test_client().get("/explode")
        body = await response.get_json()
    assert response.status_code == 500
    assert response.content_type.startswith("application/problem+json")
    assert body["code"] == "internal_error"
    assert "hunter2" not in json.dumps(body)
    assert "Traceback" not in json.dumps(body)
