"""Idempotency keys: the key on each ledger row, and the stored outcome of each keyed request.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

MAX_KEY_CHARS = 255


def upgrade() -> None:
    # On the ledger itself, so the integrity checks can count rows per key with their own SQL,
    # even when the service was told not to enforce the keys.
    op.add_column(
        "unit_transactions", sa.Column("idempotency_key", sa.String(MAX_KEY_CHARS), nullable=True)
    )
    op.create_table(
        "idempotency_keys",
        sa.Column(
            "organization_id", UUID(as_uuid=True), sa.ForeignKey("organizations.id"), nullable=False
        ),
        sa.Column("key", sa.String(MAX_KEY_CHARS), nullable=False),
        # What the request asked for; a repeat that asks for something else is refused.
        sa.Column("fingerprint", sa.String(200), nullable=False),
        sa.Column("applied", sa.Boolean, nullable=False),
        # The authorization as the first answer showed it: a repeat renders the same answer.
        sa.Column("image", JSONB, nullable=False),
        sa.Column("transaction_id", UUID(as_uuid=True), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("organization_id", "key", name="pk_idempotency_keys"),
    )


def downgrade() -> None:
    op.drop_table("idempotency_keys")
    op.drop_column("unit_transactions", "idempotency_key")
