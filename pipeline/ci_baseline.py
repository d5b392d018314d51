"""Pick a pull request's baseline among reports folders downloaded from main's CI runs.

The baseline must be a GO run of the same profile, strategy and transaction shape: a NO-GO
run of main, or a run of another shape, would make the comparison meaningless. Each folder
given is the `load-test-report` artifact of one run of main (its `index.jsonl` and run
folders); the newest matching run among them wins.

CI runs this before the project is installed, with the runner's Python: standard library
only (reporting.run_index and results.files need nothing else).

    python3 -m pipeline.ci_baseline --profile smoke --strategy serializable \\
        --transaction-shape interactive candidates/*

prints the chosen run folder, or nothing when none matches; it exits 0 either way.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from reporting.run_index import latest_go, read_index


def pick_baseline(
    reports_folders: Sequence[Path], *, profile: str, strategy: str, transaction_shape: str
) -> Path | None:
    """Return the newest GO run of that profile, strategy and shape among the folders."""
    found = []
    for root in reports_folders:
        entry = latest_go(
            read_index(root),
            profile=profile,
            strategy=strategy,
            transaction_shape=transaction_shape,
        )
        if entry is not None:
            # Run ids start with their UTC start time (20261126T210000Z-<commit>): they sort.
            found.append((str(entry["run_id"]), root / str(entry["run_id"])))
    return max(found)[1] if found else None


def main(argv: Sequence[str] | None = None) -> int:
    """Print the chosen baseline's run folder (nothing when there is none); return 0."""
    parser = argparse.ArgumentParser(prog="python3 -m pipeline.ci_baseline", description=__doc__)
    parser.add_argument("--profile", required=True)
    parser.add_argument("--strategy", required=True)
    parser.add_argument("--transaction-shape", required=True)
    parser.add_argument("reports_folders", nargs="*", type=Path)
    options = parser.parse_args(argv)
    chosen = pick_baseline(
        [folder for folder in options.reports_folders if folder.is_dir()],
        profile=options.profile,
        strategy=options.strategy,
        transaction_shape=options.transaction_shape,
    )
    if chosen is not None:
        print(chosen.resolve())
    else:
        print("no GO run of main with this profile, strategy and shape", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
