"""The app factory: settings in, a Quart app with its blueprints and error handling out."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import psycopg
import sqlalchemy.exc
from quart import Quart, Response, g, request
from quart_schema import RequestSchemaValidationError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge, RequestTimeout

from target import metrics
from target.blueprints import authorizations, health, lists, openapi, sessions, tokens
from target.blueprints import metrics as metrics_routes
from target.blueprints.health import UNSAFE_WARNING
from target.database import Database, is_database_unreachable
from target.loop_lag import watch_loop_lag
from target.openapi import install_openapi
from target.problems import (
    CODES_BY_STATUS,
    HTTP_ERROR,
    INTERNAL_ERROR,
    ProblemError,
    invalid_request,
    problem_response,
    unavailable,
)
from target.request_log import (
    configure_logging,
    flush_request_log_periodically,
    install_request_hooks,
)
from target.settings import Settings
from target.state import EXTENSION_KEY, ServiceState

log = logging.getLogger("target.app")


def create_app(settings: Settings | None = None) -> Quart:
    """Build the service; the database pool opens when serving starts."""
    settings = settings if settings is not None else Settings.from_env()
    configure_logging()
    app = Quart(__name__)
    # Quart enforces this while reading the body; our handler turns it into a problem document.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    state = ServiceState(settings=settings)
    app.extensions[EXTENSION_KEY] = state

    @app.before_serving
    async def open_database() -> None:
        state.database = Database(settings)
        try:
            await state.database.ensure_schedule_guards()
        except (psycopg.Error, OSError) as error:
            log.warning("schedule guards not applied yet (database unreachable): %s", error)
        state.background = [
            asyncio.create_task(flush_request_log_periodically()),
            asyncio.create_task(watch_loop_lag()),
        ]
        if settings.concurrency == "unsafe":
            log.warning("!!! %s !!!", UNSAFE_WARNING)
        log.info(
            "serving with TARGET_CONCURRENCY=%s, TARGET_TRANSACTION_SHAPE=%s, isolation %s",
            settings.concurrency,
            settings.transaction_shape,
            settings.isolation_level,
        )

    @app.after_serving
    async def close_database() -> None:
        for task in state.background:
            task.cancel()
        if state.database is not None:
            await state.database.dispose()
        metrics.forget_this_worker()

    install_openapi(app)
    for blueprint in (
        health.blueprint,
        tokens.blueprint,
        authorizations.blueprint,
        sessions.blueprint,
        lists.blueprint,
        metrics_routes.blueprint,
        openapi.blueprint,
    ):
        app.register_blueprint(blueprint)
    install_request_hooks(app)
    install_error_handlers(app)
    return app


async def drain_request_body() -> None:
    """Read what is left of the request body, so the connection can carry the next request.

    Refusing a request before reading its body (a bad token, a malformed id) would leave the
    body unread, and Hypercorn then closes the keep-alive connection under the client.
    """
    with contextlib.suppress(RequestEntityTooLarge, RequestTimeout):
        await request.get_data(cache=False)


def install_error_handlers(app: Quart) -> None:
    """Render every error as a problem document; never leak a traceback."""

    @app.errorhandler(ProblemError)
    async def handle_problem(problem: ProblemError) -> Response:
        g.problem_code = problem.code
        await drain_request_body()
        return problem_response(problem)

    @app.errorhandler(RequestSchemaValidationError)
    async def handle_schema_validation(error: RequestSchemaValidationError) -> Response:
        # quart-schema's validate_* decorators would answer 400 with their own body.
        return await handle_problem(
            invalid_request(f"request does not match the schema: {error.validation_error}")
        )

    @app.errorhandler(HTTPException)
    async def handle_http_exception(error: HTTPException) -> Response:
        status = error.code or 500
        problem = ProblemError(
            status, CODES_BY_STATUS.get(status, HTTP_ERROR), error.description or ""
        )
        if status == 405 and error.get_headers():
            problem.headers.update(
                {name: value for name, value in error.get_headers() if name.lower() == "allow"}
            )
        return await handle_problem(problem)

    @app.errorhandler(psycopg.Error)
    @app.errorhandler(sqlalchemy.exc.SQLAlchemyError)
    async def handle_database_error(error: Exception) -> Response:
        if is_database_unreachable(error):
            return await handle_problem(unavailable("database unreachable"))
        return await handle_unexpected(error)

    @app.errorhandler(Exception)
    async def handle_unexpected(error: Exception) -> Response:
        log.error("unhandled error", exc_info=error)
        return await handle_problem(
            ProblemError(500, INTERNAL_ERROR, "the service failed to handle this request")
        )
