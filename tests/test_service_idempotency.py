"""Idempotency-Key on reserve, release and consume, against a real server and PostgreSQL.

A repeat gets the first answer and changes nothing; another request under the same key, a
malformed key or a repeat in flight is refused; keys belong to one organization; and with
TARGET_IDEMPOTENCY=off the same repeat books twice (the control the exactly-once checks use).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

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
    mint_token,
)

from pipeline.service_process import ServiceProcess

SAFE_STRATEGIES = ("serializable", "for_update", "atomic")
KEY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
CONCURRENT_REPEATS = 20


@pytest.fixture(
    scope="module",
    name="service_options",
    params=[ServiceOptions(strategy, workers=2) for strategy in SAFE_STRATEGIES],
    ids=ServiceOptions.label,
)
def _service_options(request: pytest.FixtureRequest) -> ServiceOptions:
    return request.param


@pytest.fixture(scope="module", name="unenforced_service")
def _unenforced_service(serve: Services) -> ServiceProcess:
    return serve(ServiceOptions(env={"TARGET_IDEMPOTENCY": "off"}))


def keyed(token: str, key: str) -> dict[str, str]:
    return bearer(token) | {KEY_HEADER: key}


def ledger_rows_with_key(url: str, key: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM unit_transactions WHERE idempotency_key = %s", (key,)
        ).fetchone()
    assert row is not None
    return int(row[0])


def stored_keys(url: str, key: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM idempotency_keys WHERE key = %s", (key,)
        ).fetchone()
    assert row is not None
    return int(row[0])


async def test_a_repeat_gets_the_first_answer_and_changes_nothing(
    service: ServiceProcess, clinic: Clinic
) -> None:
    authorization_id = add_authorization(clinic.url, clinic.home, total_units=50)
    token, key = mint_token(clinic.home), uuid.uuid4().hex
    path = f"/api/authorizations/{authorization_id}/reserve"
    async with client(service.base_url) as http:
        first = await http.post(path, json={"units": 10}, headers=keyed(token, key))
        repeat = await http.post(path, json={"units": 10}, headers=keyed(token, key))
    assert first.status_code == 200, first.text
    assert REPLAYED_HEADER not in first.headers
    assert repeat.status_code == 200, repeat.text
    assert repeat.headers[REPLAYED_HEADER] == "true"
    assert repeat.json() == first.json()
    assert counters(clinic.url, authorization_id).scheduled_units == 10
    assert ledger_rows_with_key(clinic.url, key) == 1


async def test_a_quoted_key_is_the_same_key(service: ServiceProcess, clinic: Clinic) -> None:
    authorization_id = add_authorization(clinic.url, clinic.home)
    token, key = mint_token(clinic.home), uuid.uuid4().hex
    path = f"/api/authorizations/{authorization_id}/reserve"
    async with client(service.base_url) as http:
        await http.post(path, json={"units": 5}, headers=keyed(token, key))
        repeat = await http.post(path, json={"units": 5}, headers=keyed(token, f'"{key}"'))
    assert repeat.headers.get(REPLAYED_HEADER) == "true"
    assert counters(clinic.url, authorization_id).scheduled_units == 5


async def test_a_refusal_is_replayed_even_after_units_came_free(
    service: ServiceProcess, clinic: Clinic
) -> None:
    authorization_id = add_authorization(
        clinic.url, clinic.home, total_units=10, scheduled_units=10
    )
    token, key = mint_token(clinic.home), uuid.uuid4().hex
    path = f"/api/authorizations/{authorization_id}"
    async with client(service.base_url) as http:
        refused = await http.post(f"{path}/reserve", json={"units": 5}, headers=keyed(token, key))
        released = await http.post(f"{path}/release", json={"units": 10}, headers=bearer(token))
        repeat = await http.post(f"{path}/reserve", json={"units": 5}, headers=keyed(token, key))
    first_body = assert_problem(refused, 409, "insufficient_units")
    assert released.status_code == 200, released.text
    assert assert_problem(repeat, 409, "insufficient_units") == first_body
    assert repeat.headers[REPLAYED_HEADER] == "true"
    assert counters(clinic.url, authorization_id).scheduled_units == 0
    assert ledger_rows_with_key(clinic.url, key) == 0


@pytest.mark.parametrize(
    ("operation", "units", "other_authorization"),
    [("reserve", 7, False), ("release", 5, False), ("reserve", 5, True)],
)
async def test_the_same_key_for_another_request_is_refused(
    service: ServiceProcess, clinic: Clinic, operation: str, units: int, other_authorization: bool
) -> None:
    authorization_id = add_authorization(clinic.url, clinic.home)
    other_id = add_authorization(clinic.url, clinic.home)
    token, key = mint_token(clinic.home), uuid.uuid4().hex
    async with client(service.base_url) as http:
        first = await http.post(
            f"/api/authorizations/{authorization_id}/reserve",
            json={"units": 5},
            headers=keyed(token, key),
        )
        target = other_id if other_authorization else authorization_id
        reused = await http.post(
            f"/api/authorizations/{target}/{operation}",
            json={"units": units},
            headers=keyed(token, key),
        )
    assert first.status_code == 200, first.text
    assert_problem(reused, 422, "idempotency_key_reused")
    assert counters(clinic.url, authorization_id).scheduled_units == 5
    assert counters(clinic.url, other_id).scheduled_units == 0
    assert ledger_rows_with_key(clinic.url, key) == 1


@pytest.mark.parametrize("key", ["", "x" * 256, "naïve", "tab\there", '""'])
async def test_a_malformed_key_is_refused_and_changes_nothing(
    service: ServiceProcess, clinic: Clinic, key: str
) -> None:
    authorization_id = add_authorization(clinic.url, clinic.home)
    token = mint_token(clinic.home)
    async with client(service.base_url) as http:
        response = await http.post(
            f"/api/authorizations/{authorization_id}/reserve",
            json={"units": 5},
            headers=bearer(token) | {KEY_HEADER: key.encode("utf-8")},
        )
    assert_problem(response, 422, "invalid_idempotency_key")
    assert counters(clinic.url, authorization_id).scheduled_units == 0


async def test_the_longest_key_is_accepted(service: ServiceProcess, clinic: Clinic) -> None:
    authorization_id = add_authorization(clinic.url, clinic.home)
    key = uuid.uuid4().hex.ljust(255, "k")
    async with client(service.base_url) as http:
        response = await http.post(
            f"/api/authorizations/{authorization_id}/reserve",
            json={"units": 5},
            headers=keyed(mint_token(clinic.home), key),
        )
    assert response.status_code == 200, response.text
    assert ledger_rows_with_key(clinic.url, key) == 1


async def test_a_repeat_in_flight_is_told_to_retry(service: ServiceProcess, clinic: Clinic) -> None:
    """Hold the key's advisory lock as a first request in flight would; the repeat gets 409."""
    authorization_id = add_authorization(clinic.url, clinic.home)
    key = uuid.uuid4().hex
    with psycopg.connect(clinic.url) as holder:
        holder.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s::text || '/' || %s, 0))",
            (clinic.home.organization_id, key),
        )
        async with client(service.base_url) as http:
            response = await http.post(
                f"/api/authorizations/{authorization_id}/reserve",
                json={"units": 5},
                headers=keyed(mint_token(clinic.home), key),
            )
    body = assert_problem(response, 409, "idempotency_key_in_use")
    assert "retry" in body["detail"]
    assert response.headers["Retry-After"] == "1"
    assert counters(clinic.url, authorization_id).scheduled_units == 0
    assert stored_keys(clinic.url, key) == 0


