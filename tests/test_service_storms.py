"""Storms: concurrent reserves, releases and consumes on one authorization, per strategy and shape.

Every answer must be a 200 or one of the refusals the strategy may give, and afterwards the
counters must equal the seeded ones plus the ledger, within the total and never negative. A
500, a lost update or an overbooking fails the strategy.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter

import httpx
import psycopg
import pytest
from support_service import (
    Clinic,
    ServiceOptions,
    add_authorization,
    bearer,
    client,
    mint_token,
)

from pipeline.service_process import ServiceProcess

STRATEGIES = ("serializable", "for_update", "atomic", "constraint")
SHAPES = ("interactive", "statement")
ROUNDS = 3
REQUESTS_PER_ROUND = 60
UNITS = 5
TOTAL_UNITS = 100
SEEDED_SCHEDULED = 50  # so that releases and consumes have units to settle from the start
OPERATIONS = ("reserve", "release", "consume")
REFUSALS = {"insufficient_units"}


@pytest.fixture(
    scope="module",
    name="service_options",
    params=[
        ServiceOptions(strategy, env={"TARGET_TRANSACTION_SHAPE": shape})
        for shape in SHAPES
        for strategy in STRATEGIES
    ],
    ids=ServiceOptions.label,
)
def _service_options(request: pytest.FixtureRequest) -> ServiceOptions:
    return request.param


async def storm(base_url: str, authorization_id: uuid.UUID, token: str, seed: int) -> Counter:
    """Send a shuffled mix of the three operations at once, half of them keyed."""
    rng = random.Random(seed)
    operations = [OPERATIONS[i % len(OPERATIONS)] for i in range(REQUESTS_PER_ROUND)]
    rng.shuffle(operations)

    async def send(http: httpx.AsyncClient, number: int, operation: str) -> httpx.Response:
        headers = bearer(token)
        if number % 2:
            headers["Idempotency-Key"] = uuid.uuid4().hex
        return await http.post(
            f"/api/authorizations/{authorization_id}/{operation}",
            json={"units": UNITS},
            headers=headers,
        )

    async with client(base_url, connections=REQUESTS_PER_ROUND) as http:
        responses = await asyncio.gather(
            *(send(http, number, operation) for number, operation in enumerate(operations))
        )
    return Counter(
        (
            response.status_code,
            response.json().get("code", "") if response.status_code != 200 else "",
        )
        for response in responses
    )


def books_balance(url: str, authorization_id: uuid.UUID) -> tuple[int, int, int, int]:
    """Return (used, scheduled) from the counters and the same two from seed plus ledger."""
    with psycopg.connect(url) as conn:
        used, scheduled = conn.execute(
            "SELECT used_units, scheduled_units FROM authorizations WHERE id = %s",
            (authorization_id,),
        ).fetchone()
        ledger_used, ledger_scheduled = conn.execute(
            "SELECT coalesce(sum(units) FILTER (WHERE kind = 'consume'), 0),"
            " coalesce(sum(CASE kind WHEN 'reserve' THEN units ELSE -units END), 0)"
            " FROM unit_transactions WHERE authorization_id = %s",
            (authorization_id,),
        ).fetchone()
    return used, scheduled, int(ledger_used), SEEDED_SCHEDULED + int(ledger_scheduled)


async def test_a_storm_of_mixed_changes_keeps_the_books(
    service: ServiceProcess, clinic: Clinic, service_options: ServiceOptions
) -> None:
    strategy = service_options.strategy
    authorization_id = add_authorization(
        clinic.url, clinic.home, total_units=TOTAL_UNITS, scheduled_units=SEEDED_SCHEDULED
    )
    token = mint_token(clinic.home)
    answers: Counter = Counter()
    for round_number in range(ROUNDS):
        answers += await storm(service.base_url, authorization_id, token, seed=round_number)

    allowed = {(200, "")} | {(409, code) for code in REFUSALS}
    if strategy == "serializable":
        allowed.add((409, "serialization_conflict"))
    assert set(answers) <= allowed, f"unexpected answers: {dict(answers)}"
    assert answers[(200, "")] > 0
    used, scheduled, ledger_used, ledger_scheduled = books_balance(clinic.url, authorization_id)
    assert (used, scheduled) == (ledger_used, ledger_scheduled), "counters and ledger disagree"
    assert scheduled >= 0
    assert used + scheduled <= TOTAL_UNITS
