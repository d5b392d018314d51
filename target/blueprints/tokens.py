"""POST /api/auth/token: trade a practitioner's e-mail and password for a bearer token."""

from __future__ import annotations

import asyncio

from quart import Blueprint
from quart.typing import ResponseReturnValue
from sqlalchemy import text
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from target.auth import invalid_credentials, issue_token, password_matches
from target.payloads import parse_credentials, read_json_object
from target.state import current_database, current_settings

SELECT_PRACTITIONER_BY_EMAIL = text(
    "SELECT id, organization_id, role, password_hash FROM practitioners WHERE email = :email"
)

blueprint = Blueprint("tokens", __name__, url_prefix="/api/auth")


async def select_practitioner_by_email(connection: AsyncConnection, email: str) -> Row | None:
    """Return the practitioner with this e-mail, or None."""
    return (await connection.execute(SELECT_PRACTITIONER_BY_EMAIL, {"email": email})).first()


@blueprint.post("/token")
async def create_token() -> ResponseReturnValue:
    """Check the password (bcrypt, in a thread) and issue a signed token."""
    settings = current_settings()
    credentials = parse_credentials(await read_json_object(settings.max_body_bytes))
    async with current_database().connect() as connection, connection.begin():
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
    return {"access_token": token, "token_type": "Bearer", "expires_in": settings.jwt_ttl_s}
