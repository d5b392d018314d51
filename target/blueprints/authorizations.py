"""GET an authorization; reserve, release or consume its units."""

from __future__ import annotations

import uuid
from typing import Any

from quart import Blueprint, g, request
from quart.typing import ResponseReturnValue

from target.auth import Principal, principal_from_header
from target.idempotency import HEADER as IDEMPOTENCY_KEY_HEADER
from target.idempotency import REPLAYED_HEADER, parse_key
from target.operations import AuthorizationRecord, Operation, UnitChange
from target.payloads import parse_authorization_id, parse_units, read_json_object
from target.reservations import RetryCount, change_units, read_authorization
from target.state import current_database, current_settings

blueprint = Blueprint("authorizations", __name__, url_prefix="/api/authorizations")


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
async def get_authorization(authorization_id: str) -> ResponseReturnValue:
    """Return one of the caller's organization's authorizations."""
    principal = authenticate()
    row = await read_authorization(
        current_database(),
        parse_authorization_id(authorization_id),
        principal.organization_id,
        retry_count(),
    )
    return authorization_json(row)


@blueprint.post("/<authorization_id>/reserve")
async def reserve_units(authorization_id: str) -> ResponseReturnValue:
    """Schedule units, only if they are available."""
    return await apply_operation(Operation.RESERVE, authorization_id)


@blueprint.post("/<authorization_id>/release")
async def release_units(authorization_id: str) -> ResponseReturnValue:
    """Give scheduled units back."""
    return await apply_operation(Operation.RELEASE, authorization_id)


@blueprint.post("/<authorization_id>/consume")
async def consume_units(authorization_id: str) -> ResponseReturnValue:
    """Turn scheduled units into used units."""
    return await apply_operation(Operation.CONSUME, authorization_id)


async def apply_operation(operation: Operation, raw_authorization_id: str) -> ResponseReturnValue:
    """Check the caller and the body, then change the counters and write the ledger row."""
    principal = authenticate()
    authorization_id = parse_authorization_id(raw_authorization_id)
    idempotency_key = parse_key(request.headers.get(IDEMPOTENCY_KEY_HEADER))
    units = parse_units(await read_json_object(current_settings().max_body_bytes))
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
    body = {
        "transaction_id": str(outcome.transaction_id),
        "authorization": authorization_json(outcome.authorization),
    }
    return (body, 200, {REPLAYED_HEADER: "true"}) if outcome.replayed else body


def authorization_json(row: AuthorizationRecord) -> dict[str, Any]:
    """Render an authorization row in the API's shape."""
    return {
        "id": str(row.id),
        "organization_id": str(row.organization_id),
        "patient_id": str(row.patient_id),
        "service_code": row.service_code,
        "total_units": row.total_units,
        "used_units": row.used_units,
        "scheduled_units": row.scheduled_units,
        "available_units": row.total_units - row.used_units - row.scheduled_units,
        "status": row.status,
        "start_date": row.start_date.isoformat(),
        "end_date": row.end_date.isoformat(),
    }
