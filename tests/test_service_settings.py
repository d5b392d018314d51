"""Service settings read from the environment: test switches and their bad values."""

from __future__ import annotations

import time

import pytest
from support_service import (
    Clinic,
    ServiceOptions,
    Services,
    add_authorization,
    bearer,
    client,
    mint_token,
)

from pipeline.service_process import ServiceProcess
from target.settings import Settings

EXTRA_LATENCY_MS = 300
STALL_MS = 600
URL = "postgresql://nobody@127.0.0.1:1/none"


@pytest.mark.parametrize(
    ("raw", "expected"), [("", True), ("on", True), ("OFF", False), ("0", False), ("true", True)]
)
def test_idempotency_switch(raw: str, expected: bool) -> None:
    settings = Settings.from_env({"DATABASE_URL": URL, "TARGET_IDEMPOTENCY": raw})
    assert settings.idempotency is expected


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("TARGET_IDEMPOTENCY", "maybe", "TARGET_IDEMPOTENCY must be on or off"),
        ("TARGET_EXTRA_LATENCY_MS", "-1", "TARGET_EXTRA_LATENCY_MS must be at least 0"),
        ("TARGET_EXTRA_LATENCY_MS", "5ms", "TARGET_EXTRA_LATENCY_MS must be an integer"),
    ],
)
def test_a_bad_setting_is_one_clear_error(name: str, raw: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Settings.from_env({"DATABASE_URL": URL, name: raw})


@pytest.fixture(scope="module", name="slowed_service")
def _slowed_service(serve: Services) -> ServiceProcess:
    return serve(ServiceOptions(env={"TARGET_EXTRA_LATENCY_MS": str(EXTRA_LATENCY_MS)}))


async def test_extra_latency_slows_every_change_by_at_least_that(
    slowed_service: ServiceProcess, clinic: Clinic
) -> None:
    authorization_id = add_authorization(clinic.url, clinic.home)
    async with client(slowed_service.base_url) as http:
        for operation in ("reserve", "consume"):
            started = time.perf_counter()
            response = await http.post(
                f"/api/authorizations/{authorization_id}/{operation}",
                json={"units": 5},
                headers=bearer(mint_token(clinic.home)),
            )
            elapsed_ms = (time.perf_counter() - started) * 1000
            assert response.status_code == 200, response.text
            assert elapsed_ms >= EXTRA_LATENCY_MS


@pytest.fixture(scope="module", name="stalling_service")
def _stalling_service(serve: Services) -> ServiceProcess:
    env = {"TARGET_STALL_MS": str(STALL_MS), "TARGET_STALL_AFTER_CHANGES": "3"}
    return serve(ServiceOptions(env=env))


async def test_a_stall_holds_the_changes_of_one_window_once(
    stalling_service: ServiceProcess, clinic: Clinic
) -> None:
    authorization_id = add_authorization(clinic.url, clinic.home, total_units=1000)
    elapsed_ms = []
    async with client(stalling_service.base_url) as http:
        for _ in range(5):
            started = time.perf_counter()
            response = await http.post(
                f"/api/authorizations/{authorization_id}/reserve",
                json={"units": 1},
                headers=bearer(mint_token(clinic.home)),
            )
            elapsed_ms.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, response.text
    stalled = [index for index, ms in enumerate(elapsed_ms) if ms >= STALL_MS]
    assert stalled == [2], elapsed_ms
