"""RFC 9457 problem details: the one exception type for API errors and its rendering."""

from __future__ import annotations

from dataclasses import dataclass, field
from http import HTTPStatus

import msgspec
from quart import Response

from target.api_types import Problem

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://clinic-loadtest.invalid/problems/"

UNAUTHORIZED = "unauthorized"
NOT_FOUND = "not_found"
METHOD_NOT_ALLOWED = "method_not_allowed"
INVALID_REQUEST = "invalid_request"
PAYLOAD_TOO_LARGE = "payload_too_large"
INSUFFICIENT_UNITS = "insufficient_units"
AUTHORIZATION_INACTIVE = "authorization_inactive"
SERIALIZATION_CONFLICT = "serialization_conflict"
PRACTITIONER_BUSY = "practitioner_busy"
PATIENT_BUSY = "patient_busy"
SESSION_NOT_BOOKED = "session_not_booked"
INVALID_IDEMPOTENCY_KEY = "invalid_idempotency_key"
IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
IDEMPOTENCY_KEY_IN_USE = "idempotency_key_in_use"
UNAVAILABLE = "unavailable"
INTERNAL_ERROR = "internal_error"
HTTP_ERROR = "http_error"

# Codes for errors Quart raises itself (routing, body limits), by status.
CODES_BY_STATUS = {
    400: INVALID_REQUEST,
    401: UNAUTHORIZED,
    404: NOT_FOUND,
    405: METHOD_NOT_ALLOWED,
    413: PAYLOAD_TOO_LARGE,
    422: INVALID_REQUEST,
    500: INTERNAL_ERROR,
    503: UNAVAILABLE,
}


@dataclass
class ProblemError(Exception):
    """An API error that renders as a problem document with a stable ``code``."""

    status: int
    code: str
    detail: str
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(f"{self.status} {self.code}: {self.detail}")


def unauthorized(detail: str) -> ProblemError:
    """Build a 401 that tells the client to authenticate with a bearer token."""
    return ProblemError(401, UNAUTHORIZED, detail, {"WWW-Authenticate": "Bearer"})


def not_found() -> ProblemError:
    """Build the one 404 used for unknown, malformed and foreign ids alike."""
    return ProblemError(404, NOT_FOUND, "authorization not found")


def invalid_request(detail: str) -> ProblemError:
    """Build a 422 for a body the API cannot accept."""
    return ProblemError(422, INVALID_REQUEST, detail)


def payload_too_large(limit_bytes: int) -> ProblemError:
    """Build a 413 naming the body limit."""
    return ProblemError(413, PAYLOAD_TOO_LARGE, f"request body larger than {limit_bytes} bytes")


def unavailable(detail: str) -> ProblemError:
    """Build a 503 for a database that cannot be reached in time."""
    return ProblemError(503, UNAVAILABLE, detail, {"Retry-After": "1"})


def problem_response(problem: ProblemError) -> Response:
    """Render a problem as an ``application/problem+json`` response."""
    title = HTTPStatus(problem.status).phrase
    body = Problem(
        type=PROBLEM_TYPE_BASE + problem.code,
        title=title,
        status=problem.status,
        detail=problem.detail,
        code=problem.code,
    )
    response = Response(
        msgspec.json.encode(body), status=problem.status, content_type=PROBLEM_CONTENT_TYPE
    )
    for name, value in problem.headers.items():
        response.headers[name] = value
    return response
