"""`invoke load-test.compare` and `load-test.runs`: compare two runs; list the run index.

Exit codes: 0 when the comparison was written (whatever it found: the regression gate of
`load-test.all --baseline` is what fails a build); 2 on bad input, with one line on stderr
and nothing written.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pipeline.exits import fail
from pipeline.rundirs import resolve_reports_root
from reporting.compare import DEFAULT_TOLERANCE
from reporting.compare_inputs import CompareInputError, resolve_run_folder
from reporting.compare_report import ComparisonFiles, compare_runs, write_comparison
from reporting.run_index import format_index, read_index
from results.files import RUN_FILE

COMPARE_DIR_PREFIX = "compare-"


def compare_command(
    base: str,
    new: str,
    *,
    out: str | None = None,
    tolerance: str | float | None = None,
    force: bool = False,
) -> None:
    """Compare run NEW with run BASE; write compare.html/.json/.md; print where and the gist.

    BASE and NEW may each list several runs separated by commas: repeats, pooled. Runs of
    different transaction shapes or isolation levels test different things: refused unless
    ``force``.
    """
    share = parse_tolerance(tolerance)
    try:
        # Several runs a side (repeats, comma-separated): named after the first of each.
        new_dir = resolve_run_folder(new.split(",")[0].strip())
        base_dir = resolve_run_folder(base.split(",")[0].strip())
        if not force:
            check_same_dimensions(base_dir, new_dir)
        document, spectra = compare_runs(base, new, tolerance=share)
    except CompareInputError as error:
        fail(str(error))
    out_dir = Path(out).resolve() if out else new_dir / f"{COMPARE_DIR_PREFIX}{base_dir.name}"
    files = write_comparison(document, spectra, out_dir)
    print(summary_line(files))


COMPARED_DIMENSIONS = ("transaction_shape", "isolation")


def check_same_dimensions(base_dir: Path, new_dir: Path) -> None:
    """Raise CompareInputError when two runs ran another transaction shape or isolation level."""
    sides = [_run_dimensions(folder) for folder in (base_dir, new_dir)]
    for name in COMPARED_DIMENSIONS:
        if sides[0][name] != sides[1][name]:
            raise CompareInputError(
                f"the runs differ in {name.replace('_', ' ')} ({sides[0][name]} against "
                f"{sides[1][name]}): they test different things; pass --force to compare anyway"
            )


def _run_dimensions(folder: Path) -> dict[str, object]:
    try:
        run = json.loads((folder / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        run = {}
    # Runs from before the dimensions existed ran the one-statement shape.
    return {
        "transaction_shape": run.get("transaction_shape") or "statement",
        "isolation": run.get("isolation"),
    }


def runs_command(*, reports_dir: str | None = None) -> None:
    """Print the run index of the reports folder, newest last."""
    root = resolve_reports_root(reports_dir)
    entries = read_index(root)
    if not entries:
        print(f"no run recorded in {root} yet", file=sys.stderr)
        return
    print(format_index(entries))


def parse_tolerance(tolerance: str | float | None) -> float:
    """Turn --tolerance (percent of the base value) into a share; exit 2 on a bad one."""
    if tolerance is None or tolerance == "":
        return DEFAULT_TOLERANCE
    try:
        percent = float(tolerance)
    except ValueError:
        fail(f"--tolerance must be a percentage such as 10, not {tolerance!r}")
    if not 0 <= percent < 1000:
        fail(f"--tolerance must be between 0 and 1000 (percent), not {tolerance!r}")
    return percent / 100


def summary_line(files: ComparisonFiles) -> str:
    """Say in one line what the comparison found and where it is."""
    document = files.document
    if document["worse"]:
        gist = "worse: " + ", ".join(document["worse"])
    elif document["better"]:
        gist = "better: " + ", ".join(document["better"])
    else:
        gist = "no significant change"
    return f"{gist}; comparison at {files.html_path}"
