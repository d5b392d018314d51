"""Idempotency-Key (draft-ietf-httpapi-idempotency-key-header): the key and a stored answer.

A keyed change stores its outcome in the same statement as its ledger row (see
`reservation_sql`); here the key is read from the request and a stored outcome is turned
back into the answer the first request got.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from target.api_types import MAX_IDEMPOTENCY_KEY_CHARS
from target.operations import AuthorizationRecord, UnitChange, refusal_after_miss
from target.problems import (
    IDEMPOTENCY_KEY_IN_USE,
    IDEMPOTENCY_KEY_REUSED,
    INVALID_IDEMPOTENCY_KEY,
    ProblemError,
)

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_CHARS = MAX_IDEMPOTENCY_KEY_CHARS
DATE_FIELDS = ("start_date", "end_date", "today")
UUID_FIELDS = ("id", "organization_id", "patient_id")


@dataclass(frozen=True, slots=True)
class StoredOutcome:
    """What `idempotency_keys` holds for a key."""

    fingerprint: str
    applied: bool
    image: dict[str, Any]
    transaction_id: uuid.UUID | None


def parse_key(header: str | None) -> str | None:
    """Return the request's key, None without one; raise 422 for a malformed key.

    The draft sends the key as a structured-field string (`"abc"`); a bare token is accepted.
    """
    if header is None:
        return None
    key = header[1:-1] if len(header) >= 2 and header[0] == header[-1] == '"' else header
    if not key or len(key) > MAX_KEY_CHARS or not (key.isascii() and key.isprintable()):
        raise ProblemError(
            422,
            INVALID_IDEMPOTENCY_KEY,
            f"{HEADER} must be 1 to {MAX_KEY_CHARS} printable ASCII characters",
        )
    return key


def key_in_use() -> ProblemError:
    """Build the 409 for a repeat that arrives while the first request is still running."""
    return ProblemError(
        409,
        IDEMPOTENCY_KEY_IN_USE,
        "a request with this Idempotency-Key is still being processed; retry later",
        {"Retry-After": "1"},
    )


def image_of(row: AuthorizationRecord) -> dict[str, Any]:
    """Render an authorization as the JSON image a stored answer keeps (as to_jsonb writes it)."""
    image: dict[str, Any] = {}
    for name in AuthorizationRecord.__slots__:
        value = getattr(row, name)
        image[name] = str(value) if isinstance(value, uuid.UUID | dt.date) else value
    return image


def record_from_image(image: dict[str, Any]) -> AuthorizationRecord:
    """Rebuild the authorization a stored answer showed from its JSON image."""
    values = dict(image)
    for name in DATE_FIELDS:
        if values.get(name) is not None:
            values[name] = dt.date.fromisoformat(values[name])
    for name in UUID_FIELDS:
        values[name] = uuid.UUID(values[name])
    return AuthorizationRecord(**{name: values.get(name) for name in AuthorizationRecord.__slots__})


def replay(stored: StoredOutcome, change: UnitChange) -> tuple[uuid.UUID, AuthorizationRecord]:
    """Return the first answer again, or raise it (a refusal) or the 422 for another request."""
    if stored.fingerprint != change.fingerprint():
        raise ProblemError(
            422,
            IDEMPOTENCY_KEY_REUSED,
            f"this {HEADER} was used for a different request ({stored.fingerprint})",
        )
    row = record_from_image(stored.image)
    if not stored.applied or stored.transaction_id is None:
        problem = refusal_after_miss(row, change.operation, change.units)
        problem.headers[REPLAYED_HEADER] = "true"
        raise problem
    return stored.transaction_id, row
