"""How every command fails: one `error:` line on stderr and a non-zero exit, never a traceback.

Exit codes: 2 bad input or an environment the tools cannot work in (nothing was changed);
the commands use 1 for checks or a verdict that failed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import NoReturn, TypeVar

import alembic.util
import psycopg
import sqlalchemy.exc

from local_postgres import ClusterError
from pipeline.exclusive import DatabaseBusyError
from pipeline.rundirs import RunDirError
from pipeline.service_process import ServiceStartError, TargetUnreachableError
from seeding import SeedingError

T = TypeVar("T")
EXIT_BAD_INPUT = 2
EXIT_FAILED = 1
# Errors whose message already tells the user what to fix.
USER_ERRORS: tuple[type[Exception], ...] = (
    ClusterError,
    SeedingError,
    DatabaseBusyError,
    RunDirError,
    TargetUnreachableError,
    alembic.util.CommandError,
)


def fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    """Print one clear error line and exit non-zero."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def first_line(error: BaseException) -> str:
    """Return the first line of an error's message (its type's name when it has none)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def described(error: BaseException) -> str:
    """Return the error's type and first line, as a run log records a failed step."""
    if not str(error).strip():
        return type(error).__name__
    return f"{type(error).__name__}: {first_line(error)}"


def cleanly(step: Callable[[], T]) -> T:
    """Run ``step``; turn an error the user can fix into one `error:` line and exit 2."""
    try:
        return step()
    except USER_ERRORS as error:
        fail(str(error))
    except ServiceStartError as error:
        fail(first_line(error))  # the rest is the service's log tail, in its log file
    except (psycopg.OperationalError, sqlalchemy.exc.OperationalError) as error:
        fail(f"database unreachable: {first_line(error)}")
    except (psycopg.Error, sqlalchemy.exc.DBAPIError) as error:
        fail(f"database error: {first_line(error)}")
