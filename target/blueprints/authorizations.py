"""GET an authorization; reserve, release or consume its units."""

from __future__ import annotations

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

from target.api_types import (
    Authorization,
    ReadHeaders,
    ReplayedHeaders,
    UnitChangeHeaders,
    UnitChangeResult,
    UnitsRequest,
    json_response,
)
from target.auth import Principal, principal_from_header
from target.idempotency import HEADER as IDEMPOTENCY_KEY_HEADER
from target.idempotency import REPLAYED_HEADER, parse_key
from target.openapi import (
    BEARER_SECURITY,
    INVALID_UNITS_RESPONSE,
    METHOD_RESPONSE,
    NOT_FOUND_RESPONSE,
    READ_CONFLICT_RESPONSE,
    TOO_LARGE_RESPONSE,
    UNAUTHORIZED_RESPONSE,
    UNAVAILABLE_RESPONSE,
    UNIT_CHANGE_CONFLICT_RESPONSE,
    problems,
)
from target.operations import AuthorizationRecord, Operation, UnitChange
from target.payloads import parse_authorization_id, read_units
from target.reservations import RetryCount, change_units, read_authorization
from target.state import current_database, current_settings

blueprint = Blueprint("authorizations", __name__, url_prefix="/api/authorizations")
tag_blueprint(blueprint, ["authorizations"])
security_scheme_blueprint(blueprint, BEARER_SECURITY)

Handler = TypeVar("Handler", bound=Callable[..., Any])


def documented_unit_change(handler: Handler) -> Handler:
    """Document a reserve, release or consume route (all three answer alike)."""
    for document in (
        document_request(UnitsRequest),
        document_headers(UnitChangeHeaders),
        document_response(UnitChangeResult, 200, ReplayedHeaders),
        problems(
            UNAUTHORIZED_RESPONSE,
            NOT_FOUND_RESPONSE,
            METHOD_RESPONSE,
            UNIT_CHANGE_CONFLICT_RESPONSE,
            TOO_LARGE_RESPONSE,
            INVALID_UNITS_RESPONSE,
            UNAVAILABLE_RESPONSE,
        ),
    ):
        handler = document(handler)
    return handler


def authenticate() -> Principal:
    """Return the caller's principal from the bearer token, or raise 401."""
    return principal_from_header(
        request.headers.get("Authorization"), current_settings().jwt_secret
    )


def retry_count() -> RetryCount:
    """Return this request's retry counter, which the request log reads."""
    g.retry_count = RetryCount()
    return g.retry_count


@blueprint.get("/<authorization_id>")
@document_headers(ReadHeaders)
@document_response(Authorization)
@problems(UNAUTHORIZED_RESPONSE, NOT_FOUND_RESPONSE, READ_CONFLICT_RESPONSE, UNAVAILABLE_RESPONSE)
async def get_authorization(authorization_id: str) -> ResponseReturnValue:
    """Read one of the caller's organization's authorizations."""
    principal = authenticate()
    row = await read_authorization(
        current_database(),
        parse_authorization_id(authorization_id),
        principal.organization_id,
        retry_count(),
    )
    return json_response(authorization_json(row))


@blueprint.post("/<authorization_id>/reserve")
@documented_unit_change
async def reserve_units(authorization_id: str) -> ResponseReturnValue:
    """Reserve units.

    scheduled_units += units, only if used + scheduled + units <= total, the authorization is
    active and today is within start_date..end_date. The counter change and its ledger row
    are written in one transaction; any error leaves the database as it was.
    """
    return await apply_operation(Operation.RESERVE, authorization_id)


@blueprint.post("/<authorization_id>/release")
@documented_unit_change
async def release_units(authorization_id: str) -> ResponseReturnValue:
    """Release reserved units.

    scheduled_units -= units, only if scheduled_units >= units and the authorization is
    active. The counter change and its ledger row are written in one transaction; any error
    leaves the database as it was.
    """
    return await apply_operation(Operation.RELEASE, authorization_id)


@blueprint.post("/<authorization_id>/consume")
@documented_unit_change
async def consume_units(authorization_id: str) -> ResponseReturnValue:
    """Consume reserved units.

    scheduled_units -= units and used_units += units, only if scheduled_units >= units and
    the authorization is active. The counter change and its ledger row are written in one
    transaction; any error leaves the database as it was.
    """
    return await apply_operation(Operation.CONSUME, authorization_id)


async def apply_operation(operation: Operation, raw_authorization_id: str) -> ResponseReturnValue:
    """Check the caller and the body, then change the counters and write the ledger row."""
    principal = authenticate()
    authorization_id = parse_authorization_id(raw_authorization_id)
    idempotency_key = parse_key(request.headers.get(IDEMPOTENCY_KEY_HEADER))
    units = await read_units(current_settings().max_body_bytes)
    change = UnitChange(
        operation=operation,
        authorization_id=authorization_id,
        organization_id=principal.organization_id,
        practitioner_id=principal.practitioner_id,
        units=units,
        request_id=g.request_id,
        transaction_id=uuid.uuid4(),
        idempotency_key=idempotency_key,
    )
    outcome = await change_units(current_database(), change, retry_count())
    body = UnitChangeResult(
        transaction_id=outcome.transaction_id,
        authorization=authorization_json(outcome.authorization),
    )
    return json_response(body, headers={REPLAYED_HEADER: "true"} if outcome.replayed else None)


def authorization_json(row: AuthorizationRecord) -> Authorization:
    """Render an authorization row in the API's shape."""
    return Authorization(
        id=row.id,
        organization_id=row.organization_id,
        patient_id=row.patient_id,
        service_code=row.service_code,
        total_units=row.total_units,
        used_units=row.used_units,
        scheduled_units=row.scheduled_units,
        available_units=row.total_units - row.used_units - row.scheduled_units,
        status=row.status,  # type: ignore[arg-type]
        start_date=row.start_date,
        end_date=row.end_date,
    )