async def test_concurrent_repeats_book_once(service: ServiceProcess, clinic: Clinic) -> None:
    authorization_id = add_authorization(clinic.url, clinic.home, total_units=1000)
    token, key = mint_token(clinic.home), uuid.uuid4().hex
    path = f"/api/authorizations/{authorization_id}/reserve"
    async with client(service.base_url, connections=CONCURRENT_REPEATS) as http:
        responses = await asyncio.gather(
            *(
                http.post(path, json={"units": 3}, headers=keyed(token, key))
                for _ in range(CONCURRENT_REPEATS)
            )
        )
    outcomes = Counter(
        (r.status_code, r.json().get("code")) if r.status_code != 200 else (200, None)
        for r in responses
    )
    assert set(outcomes) <= {(200, None), (409, "idempotency_key_in_use")}, outcomes
    transaction_ids = {r.json()["transaction_id"] for r in responses if r.status_code == 200}
    assert len(transaction_ids) == 1
    assert counters(clinic.url, authorization_id).scheduled_units == 3
    assert ledger_rows_with_key(clinic.url, key) == 1


async def test_keys_belong_to_one_organization(service: ServiceProcess, clinic: Clinic) -> None:
    home_id = add_authorization(clinic.url, clinic.home)
    other_id = add_authorization(clinic.url, clinic.other)
    key = uuid.uuid4().hex
    async with client(service.base_url) as http:
        home = await http.post(
            f"/api/authorizations/{home_id}/reserve",
            json={"units": 5},
            headers=keyed(mint_token(clinic.home), key),
        )
        other = await http.post(
            f"/api/authorizations/{other_id}/reserve",
            json={"units": 5},
            headers=keyed(mint_token(clinic.other), key),
        )
    assert home.status_code == other.status_code == 200
    assert REPLAYED_HEADER not in other.headers
    assert stored_keys(clinic.url, key) == 2


async def test_requests_without_a_key_store_none(service: ServiceProcess, clinic: Clinic) -> None:
    authorization_id = add_authorization(clinic.url, clinic.home)
    async with client(service.base_url) as http:
        for _ in range(2):
            response = await http.post(
                f"/api/authorizations/{authorization_id}/reserve",
                json={"units": 5},
                headers=bearer(mint_token(clinic.home)),
            )
            assert response.status_code == 200
    assert counters(clinic.url, authorization_id).scheduled_units == 10
    with psycopg.connect(clinic.url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM unit_transactions "
            "WHERE authorization_id = %s AND idempotency_key IS NOT NULL",
            (authorization_id,),
        ).fetchone()
    assert row == (0,)


async def test_with_idempotency_off_a_repeat_books_twice(
    unenforced_service: ServiceProcess, clinic: Clinic
) -> None:
    authorization_id = add_authorization(clinic.url, clinic.home)
    token, key = mint_token(clinic.home), uuid.uuid4().hex
    path = f"/api/authorizations/{authorization_id}/reserve"
    async with client(unenforced_service.base_url) as http:
        answers: list[httpx.Response] = [
            await http.post(path, json={"units": 5}, headers=keyed(token, key)) for _ in range(2)
        ]
    assert [answer.status_code for answer in answers] == [200, 200]
    assert answers[0].json()["transaction_id"] != answers[1].json()["transaction_id"]
    assert counters(clinic.url, authorization_id).scheduled_units == 10
    assert ledger_rows_with_key(clinic.url, key) == 2
    assert stored_keys(clinic.url, key) == 0
