"""The command line: check one history, print a short summary, write anomalies.json."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from anomalies.checker import check_history
from anomalies.history import HistoryInputError, find_history_file
from anomalies.models import DEFAULT_MODEL, MODELS, normalise_model

ANOMALIES_FILE = "anomalies.json"
EXIT_VALID = 0
EXIT_ANOMALIES = 1
EXIT_BAD_INPUT = 2


def output_path(history_file: Path, out: str | None) -> Path:
    """Return where anomalies.json goes: beside the history, or `out` (a folder or a .json)."""
    if out is None:
        return history_file.parent / ANOMALIES_FILE
    target = Path(out)
    return target if target.suffix == ".json" else target / ANOMALIES_FILE


def check_history_command(path: str, require: str = DEFAULT_MODEL, out: str | None = None) -> int:
    """Check a history file or run folder; return 0 valid, 1 forbidden anomalies, 2 bad input."""
    try:
        model = normalise_model(require)
        history_file = find_history_file(path)
        result = check_history(history_file, require=model)
    except (HistoryInputError, ValueError) as error:
        print(f"check-history: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    target = output_path(history_file, out)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(result.to_json(), indent=2) + "\n", encoding="utf-8")
    print(result.summary())
    print(f"written: {target}")
    return EXIT_VALID if result.valid else EXIT_ANOMALIES


def main(argv: list[str] | None = None) -> int:
    """Parse `python -m anomalies PATH [--require MODEL] [--out PATH]` and run the check."""
    parser = argparse.ArgumentParser(
        prog="python -m anomalies",
        description="Check a list-append history.jsonl for isolation anomalies, as Elle does.",
    )
    parser.add_argument("path", help="history.jsonl, or a run or scenario folder holding one")
    parser.add_argument(
        "--require",
        default=DEFAULT_MODEL,
        help=f"the consistency model the history must satisfy (default {DEFAULT_MODEL}); "
        f"one of: {', '.join(MODELS)}",
    )
    parser.add_argument("--out", default=None, help="folder or .json file for anomalies.json")
    arguments = parser.parse_args(argv)
    return check_history_command(arguments.path, require=arguments.require, out=arguments.out)
