"""POST /api/auth/token: trade a practitioner's e-mail and password for a bearer token."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

import psycopg
from psycopg.rows import class_row
from quart import Blueprint
from quart.typing import ResponseReturnValue
from quart_schema import document_request, document_response, tag_blueprint

from target.api_types import TokenRequest, TokenResponse, json_response
from target.auth import invalid_credentials, issue_token, password_matches
from target.openapi import (
    INVALID_TOKEN_REQUEST_RESPONSE,
    METHOD_RESPONSE,
    TOO_LARGE_RESPONSE,
    UNAVAILABLE_RESPONSE,
    WRONG_CREDENTIALS_RESPONSE,
    problems,
)
from target.payloads import read_credentials
from target.state import current_database, current_settings

SELECT_PRACTITIONER_BY_EMAIL = (
    "SELECT id, organization_id, role, password_hash FROM practitioners WHERE email = %(email)s"
)

blueprint = Blueprint("tokens", __name__, url_prefix="/api/auth")
tag_blueprint(blueprint, ["auth"])


@dataclass(frozen=True)
class PractitionerLogin:
    id: uuid.UUID
    organization_id: uuid.UUID
    role: str
    password_hash: str


async def select_practitioner_by_email(
    connection: psycopg.AsyncConnection, email: str
) -> PractitionerLogin | None:
    """Return the practitioner with this e-mail, or None."""
    async with connection.cursor(row_factory=class_row(PractitionerLogin)) as cursor:
        await cursor.execute(SELECT_PRACTITIONER_BY_EMAIL, {"email": email})
        return await cursor.fetchone()


@blueprint.post("/token")
@document_request(TokenRequest)
@document_response(TokenResponse)
@problems(
    WRONG_CREDENTIALS_RESPONSE,
    METHOD_RESPONSE,
    TOO_LARGE_RESPONSE,
    INVALID_TOKEN_REQUEST_RESPONSE,
    UNAVAILABLE_RESPONSE,
)
async def create_token() -> ResponseReturnValue:
    """Trade a practitioner's e-mail and password for a bearer token.

    The password is checked with bcrypt in a thread, so the event loop keeps serving.
    """
    settings = current_settings()
    credentials = await read_credentials(settings.max_body_bytes)
    async with current_database().connect() as connection:
        practitioner = await select_practitioner_by_email(connection, credentials.email)
    stored_hash = practitioner.password_hash if practitioner is not None else None
    if not await asyncio.to_thread(password_matches, credentials.password, stored_hash):
        raise invalid_credentials()
    assert practitioner is not None
    token = issue_token(
        practitioner.id,
        practitioner.organization_id,
        practitioner.role,
        settings.jwt_secret,
        settings.jwt_ttl_s,
    )
    return json_response(
        TokenResponse(access_token=token, token_type="Bearer", expires_in=settings.jwt_ttl_s)
    )
