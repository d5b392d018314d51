"""Where a running app keeps its settings and database, and how handlers reach them."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from quart import current_app

from target.database import Database
from target.settings import Settings

EXTENSION_KEY = "clinic_target"


@dataclass
class ServiceState:
    settings: Settings
    database: Database | None = None
    background: list[asyncio.Task[None]] = field(default_factory=list)


def service_state() -> ServiceState:
    """Return the state of the app serving the current request."""
    return current_app.extensions[EXTENSION_KEY]


def current_settings() -> Settings:
    """Return the settings of the app serving the current request."""
    return service_state().settings


def current_database() -> Database:
    """Return the database of the app serving the current request (set in before_serving)."""
    database = service_state().database
    if database is None:
        raise RuntimeError("the database is only available while the app is serving")
    return database
