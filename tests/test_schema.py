"""One schema: the migrations build exactly what target/models.py declares.

Alembic's autogenerate compares the migrated database with the models; any difference (a
column, index, constraint or type in one and not the other) fails here, so a migration is
written from the models (`alembic revision --autogenerate`) and cannot drift from them.
"""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from target.migrate import downgrade, upgrade
from target.models import Base
from target.settings import sqlalchemy_url


def schema_differences(database_url: str) -> list[object]:
    engine = create_engine(sqlalchemy_url(database_url))
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


def test_the_migrated_schema_is_the_models(database_url: str) -> None:
    assert schema_differences(database_url) == []


def test_the_comparison_sees_a_missing_migration(database_url: str) -> None:
    downgrade(database_url, "0001")
    differences = schema_differences(database_url)
    assert any("idempotency_keys" in repr(difference) for difference in differences)
    upgrade(database_url)
    assert schema_differences(database_url) == []
