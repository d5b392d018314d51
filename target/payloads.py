"""Read and validate request bodies: one clear 413 or 422 before any database work.

Bodies are decoded straight into the models of `target.api_types`, which also make the
OpenAPI document: what is validated is what is documented.
"""

from __future__ import annotations

import uuid
from typing import TypeVar

import msgspec
from quart import request
from werkzeug.exceptions import RequestEntityTooLarge

from target.api_types import MAX_REQUEST_ID_CHARS, BookingRequest, TokenRequest, UnitsRequest
from target.problems import invalid_request, not_found, payload_too_large

Body = TypeVar("Body", bound=msgspec.Struct)

# A decoder per model is built once; strict by default, so `true`, `1.0` and `"5"` are refused.
UNITS_REQUEST = msgspec.json.Decoder(UnitsRequest)
TOKEN_REQUEST = msgspec.json.Decoder(TokenRequest)
BOOKING_REQUEST = msgspec.json.Decoder(BookingRequest)


def parse_authorization_id(raw: str) -> uuid.UUID:
    """Parse a path id; a malformed one answers the same 404 as an unknown one."""
    try:
        return uuid.UUID(raw)
    except ValueError as error:
        raise not_found() from error


async def read_body(max_bytes: int) -> bytes:
    """Read the body, at most ``max_bytes`` of it, else raise 413."""
    declared = request.content_length
    if declared is not None and declared > max_bytes:
        raise payload_too_large(max_bytes)
    try:
        raw = await request.get_data(cache=False, as_text=False)
    except RequestEntityTooLarge as error:
        raise payload_too_large(max_bytes) from error
    if len(raw) > max_bytes:
        raise payload_too_large(max_bytes)
    return raw


def decode_body(raw: bytes, decoder: msgspec.json.Decoder[Body]) -> Body:
    """Decode and check a body against its model in one pass, else raise 422."""
    try:
        return decoder.decode(raw)
    except msgspec.ValidationError as error:
        raise invalid_request(f"request body does not match the schema: {error}") from error
    except msgspec.DecodeError as error:
        raise invalid_request(f"request body is not valid JSON: {error}") from error


async def read_units(max_bytes: int) -> int:
    """Return the ``units`` of a reserve, release or consume body."""
    return decode_body(await read_body(max_bytes), UNITS_REQUEST).units


async def read_booking(max_bytes: int) -> BookingRequest:
    """Return the body of a booking."""
    return decode_body(await read_body(max_bytes), BOOKING_REQUEST)


async def read_credentials(max_bytes: int) -> TokenRequest:
    """Return the e-mail and password of a token request."""
    return decode_body(await read_body(max_bytes), TOKEN_REQUEST)


def request_id_from_header(header: str | None) -> str:
    """Use the client's X-Request-ID when it is short and printable, else make one."""
    if header and len(header) <= MAX_REQUEST_ID_CHARS and header.isprintable():
        return header
    return uuid.uuid4().hex
