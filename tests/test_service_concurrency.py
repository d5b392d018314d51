"""Concurrency strategies against a real Hypercorn server and PostgreSQL: no overbooking.

Each safe strategy gets one two-worker server for the module; the unsafe control gets its
own with a delay between read and write, and the test asserts the damage it does.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter
from typing import Any

import httpx
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
    snapshot,
)

from pipeline.service_process import ServiceProcess

SAFE_STRATEGIES = ("serializable", "for_update", "atomic")
CONCURRENT_REQUESTS = 50
UNITS_PER_REQUEST = 10
TOTAL_UNITS = 50
EXPECTED_SUCCESSES = TOTAL_UNITS // UNITS_PER_REQUEST
# Long enough that concurrent unsafe requests all read before any writes.
UNSAFE_DELAY_MS = 100
WORKERS = 2


@pytest.fixture(
    scope="module",
    name="service_options",
    params=[ServiceOptions(strategy, WORKERS) for strategy in SAFE_STRATEGIES],
    ids=ServiceOptions.label,
)
def _service_options(request: pytest.FixtureRequest) -> ServiceOptions:
    return request.param


@pytest.fixture(name="strategy")
def _strategy(service_options: ServiceOptions) -> str:
    return str(service_options.strategy)


async def reserve_all_at_once(
    base_url: str, path: str, token: str, requests: int, units: int
) -> list[httpx.Response]:
    """Fire ``requests`` reserves together, each on its own connection."""
    async with client(base_url, connections=requests) as http:
        return await asyncio.gather(
            *(
                http.post(path, json={"units": units}, headers=bearer(token))
                for _ in range(requests)
            )
        )


def ledger_ids(url: str, authorization_id: Any) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT id FROM unit_transactions WHERE authorization_id = %s", (authorization_id,)
        ).fetchall()
    return {str(row[0]) for row in rows}


async def test_concurrent_reserves_never_overbook(
    service: ServiceProcess, strategy: str, clinic: Clinic
) -> None:
    authorization_id = add_authorization(clinic.url, clinic.home, total_units=TOTAL_UNITS)
    responses = await reserve_all_at_once(
        service.base_url,
        f"/api/authorizations/{authorization_id}/reserve",
        mint_token(clinic.home),
        CONCURRENT_REQUESTS,
        UNITS_PER_REQUEST,
    )

    statuses = Counter(response.status_code for response in responses)
    codes = Counter(
        response.json()["code"] for response in responses if response.status_code == 409
    )
    print(f"{strategy}: statuses {dict(statuses)}, 409 codes {dict(codes)}")
    assert statuses == {200: EXPECTED_SUCCESSES, 409: CONCURRENT_REQUESTS - EXPECTED_SUCCESSES}
    allowed = {"insufficient_units"} | (
        {"serialization_conflict"} if strategy == "serializable" else set()
    )
    assert set(codes) <= allowed
    successes = [response.json() for response in responses if response.status_code == 200]
    # Each success saw its own update: the scheduled totals climb 10, 20, ... 50.
    assert sorted(body["authorization"]["scheduled_units"] for body in successes) == list(
        range(UNITS_PER_REQUEST, TOTAL_UNITS + 1, UNITS_PER_REQUEST)
    )
    assert {body["transaction_id"] for body in successes} == ledger_ids(
        clinic.url, authorization_id
    )
    after = counters(clinic.url, authorization_id)
    assert (after.used_units, after.scheduled_units) == (0, TOTAL_UNITS)
    assert ledger_units(clinic.url, authorization_id) == {
        "reserve": (EXPECTED_SUCCESSES, EXPECTED_SUCCESSES * UNITS_PER_REQUEST)
    }


async def test_reserve_release_consume_move_counters_and_write_the_ledger(
    service: ServiceProcess, clinic: Clinic
) -> None:
    authorization_id = add_authorization(clinic.url, clinic.home, total_units=TOTAL_UNITS)
    path = f"/api/authorizations/{authorization_id}"
    headers = bearer(mint_token(clinic.home))
    steps = [("reserve", 20, 0, 20), ("release", 5, 0, 15), ("consume", 10, 10, 5)]
    async with client(service.base_url) as http:
        for number, (operation, units, used, scheduled) in enumerate(steps):
            request_id = f"test-{operation}-{number}"
            response = await http.post(
                f"{path}/{operation}",
                json={"units": units},
                headers=headers | {"X-Request-ID": request_id},
            )
            assert response.status_code == 200, response.text
            assert response.headers["X-Request-ID"] == request_id
            body = response.json()
            authorization = body["authorization"]
            assert (authorization["used_units"], authorization["scheduled_units"]) == (
                used,
                scheduled,
            )
            assert authorization["available_units"] == TOTAL_UNITS - used - scheduled
            with psycopg.connect(clinic.url) as conn:
                row = conn.execute(
                    "SELECT authorization_id, organization_id, practitioner_id, kind, units, "
                    "request_id FROM unit_transactions WHERE id = %s",
                    (body["transaction_id"],),
                ).fetchone()
            assert row == (
                authorization_id,
                clinic.home.organization_id,
                clinic.home.practitioner_id,
                operation,
                units,
                request_id,
            )
        fetched = await http.get(path, headers=headers)
    assert fetched.status_code == 200
    assert fetched.json() == authorization
    assert ledger_units(clinic.url, authorization_id) == {
        "reserve": (1, 20),
        "release": (1, 5),
        "consume": (1, 10),
    }


@pytest.mark.parametrize(
    ("operation", "units", "scheduled"),
    [("reserve", 31, 20), ("release", 21, 20), ("consume", 21, 20)],
)
async def test_not_enough_units_is_409_and_changes_nothing(
    service: ServiceProcess, clinic: Clinic, operation: str, units: int, scheduled: int
) -> None:
    authorization_id = add_authorization(
        clinic.url, clinic.home, total_units=TOTAL_UNITS, scheduled_units=scheduled
    )
    before = snapshot(clinic.url)
    async with client(service.base_url) as http:
        response = await http.post(
            f"/api/authorizations/{authorization_id}/{operation}",
            json={"units": units},
            headers=bearer(mint_token(clinic.home)),
        )
    assert_problem(response, 409, "insufficient_units")
    assert snapshot(clinic.url) == before


YESTERDAY = dt.date.today() - dt.timedelta(days=1)
TOMORROW = dt.date.today() + dt.timedelta(days=1)


@pytest.mark.parametrize(
    ("operation", "status", "dates"),
    [
        ("reserve", "suspended", None),
        ("release", "suspended", None),
        ("consume", "closed", None),
        ("reserve", "closed", None),
        ("reserve", "active", (YESTERDAY - dt.timedelta(days=30), YESTERDAY)),
        ("reserve", "active", (TOMORROW, TOMORROW + dt.timedelta(days=30))),
    ],
    ids=["reserve-suspended", "release-suspended", "consume-closed", "reserve-closed",
         "reserve-expired", "reserve-not-yet-valid"],
)  # fmt: skip
async def test_inactive_authorization_is_409_and_changes_nothing(
    service: ServiceProcess,
    clinic: Clinic,
    operation: str,
    status: str,
    dates: tuple[dt.date, dt.date] | None,
) -> None:
    start, end = dates or (None, None)
    authorization_id = add_authorization(
        clinic.url,
        clinic.home,
        total_units=TOTAL_UNITS,
        scheduled_units=10,
        status=status,
        start_date=start,
        end_date=end,
    )
    before = snapshot(clinic.url)
    async with client(service.base_url) as http:
        response = await http.post(
            f"/api/authorizations/{authorization_id}/{operation}",
            json={"units": 5},
            headers=bearer(mint_token(clinic.home)),
        )
    assert_problem(response, 409, "authorization_inactive")
    assert snapshot(clinic.url) == before


async def test_release_and_consume_are_allowed_outside_the_date_range(
    service: ServiceProcess, clinic: Clinic
) -> None:
    authorization_id = add_authorization(
        clinic.url,
        clinic.home,
        scheduled_units=10,
        start_date=YESTERDAY - dt.timedelta(days=30),
        end_date=YESTERDAY,
    )
    async with client(service.base_url) as http:
        for operation in ("release", "consume"):
            response = await http.post(
                f"/api/authorizations/{authorization_id}/{operation}",
                json={"units": 5},
                headers=bearer(mint_token(clinic.home)),
            )
            assert response.status_code == 200, response.text
    after = counters(clinic.url, authorization_id)
    assert (after.used_units, after.scheduled_units) == (5, 0)


# -- the unsafe control ----------------------------------------------------------------------
@pytest.fixture(scope="module", name="unsafe_service")
def _unsafe_service(serve: Services) -> ServiceProcess:
    return serve(ServiceOptions("unsafe", env={"TARGET_UNSAFE_DELAY_MS": str(UNSAFE_DELAY_MS)}))


async def test_unsafe_strategy_overbooks(unsafe_service: ServiceProcess, clinic: Clinic) -> None:
    authorization_id = add_authorization(clinic.url, clinic.home, total_units=TOTAL_UNITS)
    responses = await reserve_all_at_once(
        unsafe_service.base_url,
        f"/api/authorizations/{authorization_id}/reserve",
        mint_token(clinic.home),
        CONCURRENT_REQUESTS,
        UNITS_PER_REQUEST,
    )
    successes = sum(1 for response in responses if response.status_code == 200)
    reserved_rows, reserved_units = ledger_units(clinic.url, authorization_id)["reserve"]
    after = counters(clinic.url, authorization_id)
    print(
        f"unsafe: {successes} successes, ledger {reserved_units} units in {reserved_rows} rows, "
        f"counter scheduled {after.scheduled_units} of {TOTAL_UNITS}"
    )
    # The damage the integrity checks must catch: more granted than authorized...
    assert successes > EXPECTED_SUCCESSES
    assert reserved_units > TOTAL_UNITS
    # ...and a counter that no longer matches its ledger (lost updates).
    assert after.scheduled_units != reserved_units


async def test_unsafe_strategy_says_so_in_healthz(unsafe_service: ServiceProcess) -> None:
    async with client(unsafe_service.base_url) as http:
        response = await http.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["concurrency"] == "unsafe"
    assert "overbook" in body["warning"]
    assert "overbook" in unsafe_service.log_tail(200).lower()
