"""What a change is, and the business rules that say when it is allowed."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from enum import StrEnum

from target.problems import (
    AUTHORIZATION_INACTIVE,
    INSUFFICIENT_UNITS,
    ProblemError,
    not_found,
)

ACTIVE = "active"


class Operation(StrEnum):
    RESERVE = "reserve"
    RELEASE = "release"
    CONSUME = "consume"


@dataclass(frozen=True, slots=True)
class UnitChange:
    """One requested change, with who asked for it and the ledger id it will get."""

    operation: Operation
    authorization_id: uuid.UUID
    organization_id: uuid.UUID
    practitioner_id: uuid.UUID
    units: int
    request_id: str
    transaction_id: uuid.UUID
    idempotency_key: str | None = None

    def fingerprint(self) -> str:
        """Say what was asked, so a repeat of the key can be told from a different request."""
        return f"{self.operation.value}:{self.authorization_id}:{self.units}"


@dataclass(frozen=True, slots=True)
class AuthorizationRecord:
    """An authorization row; ``today`` is the database's date when the row was read."""

    id: uuid.UUID
    organization_id: uuid.UUID
    patient_id: uuid.UUID
    service_code: str
    total_units: int
    used_units: int
    scheduled_units: int
    status: str
    start_date: dt.date
    end_date: dt.date
    today: dt.date | None = None


@dataclass(frozen=True, slots=True)
class ChangeOutcome:
    """A change that was applied: now, or by the first request with the same key."""

    transaction_id: uuid.UUID
    authorization: AuthorizationRecord
    replayed: bool = False


def refusal(
    row: AuthorizationRecord | None, operation: Operation, units: int
) -> ProblemError | None:
    """Return why ``operation`` may not change ``row`` by ``units``, or None if it may."""
    if row is None:
        return not_found()
    if row.status != ACTIVE:
        return ProblemError(409, AUTHORIZATION_INACTIVE, f"authorization is {row.status}")
    if operation is Operation.RESERVE:
        if row.today is None or not row.start_date <= row.today <= row.end_date:
            return ProblemError(
                409,
                AUTHORIZATION_INACTIVE,
                f"authorization is valid from {row.start_date} to {row.end_date}",
            )
        available = row.total_units - row.used_units - row.scheduled_units
        if units > available:
            return ProblemError(
                409, INSUFFICIENT_UNITS, f"{units} units requested, {available} available"
            )
    elif units > row.scheduled_units:
        return ProblemError(
            409, INSUFFICIENT_UNITS, f"{units} units requested, {row.scheduled_units} scheduled"
        )
    return None


def refusal_after_miss(
    row: AuthorizationRecord | None, operation: Operation, units: int
) -> ProblemError:
    """Say why a change that matched no row was refused.

    Under `atomic` the row read beside the UPDATE may predate the version the UPDATE saw, so
    the rules can find nothing wrong with it; the miss itself was then a lack of units.
    """
    return refusal(row, operation, units) or ProblemError(
        409, INSUFFICIENT_UNITS, f"{units} units requested, not enough left"
    )
