"""Initial schema: tenants, patients, practitioners, authorizations and the unit ledger.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "organizations",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
    )
    op.create_table(
        "service_codes",
        sa.Column("code", sa.String(16), primary_key=True),
        sa.Column("description", sa.String(200), nullable=False),
    )
    op.create_table(
        "patients",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column(
            "organization_id", UUID(as_uuid=True), sa.ForeignKey("organizations.id"), nullable=False
        ),
        sa.Column("first_name", sa.String(100), nullable=False),
        sa.Column("last_name", sa.String(100), nullable=False),
        sa.Column("date_of_birth", sa.Date, nullable=False),
        sa.Column("member_id", sa.String(40), nullable=False),
    )
    op.create_index("ix_patients_organization_id", "patients", ["organization_id"])
    op.create_table(
        "practitioners",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column(
            "organization_id", UUID(as_uuid=True), sa.ForeignKey("organizations.id"), nullable=False
        ),
        sa.Column("email", sa.String(254), nullable=False, unique=True),
        sa.Column("full_name", sa.String(200), nullable=False),
        sa.Column("role", sa.String(40), nullable=False),
        sa.Column("password_hash", sa.String(100), nullable=False),
    )
    op.create_index("ix_practitioners_organization_id", "practitioners", ["organization_id"])
    op.create_table(
        "authorizations",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column(
            "organization_id", UUID(as_uuid=True), sa.ForeignKey("organizations.id"), nullable=False
        ),
        sa.Column("patient_id", UUID(as_uuid=True), sa.ForeignKey("patients.id"), nullable=False),
        sa.Column(
            "service_code", sa.String(16), sa.ForeignKey("service_codes.code"), nullable=False
        ),
        sa.Column("total_units", sa.Integer, nullable=False),
        sa.Column("used_units", sa.Integer, nullable=False, server_default="0"),
        sa.Column("scheduled_units", sa.Integer, nullable=False, server_default="0"),
        sa.Column("start_date", sa.Date, nullable=False),
        sa.Column("end_date", sa.Date, nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="active"),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
        # No CHECK on used + scheduled <= total on purpose: preventing overbooking is the
        # application's job, and the integrity checks must be able to see it fail.
        sa.CheckConstraint("total_units >= 0", name="ck_authorizations_total_units_nonnegative"),
        sa.CheckConstraint("used_units >= 0", name="ck_authorizations_used_units_nonnegative"),
        sa.CheckConstraint(
            "scheduled_units >= 0", name="ck_authorizations_scheduled_units_nonnegative"
        ),
        sa.CheckConstraint(
            "status IN ('active', 'suspended', 'closed')", name="ck_authorizations_status"
        ),
        sa.CheckConstraint("start_date <= end_date", name="ck_authorizations_date_range"),
    )
    op.create_index("ix_authorizations_organization_id", "authorizations", ["organization_id"])
    op.create_index("ix_authorizations_patient_id", "authorizations", ["patient_id"])
    op.create_table(
        "unit_transactions",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column(
            "authorization_id",
            UUID(as_uuid=True),
            sa.ForeignKey("authorizations.id"),
            nullable=False,
        ),
        sa.Column(
            "organization_id", UUID(as_uuid=True), sa.ForeignKey("organizations.id"), nullable=False
        ),
        sa.Column(
            "practitioner_id", UUID(as_uuid=True), sa.ForeignKey("practitioners.id"), nullable=False
        ),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("units", sa.Integer, nullable=False),
        sa.Column("request_id", sa.String(100)),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.CheckConstraint("units > 0", name="ck_unit_transactions_units_positive"),
        sa.CheckConstraint(
            "kind IN ('reserve', 'release', 'consume')", name="ck_unit_transactions_kind"
        ),
    )
    op.create_index(
        "ix_unit_transactions_authorization_id", "unit_transactions", ["authorization_id"]
    )


def downgrade() -> None:
    op.drop_table("unit_transactions")
    op.drop_table("authorizations")
    op.drop_table("practitioners")
    op.drop_table("patients")
    op.drop_table("service_codes")
    op.drop_table("organizations")
