"""Load the named queries of verify.sql and scheduling.sql."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

VERIFY_SQL = Path(__file__).resolve().parent / "verify.sql"
SCHEDULING_SQL = Path(__file__).resolve().parent / "scheduling.sql"
QUERY_FILES = (VERIFY_SQL, SCHEDULING_SQL)
NAME_LINE = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


@cache
def named_queries(path: Path = VERIFY_SQL) -> dict[str, str]:
    """Return every query of the file by the name in its "-- name:" line."""
    text = path.read_text(encoding="utf-8")
    marks = list(NAME_LINE.finditer(text))
    queries = {}
    for mark, following in zip(marks, [*marks[1:], None], strict=True):
        end = following.start() if following else len(text)
        queries[mark.group(1)] = text[mark.end() : end].strip()
    return queries


@cache
def all_named_queries() -> dict[str, str]:
    """Return the queries of every query file; a name given twice is an error, not a shadow."""
    queries: dict[str, str] = {}
    for path in QUERY_FILES:
        for name, text in named_queries(path).items():
            if name in queries:
                raise ValueError(f"query {name} is named twice ({path.name} and an earlier file)")
            queries[name] = text
    return queries


def query(name: str) -> str:
    """Return the query called ``name``."""
    return all_named_queries()[name]
