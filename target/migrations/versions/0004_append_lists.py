"""Append lists: the storage of the list-append isolation scenario (one row per key).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-10

A row per (organization, key) holds the whole list as a bigint[]; an append extends it with
`value || ARRAY[v]` (target/list_append.py). No index beyond the primary key: every read and
append names one key.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, UUID

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "append_lists",
        sa.Column(
            "organization_id", UUID(as_uuid=True), sa.ForeignKey("organizations.id"), nullable=False
        ),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("value", ARRAY(sa.BigInteger), nullable=False),
        sa.PrimaryKeyConstraint("organization_id", "key", name="pk_append_lists"),
    )


def downgrade() -> None:
    op.drop_table("append_lists")
