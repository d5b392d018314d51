"""Shared fixtures: one throwaway PostgreSQL cluster per test session, a fresh database per test."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from openapi_conformance import ResponseChecker, service_document
from support_service import Clinic, ServiceOptions, Services, module_database, seed_clinic

from local_postgres import ClusterInfo, LocalCluster, create_marked_database
from local_postgres.cluster import url_for
from pipeline.service_process import ServiceProcess
from target.migrate import upgrade

MIGRATED_TEMPLATE = "loadtest_migrated_template"


@pytest.fixture(scope="session", name="pg_cluster")
def _pg_cluster() -> Iterator[ClusterInfo]:
    """Start a cluster of the project's own in a temporary folder, whatever DATABASE_URL says."""
    cluster = LocalCluster(Path(tempfile.mkdtemp(prefix="loadtest-pg-")))
    info = cluster.up()
    yield info
    cluster.destroy()


@pytest.fixture(scope="session", name="migrated_template")
def _migrated_template(pg_cluster: ClusterInfo) -> str:
    """Create a migrated, empty database that fresh test databases are copied from."""
    create_marked_database(url_for(pg_cluster.port, "postgres"), MIGRATED_TEMPLATE)
    upgrade(url_for(pg_cluster.port, MIGRATED_TEMPLATE))
    return MIGRATED_TEMPLATE


@pytest.fixture(scope="module", name="clinic")
def _clinic(pg_cluster: ClusterInfo, migrated_template: str) -> Iterator[Clinic]:
    """A module's own migrated database with two organizations (the service tests' world)."""
    with module_database(pg_cluster, migrated_template) as url:
        yield seed_clinic(url)


@pytest.fixture(scope="module", name="serve")
def _serve(clinic: Clinic) -> Iterator[Services]:
    """Start services on the module's clinic: ``serve(options)``, one per settings, kept."""
    services = Services(clinic.url)
    yield services
    services.close()


@pytest.fixture(scope="module", name="service_options")
def _service_options() -> ServiceOptions:
    """The defaults; a module overrides this fixture (with ``params`` for several services)."""
    return ServiceOptions()


@pytest.fixture(scope="module", name="service")
def _service(serve: Services, service_options: ServiceOptions) -> Iterator[ServiceProcess]:
    """The module's service on its clinic, run with the module's ``service_options``."""
    yield serve(service_options)
    # Stopped when the options change, so a parametrized module runs one service at a time.
    serve.stop(service_options)


@pytest.fixture(name="database_url")
def _database_url(pg_cluster: ClusterInfo, migrated_template: str) -> Iterator[str]:
    """Give each test its own migrated, empty, marked database; drop it afterwards."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    admin_url = url_for(pg_cluster.port, "postgres")
    create_marked_database(admin_url, name, template=migrated_template)
    yield url_for(pg_cluster.port, name)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                psycopg.sql.Identifier(name)
            )
        )


@pytest.fixture(autouse=True, name="responses_match_the_openapi_document")
def _responses_match_the_openapi_document(
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[list[ResponseChecker]]:
    """Check every response an httpx client of the test gets against the service's document.

    Every httpx client in this suite talks to the service, so a status, body or header the
    document does not declare fails the test that received it.
    """
    checkers: list[ResponseChecker] = []

    def check(response: httpx.Response) -> None:
        if not checkers:
            checkers.append(ResponseChecker(service_document()))
        checkers[0].check(response)

    async_send, sync_send = httpx.AsyncClient.send, httpx.Client.send

    async def async_send_and_check(
        client: httpx.AsyncClient, request: httpx.Request, **kwargs: Any
    ) -> httpx.Response:
        response = await async_send(client, request, **kwargs)
        if not kwargs.get("stream"):
            check(response)
        return response

    def sync_send_and_check(
        client: httpx.Client, request: httpx.Request, **kwargs: Any
    ) -> httpx.Response:
        response = sync_send(client, request, **kwargs)
        if not kwargs.get("stream"):
            check(response)
        return response

    monkeypatch.setattr(httpx.AsyncClient, "send", async_send_and_check)
    monkeypatch.setattr(httpx.Client, "send", sync_send_and_check)
    yield checkers
    if checkers and checkers[0].failures:
        pytest.fail(
            "responses the OpenAPI document does not declare:\n" + "\n".join(checkers[0].failures)
        )
