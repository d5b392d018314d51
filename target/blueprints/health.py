"""GET /healthz: is the service up and can it reach its database?"""

from __future__ import annotations

import psycopg
from quart import Blueprint
from quart.typing import ResponseReturnValue

from target.problems import unavailable
from target.state import current_database, current_settings

UNSAFE_WARNING = (
    "TARGET_CONCURRENCY=unsafe: this service can overbook authorizations on purpose; "
    "use it only to show that the integrity checks catch it"
)

blueprint = Blueprint("health", __name__)


@blueprint.get("/healthz")
async def get_health() -> ResponseReturnValue:
    """Answer 200 with the strategy in use when the database answers, else 503."""
    try:
        async with current_database().connect() as connection:
            await connection.execute("SELECT 1")
    except (psycopg.Error, OSError) as error:
        raise unavailable("database unreachable") from error
    concurrency = current_settings().concurrency
    body = {"status": "ok", "concurrency": concurrency}
    if concurrency == "unsafe":
        body["warning"] = UNSAFE_WARNING
    return body
