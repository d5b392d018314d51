"""Therapy sessions: bookings of a practitioner's time for a patient against an authorization.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05

No exclusion constraint here on purpose: the rules that span rows (no overlapping sessions
for a practitioner or a patient, the units of an authorization's sessions within its total)
are the application's job under test, and the integrity checks must be able to see them fail.
The `constraint` strategy adds the exclusion constraints itself (target/schedule_guards.py).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

MAX_KEY_CHARS = 255


def upgrade() -> None:
    op.create_table(
        "therapy_sessions",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column(
            "organization_id", UUID(as_uuid=True), sa.ForeignKey("organizations.id"), nullable=False
        ),
        sa.Column(
            "authorization_id",
            UUID(as_uuid=True),
            sa.ForeignKey("authorizations.id"),
            nullable=False,
        ),
        sa.Column(
            "practitioner_id", UUID(as_uuid=True), sa.ForeignKey("practitioners.id"), nullable=False
        ),
        sa.Column("patient_id", UUID(as_uuid=True), sa.ForeignKey("patients.id"), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("units", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="booked"),
        sa.Column("request_id", sa.String(100), nullable=True),
        # The booking's key, and the key of the request that last changed its status: a
        # repeat of either request gets the first answer again.
        sa.Column("idempotency_key", sa.String(MAX_KEY_CHARS), nullable=True),
        sa.Column("status_idempotency_key", sa.String(MAX_KEY_CHARS), nullable=True),
        sa.Column("status_request_id", sa.String(100), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.CheckConstraint("units > 0", name="ck_therapy_sessions_units_positive"),
        sa.CheckConstraint("starts_at < ends_at", name="ck_therapy_sessions_time_range"),
        sa.CheckConstraint(
            "status IN ('booked', 'cancelled', 'completed')", name="ck_therapy_sessions_status"
        ),
    )
    # The overlap reads scan a practitioner's or a patient's sessions by start time: with
    # these indexes SERIALIZABLE's predicate locks cover index ranges, not the whole table.
    op.create_index(
        "ix_therapy_sessions_practitioner_starts",
        "therapy_sessions",
        ["practitioner_id", "starts_at"],
    )
    op.create_index(
        "ix_therapy_sessions_patient_starts", "therapy_sessions", ["patient_id", "starts_at"]
    )
    op.create_index(
        "ix_therapy_sessions_authorization_id", "therapy_sessions", ["authorization_id"]
    )
    op.create_index(
        "ux_therapy_sessions_idempotency_key",
        "therapy_sessions",
        ["organization_id", "idempotency_key"],
        unique=True,
    )


def downgrade() -> None:
    op.drop_table("therapy_sessions")
