"""The index of runs kept in the reports folder: one JSON line per report written.

`index.jsonl` beside the run folders: run id, commit, profile, strategy, transaction shape,
verdict, when. A run
whose report is written again gets a new line; the last line of a run id wins. Appending one
short line is atomic on POSIX (O_APPEND), so runs finishing together do not tear the file.
Run folders written before the index existed are read from their summary.json.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from results.files import INDEX_FILE, SUMMARY_FILE

RUN_NAME_GLOB = "*T*Z-*"
GO = "GO"
COLUMNS = ("run_id", "commit", "profile", "strategy", "verdict", "started_at")


def index_entry(run_dir: Path, summary: Mapping[str, Any]) -> dict[str, Any]:
    """Return the index line of a run from its summary.json."""
    git = (summary.get("facts") or {}).get("git") or {}
    return {
        "run_id": summary.get("run_id") or run_dir.name,
        "commit": git.get("commit") or _commit_from_name(run_dir.name),
        "profile": summary.get("profile"),
        "strategy": summary.get("strategy"),
        "transaction_shape": summary.get("transaction_shape"),
        "verdict": (summary.get("verdict") or {}).get("decision"),
        "started_at": summary.get("started_at"),
        "capacity": "capacity" in summary,
    }


def record_run(run_dir: Path, summary: Mapping[str, Any]) -> None:
    """Append a run's line to the index of the folder it lies in."""
    line = json.dumps(index_entry(run_dir, summary)) + "\n"
    with (run_dir.parent / INDEX_FILE).open("a", encoding="utf-8") as index:
        index.write(line)


def read_index(root: Path) -> list[dict[str, Any]]:
    """Return one entry per run under ``root``, oldest first; runs whose folder is gone dropped."""
    entries: dict[str, dict[str, Any]] = {}
    path = root / INDEX_FILE
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a line cut short by a crash: the others still stand
            if isinstance(entry, dict) and entry.get("run_id"):
                entries[str(entry["run_id"])] = entry
    for run_id, entry in entries.items():
        if "transaction_shape" not in entry:  # a line written before the index kept the shape
            summary = _read_summary(root / run_id)
            entry["transaction_shape"] = summary.get("transaction_shape") if summary else None
    for folder in root.glob(RUN_NAME_GLOB) if root.is_dir() else ():
        if folder.name not in entries:
            summary = _read_summary(folder)
            if summary is not None:
                entries[folder.name] = index_entry(folder, summary)
    return [entries[run_id] for run_id in sorted(entries) if (root / run_id).is_dir()]


def latest_go(
    entries: Sequence[Mapping[str, Any]],
    *,
    profile: str,
    strategy: str | None = None,
    transaction_shape: str | None = None,
    exclude: str | None = None,
) -> Mapping[str, Any] | None:
    """Return the newest GO run of ``profile`` (and ``strategy``, and ``transaction_shape``).

    A capacity search is never one; nor is a run whose shape is unknown when a shape is asked.
    """
    for entry in reversed(entries):
        if (
            entry.get("verdict") == GO
            and entry.get("profile") == profile
            and (strategy is None or entry.get("strategy") == strategy)
            and (transaction_shape is None or entry.get("transaction_shape") == transaction_shape)
            and not entry.get("capacity")
            and entry.get("run_id") != exclude
        ):
            return entry
    return None


def format_index(entries: Sequence[Mapping[str, Any]]) -> str:
    """Return the index as an aligned text table, newest last."""
    rows = [list(COLUMNS)] + [
        [str(entry.get(column) or "—") for column in COLUMNS] for entry in entries
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _read_summary(run_dir: Path) -> dict[str, Any] | None:
    """Return a run folder's summary.json; None when it is missing or unreadable."""
    try:
        summary = json.loads((run_dir / SUMMARY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) else None


def _commit_from_name(name: str) -> str | None:
    parts = name.split("-")
    return parts[1] if len(parts) > 1 else None
