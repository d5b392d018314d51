"""The project's own throwaway PostgreSQL, used whenever DATABASE_URL is not set."""

from __future__ import annotations

import os

from local_postgres.cluster import (
    DEFAULT_WORKDIR,
    MARKER_COMMENT,
    ClusterError,
    ClusterInfo,
    LocalCluster,
    create_marked_database,
    is_marked_database,
)

__all__ = [
    "DEFAULT_WORKDIR",
    "MARKER_COMMENT",
    "ClusterError",
    "ClusterInfo",
    "LocalCluster",
    "create_marked_database",
    "database_url",
    "ensure_database",
    "is_marked_database",
]


def ensure_database() -> ClusterInfo | None:
    """Start the local cluster unless DATABASE_URL names a server; return it if started."""
    if os.environ.get("DATABASE_URL"):
        return None
    return LocalCluster().up()


def database_url() -> str:
    """Return DATABASE_URL, or the URL of the local cluster (started if needed)."""
    explicit = os.environ.get("DATABASE_URL")
    if explicit:
        return explicit
    return LocalCluster().up().url
