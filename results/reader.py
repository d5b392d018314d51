"""Read a run's JSON files: the one way reporting and the commands read what a run left behind.

run.json, result.json and summary.json are decoded into their structs (results/documents.py);
the other files (integrity, service, faults...) are read as JSON objects. Anything wrong raises
one DocumentError whose message names the file and, for a document of the wrong shape, the field:
``reports/x/high_contention/result.json: Expected `float | null`, got `str` - at
`$.latency_ms.p95```. The files are parsed with the standard library's json, as they were
written (json.dumps writes NaN where a figure was not a number), then checked by msgspec.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from results.documents import Document, ResultDocument, RunDocument, SummaryDocument

DocumentT = TypeVar("DocumentT", bound=Document)


class DocumentError(ValueError):
    """A run's file that does not hold the document it should; the message names file and field."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class UnreadableDocumentError(DocumentError):
    """A file that cannot be read or parsed as a JSON object at all (cut short by a crash...)."""


def read_object(path: Path) -> dict[str, Any]:
    """Return the JSON object in ``path``; raise UnreadableDocumentError if there is none."""
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UnreadableDocumentError(path, f"unreadable: {error}") from None
    if not isinstance(document, dict):
        raise UnreadableDocumentError(path, "does not hold a JSON object")
    return document


def read_optional_object(path: Path) -> dict[str, Any] | None:
    """Return the JSON object in ``path``, or None when there is no such file."""
    return read_object(path) if Path(path).exists() else None


def checked(document: dict[str, Any], document_type: type[DocumentT], path: Path) -> DocumentT:
    """Return ``document`` (read from ``path``) as a ``document_type``; DocumentError if not one."""
    try:
        return msgspec.convert(document, document_type)
    except msgspec.ValidationError as error:
        raise DocumentError(Path(path), str(error)) from None


def read_document(path: Path, document_type: type[DocumentT]) -> DocumentT:
    """Return the document in ``path`` decoded as ``document_type``."""
    return checked(read_object(path), document_type, path)


def read_checked_object(path: Path, document_type: type[Document]) -> dict[str, Any]:
    """Return the JSON object in ``path`` as written, once it is known to be a ``document_type``.

    For the code that still reads the document as a dict (the verdict and the summary, which
    their tests feed hand-made dicts): the same check, without a second representation.
    """
    document = read_object(path)
    checked(document, document_type, path)
    return document


def read_result(path: Path) -> ResultDocument:
    """Return a scenario's result.json."""
    return read_document(path, ResultDocument)


def read_summary(path: Path) -> SummaryDocument:
    """Return a run's summary.json."""
    return read_document(path, SummaryDocument)


def read_run(path: Path) -> RunDocument:
    """Return a run's run.json."""
    return read_document(path, RunDocument)
