"""Read and validate request bodies: one clear 413 or 422 before any database work."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from quart import request
from werkzeug.exceptions import RequestEntityTooLarge

from target.problems import invalid_request, not_found, payload_too_large

MIN_UNITS = 1
MAX_UNITS = 1_000_000
MAX_REQUEST_ID_CHARS = 100


@dataclass(frozen=True)
class Credentials:
    email: str
    password: str


def parse_authorization_id(raw: str) -> uuid.UUID:
    """Parse a path id; a malformed one answers the same 404 as an unknown one."""
    try:
        return uuid.UUID(raw)
    except ValueError as error:
        raise not_found() from error


async def read_json_object(max_bytes: int) -> dict[str, Any]:
    """Read the body (at most ``max_bytes``) and return it as a JSON object."""
    declared = request.content_length
    if declared is not None and declared > max_bytes:
        raise payload_too_large(max_bytes)
    try:
        raw = await request.get_data(cache=False, as_text=False)
    except RequestEntityTooLarge as error:
        raise payload_too_large(max_bytes) from error
    if len(raw) > max_bytes:
        raise payload_too_large(max_bytes)
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise invalid_request("request body is not valid JSON") from error
    if not isinstance(body, dict):
        raise invalid_request("request body must be a JSON object")
    return body


def parse_units(body: dict[str, Any]) -> int:
    """Return ``units`` if it is a true integer in range, else raise 422."""
    if "units" not in body:
        raise invalid_request("'units' is required")
    units = body["units"]
    # bool is a subclass of int, and 1.0 is a float: neither is an integer here.
    if type(units) is not int:
        raise invalid_request("'units' must be an integer")
    if not MIN_UNITS <= units <= MAX_UNITS:
        raise invalid_request(f"'units' must be between {MIN_UNITS} and {MAX_UNITS}")
    return units


def parse_credentials(body: dict[str, Any]) -> Credentials:
    """Return the e-mail and password of a token request, else raise 422."""
    email, password = body.get("email"), body.get("password")
    if not isinstance(email, str) or not email:
        raise invalid_request("'email' must be a non-empty string")
    if not isinstance(password, str) or not password:
        raise invalid_request("'password' must be a non-empty string")
    return Credentials(email=email, password=password)


def request_id_from_header(header: str | None) -> str:
    """Use the client's X-Request-ID when it is short and printable, else make one."""
    if header and len(header) <= MAX_REQUEST_ID_CHARS and header.isprintable():
        return header
    return uuid.uuid4().hex
