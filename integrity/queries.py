"""Load the named queries of verify.sql."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

VERIFY_SQL = Path(__file__).resolve().parent / "verify.sql"
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


def query(name: str) -> str:
    """Return the query called ``name``."""
    return named_queries()[name]
