"""Session scheduling against a real Hypercorn server and PostgreSQL: rules that span rows.

The answers (practitioner_busy, patient_busy, insufficient_units, session_not_booked), and
under concurrency: one booking per slot under SERIALIZABLE, for_update and constraint; more
than one, a write skew, under REPEATABLE READ with the same code and no planted delay.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import uuid
from collections import Counter

import httpx
import psycopg
import pytest
from support_service import (
    Clinic,
    ServiceOptions,
    Services,
    Tenant,
    add_authorization,
    assert_problem,
    bearer,
    client,
    mint_token,
)

from pipeline.service_process import ServiceProcess

FIRST_SLOT = dt.datetime(2027, 1, 4, 9, 0, tzinfo=dt.UTC)
# Each concurrent test books days of its own: the module's practitioner keeps earlier sessions.
_FREE_DAYS = itertools.count(30)
CONCURRENT_BOOKINGS = 24
SLOTS_TRIED = 4


def add_practitioner(url: str, tenant: Tenant) -> Tenant:
    """Add a second practitioner to ``tenant``'s organization; return them as a tenant."""
    practitioner_id = uuid.uuid4()
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO practitioners (id, organization_id, email, full_name, role, "
            "password_hash) VALUES (%s, %s, %s, 'Second One', 'bcba', 'x')",
            (practitioner_id, tenant.organization_id, f"{practitioner_id.hex}@x.test"),
        )
    return Tenant(tenant.organization_id, tenant.patient_id, practitioner_id, "")


def booking(authorization_id: uuid.UUID, starts_at: dt.datetime, units: int = 4) -> dict:
    return {
        "authorization_id": str(authorization_id),
        "starts_at": starts_at.isoformat(),
        "duration_minutes": 60,
        "units": units,
    }


async def book(
    http: httpx.AsyncClient, token: str, body: dict, key: str | None = None
) -> httpx.Response:
    headers = bearer(token) | ({"Idempotency-Key": key} if key else {})
    return await http.post("/api/sessions", json=body, headers=headers)


async def test_bookings_keep_the_rules_and_say_which_one_refused(
    service: ServiceProcess, clinic: Clinic
) -> None:
    authorization_id = add_authorization(clinic.url, clinic.home, total_units=10)
    colleague = add_practitioner(clinic.url, clinic.home)
    token, colleague_token = mint_token(clinic.home), mint_token(colleague)
    slot = FIRST_SLOT
    async with client(service.base_url) as http:
        first = await book(http, token, booking(authorization_id, slot))
        assert first.status_code == 200, first.text
        session = first.json()["session"]
        assert session["status"] == "booked"
        assert session["patient_id"] == str(clinic.home.patient_id)
        # Half an hour later overlaps the same practitioner, and (for a colleague) the patient.
        later = slot + dt.timedelta(minutes=30)
        assert_problem(
            await book(http, token, booking(authorization_id, later)), 409, "practitioner_busy"
        )
        assert_problem(
            await book(http, colleague_token, booking(authorization_id, later)), 409, "patient_busy"
        )
        # Back to back does not overlap; the units then run out (4 + 4 + 4 > 10).
        next_hour = slot + dt.timedelta(hours=1)
        assert (await book(http, token, booking(authorization_id, next_hour))).status_code == 200
        assert_problem(
            await book(http, token, booking(authorization_id, slot + dt.timedelta(hours=3))),
            409,
            "insufficient_units",
        )
        # Cancelling frees the slot and the units; a cancelled session cannot be completed.
        cancelled = await http.post(f"/api/sessions/{session['id']}/cancel", headers=bearer(token))
        assert cancelled.json()["session"]["status"] == "cancelled"
        assert_problem(
            await http.post(f"/api/sessions/{session['id']}/complete", headers=bearer(token)),
            409,
            "session_not_booked",
        )
        assert (
            await book(http, colleague_token, booking(authorization_id, slot))
        ).status_code == 200
        # Another organization sees nothing.
        assert_problem(
            await book(http, mint_token(clinic.other), booking(authorization_id, FIRST_SLOT)),
            404,
            "not_found",
        )


async def test_a_repeated_key_gets_the_first_booking_and_a_bad_body_changes_nothing(
    service: ServiceProcess, clinic: Clinic
) -> None:
    authorization_id = add_authorization(clinic.url, clinic.home, total_units=10)
    token = mint_token(clinic.home)
    body = booking(authorization_id, FIRST_SLOT + dt.timedelta(days=7))
    async with client(service.base_url) as http:
        first = await book(http, token, body, key="book-once")
        again = await book(http, token, body, key="book-once")
        assert again.status_code == 200
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.json()["transaction_id"] == first.json()["transaction_id"]
        assert_problem(
            await book(http, token, {**body, "units": 5}, key="book-once"),
            422,
            "idempotency_key_reused",
        )
        for bad in ({**body, "starts_at": "2027-01-04T09:00:00"}, {**body, "duration_minutes": 5}):
            assert_problem(await book(http, token, bad), 422, "invalid_request")
    with psycopg.connect(clinic.url) as conn:
        (rows,) = conn.execute(
            "SELECT count(*) FROM therapy_sessions WHERE authorization_id = %s",
            (authorization_id,),
        ).fetchone()
    assert rows == 1


async def book_one_slot_at_once(
    base_url: str, clinic: Clinic, slot: dt.datetime
) -> Counter[tuple[int, str]]:
    """Fire many bookings of one practitioner's slot together; count the answers."""
    authorization_id = add_authorization(clinic.url, clinic.home, total_units=1000)
    token = mint_token(clinic.home)
    async with client(base_url, connections=CONCURRENT_BOOKINGS) as http:
        responses = await asyncio.gather(
            *(
                book(http, token, booking(authorization_id, slot + dt.timedelta(minutes=i % 3)))
                for i in range(CONCURRENT_BOOKINGS)
            )
        )
    return Counter(
        (r.status_code, "" if r.status_code == 200 else r.json()["code"]) for r in responses
    )


@pytest.mark.parametrize(
    ("strategy", "isolation"),
    [
        ("serializable", "serializable"),
        ("for_update", ""),
        ("constraint", ""),
    ],
)
async def test_concurrent_bookings_of_one_slot_book_it_once(
    serve: Services, clinic: Clinic, strategy: str, isolation: str
) -> None:
    environment = {"TARGET_ISOLATION": isolation} if isolation else {}
    service = serve(ServiceOptions(strategy, workers=2, env=environment))
    for _ in range(SLOTS_TRIED):
        slot = FIRST_SLOT + dt.timedelta(days=next(_FREE_DAYS))
        answers = await book_one_slot_at_once(service.base_url, clinic, slot)
        assert answers[(200, "")] == 1, f"{strategy}: {dict(answers)}"
        assert set(answers) <= {
            (200, ""),
            (409, "practitioner_busy"),
            (409, "serialization_conflict"),
        }


async def test_repeatable_read_lets_two_bookings_of_one_slot_through(
    serve: Services, clinic: Clinic
) -> None:
    service = serve(ServiceOptions(workers=2, env={"TARGET_ISOLATION": "repeatable_read"}))
    booked = []
    for _ in range(SLOTS_TRIED):
        slot = FIRST_SLOT + dt.timedelta(days=next(_FREE_DAYS))
        answers = await book_one_slot_at_once(service.base_url, clinic, slot)
        booked.append(answers[(200, "")])
    # Snapshot isolation: each booking saw no overlap in its snapshot, and both inserted.
    assert max(booked) > 1, f"bookings per slot: {booked}"
