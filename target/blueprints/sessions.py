"""Book therapy sessions against authorizations; cancel and complete them."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from quart import Blueprint, g, request
from quart.typing import ResponseReturnValue
from quart_schema import (
    document_headers,
    document_request,
    document_response,
    security_scheme_blueprint,
    tag_blueprint,
)

from target import models
from target.api_types import (
    BookingRequest,
    ReplayedHeaders,
    SessionResult,
    TherapySession,
    UnitChangeHeaders,
    json_response,
)
from target.blueprints.authorizations import authenticate, retry_count
from target.idempotency import HEADER as IDEMPOTENCY_KEY_HEADER
from target.idempotency import REPLAYED_HEADER, parse_key
from target.openapi import (
    BEARER_SECURITY,
    BOOKING_CONFLICT_RESPONSE,
    INVALID_BOOKING_RESPONSE,
    METHOD_RESPONSE,
    SESSION_CHANGE_CONFLICT_RESPONSE,
    SESSION_NOT_FOUND_RESPONSE,
    TOO_LARGE_RESPONSE,
    UNAUTHORIZED_RESPONSE,
    UNAVAILABLE_RESPONSE,
    problems,
)
from target.payloads import parse_authorization_id, read_booking
from target.scheduling import CANCELLED, COMPLETED, Booking, SessionOutcome, StatusChange
from target.session_changes import book_session, change_session_status
from target.state import current_database, current_settings

blueprint = Blueprint("sessions", __name__, url_prefix="/api/sessions")
tag_blueprint(blueprint, ["sessions"])
security_scheme_blueprint(blueprint, BEARER_SECURITY)

Handler = TypeVar("Handler", bound=Callable[..., Any])


def documented_status_change(handler: Handler) -> Handler:
    """Document a cancel or complete route (both answer alike)."""
    for document in (
        document_headers(UnitChangeHeaders),
        document_response(SessionResult, 200, ReplayedHeaders),
        problems(
            UNAUTHORIZED_RESPONSE,
            SESSION_NOT_FOUND_RESPONSE,
            METHOD_RESPONSE,
            SESSION_CHANGE_CONFLICT_RESPONSE,
            UNAVAILABLE_RESPONSE,
        ),
    ):
        handler = document(handler)
    return handler


@blueprint.post("")
@document_request(BookingRequest)
@document_headers(UnitChangeHeaders)
@document_response(SessionResult, 200, ReplayedHeaders)
@problems(
    UNAUTHORIZED_RESPONSE,
    SESSION_NOT_FOUND_RESPONSE,
    METHOD_RESPONSE,
    BOOKING_CONFLICT_RESPONSE,
    TOO_LARGE_RESPONSE,
    INVALID_BOOKING_RESPONSE,
    UNAVAILABLE_RESPONSE,
)
async def book_therapy_session() -> ResponseReturnValue:
    """Book a session for the authorization's patient with the calling practitioner.

    Refused with 409 when the practitioner or the patient has a booked or completed session
    overlapping the slot, or when the authorization's sessions would hold more units than
    its total minus its used units. The rules span rows: which strategy keeps them is the
    service's TARGET_CONCURRENCY.
    """
    principal = authenticate()
    idempotency_key = parse_key(request.headers.get(IDEMPOTENCY_KEY_HEADER))
    body = await read_booking(current_settings().max_body_bytes)
    booking = Booking(
        authorization_id=body.authorization_id,
        organization_id=principal.organization_id,
        practitioner_id=principal.practitioner_id,
        starts_at=body.starts_at,
        ends_at=body.starts_at + dt.timedelta(minutes=body.duration_minutes),
        units=body.units,
        request_id=g.request_id,
        session_id=uuid.uuid4(),
        idempotency_key=idempotency_key,
    )
    outcome = await book_session(current_database(), booking, retry_count())
    return session_response(outcome)


@blueprint.post("/<session_id>/cancel")
@documented_status_change
async def cancel_therapy_session(session_id: str) -> ResponseReturnValue:
    """Cancel a booked session: its slot and its units are free again."""
    return await change_status(session_id, CANCELLED)


@blueprint.post("/<session_id>/complete")
@documented_status_change
async def complete_therapy_session(session_id: str) -> ResponseReturnValue:
    """Record a booked session as delivered: it keeps its slot and its units."""
    return await change_status(session_id, COMPLETED)


async def change_status(raw_session_id: str, status: str) -> ResponseReturnValue:
    """Check the caller, then move one of its organization's sessions to ``status``."""
    principal = authenticate()
    change = StatusChange(
        session_id=parse_authorization_id(raw_session_id),
        organization_id=principal.organization_id,
        status=status,
        request_id=g.request_id,
        idempotency_key=parse_key(request.headers.get(IDEMPOTENCY_KEY_HEADER)),
    )
    outcome = await change_session_status(current_database(), change, retry_count())
    return session_response(outcome)


def session_response(outcome: SessionOutcome) -> ResponseReturnValue:
    """Render a session as the API's answer."""
    row: models.TherapySession = outcome.session
    body = SessionResult(
        transaction_id=row.id,
        session=TherapySession(
            id=row.id,
            organization_id=row.organization_id,
            authorization_id=row.authorization_id,
            practitioner_id=row.practitioner_id,
            patient_id=row.patient_id,
            starts_at=row.starts_at,
            ends_at=row.ends_at,
            units=row.units,
            status=row.status,  # type: ignore[arg-type]
        ),
    )
    return json_response(body, headers={REPLAYED_HEADER: "true"} if outcome.replayed else None)
