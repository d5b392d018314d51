"""The service's tables, as typed SQLAlchemy 2.0 models (Alembic owns the DDL)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import ClassVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

AUTHORIZATION_STATUSES = ("active", "suspended", "closed")
TRANSACTION_KINDS = ("reserve", "release", "consume")


# The service never reads created_at back: no RETURNING for it on every INSERT (benchmarks:
# about 0.3 of the unit of work's 4.2 CPU-ms).
NO_RETURNING_OF_DEFAULTS: dict[str, object] = {"eager_defaults": False}


class Base(DeclarativeBase):
    pass


class Organization(Base):
    __tablename__ = "organizations"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[dt.datetime | None] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class ServiceCode(Base):
    __tablename__ = "service_codes"

    code: Mapped[str] = mapped_column(String(16), primary_key=True)
    description: Mapped[str] = mapped_column(String(200))


class Patient(Base):
    __tablename__ = "patients"
    __table_args__ = (Index("ix_patients_organization_id", "organization_id"),)

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id"))
    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100))
    date_of_birth: Mapped[dt.date] = mapped_column(Date)
    member_id: Mapped[str] = mapped_column(String(40))


class Practitioner(Base):
    __tablename__ = "practitioners"
    __table_args__ = (Index("ix_practitioners_organization_id", "organization_id"),)

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id"))
    email: Mapped[str] = mapped_column(String(254), unique=True)
    full_name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(40))
    password_hash: Mapped[str] = mapped_column(String(100))


class Authorization(Base):
    __tablename__ = "authorizations"
    # No CHECK on used + scheduled <= total on purpose: preventing overbooking is the
    # application's job, and the integrity checks must be able to see it fail.
    __table_args__ = (
        CheckConstraint("total_units >= 0", name="ck_authorizations_total_units_nonnegative"),
        CheckConstraint("used_units >= 0", name="ck_authorizations_used_units_nonnegative"),
        CheckConstraint(
            "scheduled_units >= 0", name="ck_authorizations_scheduled_units_nonnegative"
        ),
        CheckConstraint(
            "status IN ('active', 'suspended', 'closed')", name="ck_authorizations_status"
        ),
        CheckConstraint("start_date <= end_date", name="ck_authorizations_date_range"),
        Index("ix_authorizations_organization_id", "organization_id"),
        Index("ix_authorizations_patient_id", "patient_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id"))
    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patients.id"))
    service_code: Mapped[str] = mapped_column(ForeignKey("service_codes.code"))
    total_units: Mapped[int] = mapped_column(Integer)
    used_units: Mapped[int] = mapped_column(Integer, server_default="0")
    scheduled_units: Mapped[int] = mapped_column(Integer, server_default="0")
    start_date: Mapped[dt.date] = mapped_column(Date)
    end_date: Mapped[dt.date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16), server_default="active")
    updated_at: Mapped[dt.datetime | None] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class UnitTransaction(Base):
    """One ledger row per successful reserve, release or consume."""

    __mapper_args__: ClassVar[dict[str, object]] = NO_RETURNING_OF_DEFAULTS
    __tablename__ = "unit_transactions"
    __table_args__ = (
        CheckConstraint("units > 0", name="ck_unit_transactions_units_positive"),
        CheckConstraint(
            "kind IN ('reserve', 'release', 'consume')", name="ck_unit_transactions_kind"
        ),
        Index("ix_unit_transactions_authorization_id", "authorization_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    authorization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("authorizations.id"))
    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id"))
    practitioner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("practitioners.id"))
    kind: Mapped[str] = mapped_column(String(16))
    units: Mapped[int] = mapped_column(Integer)
    request_id: Mapped[str | None] = mapped_column(String(100))
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class IdempotencyKey(Base):
    """The outcome of one keyed change, so a repeat of the request gets the same answer."""

    __mapper_args__: ClassVar[dict[str, object]] = NO_RETURNING_OF_DEFAULTS
    __tablename__ = "idempotency_keys"

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(200))
    applied: Mapped[bool] = mapped_column(Boolean)
    image: Mapped[dict[str, object]] = mapped_column(JSONB)
    transaction_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


SESSION_STATUSES = ("booked", "cancelled", "completed")


class TherapySession(Base):
    """A booked hour of a practitioner's time for a patient, paid from an authorization."""

    __mapper_args__: ClassVar[dict[str, object]] = NO_RETURNING_OF_DEFAULTS
    __tablename__ = "therapy_sessions"
    __table_args__ = (
        CheckConstraint("units > 0", name="ck_therapy_sessions_units_positive"),
        CheckConstraint("starts_at < ends_at", name="ck_therapy_sessions_time_range"),
        CheckConstraint(
            "status IN ('booked', 'cancelled', 'completed')", name="ck_therapy_sessions_status"
        ),
        Index("ix_therapy_sessions_practitioner_starts", "practitioner_id", "starts_at"),
        Index("ix_therapy_sessions_patient_starts", "patient_id", "starts_at"),
        Index("ix_therapy_sessions_authorization_id", "authorization_id"),
        Index(
            "ux_therapy_sessions_idempotency_key", "organization_id", "idempotency_key", unique=True
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id"))
    authorization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("authorizations.id"))
    practitioner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("practitioners.id"))
    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patients.id"))
    starts_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    ends_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    units: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), server_default="booked")
    request_id: Mapped[str | None] = mapped_column(String(100))
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    status_idempotency_key: Mapped[str | None] = mapped_column(String(255))
    status_request_id: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class AppendList(Base):
    """A list of integers under a key of an organization, extended only by appends.

    The isolation scenario's storage (target/list_append.py): `key` is the JSON text of the
    client's key (`3` for the integer 3, `"k3"` for the string), so 3 and "3" stay apart.
    """

    __tablename__ = "append_lists"

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id"), primary_key=True
    )
    key: Mapped[str] = mapped_column(Text, primary_key=True)
    value: Mapped[list[int]] = mapped_column(ARRAY(BigInteger))
