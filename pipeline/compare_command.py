"""`invoke load-test.compare` and `load-test.runs`: compare two runs; list the run index.

Exit codes: 0 when the comparison was written (whatever it found: the regression gate of
`load-test.all --baseline` is what fails a build); 2 on bad input, with one line on stderr
and nothing written.
"""

from __future__ import annotations

import sys
from pathlib import Path

from load_runner.profiles import ProfileError, ProfilesFile, read_profiles
from pipeline.exits import fail
from pipeline.rundirs import resolve_reports_root
from reporting.compare import Margin, margins_from_table, with_relative
from reporting.compare_inputs import CompareInputError, resolve_run_folder, same_commit_runs
from reporting.compare_report import ComparisonFiles, compare_runs, write_comparison
from reporting.run_index import format_index, read_index

COMPARE_DIR_PREFIX = "compare-"


def compare_command(
    base: str,
    new: str,
    *,
    out: str | None = None,
    tolerance: str | float | None = None,
    force: bool = False,
    same_commit: bool = False,
) -> None:
    """Compare run NEW with run BASE; write compare.html/.json/.md; print where and the gist.

    BASE and NEW may each list several runs separated by commas: repeats, pooled. With
    ``same_commit`` each side also takes the runs of its commit, profile, strategy, shape and
    isolation from its reports folder's index. Runs of different scenarios, transaction
    shapes or isolation levels test different things: refused unless ``force``.
    """
    margins = comparison_margins(tolerance)
    try:
        # Several runs a side (repeats, comma-separated): named after the first of each.
        new_dir = resolve_run_folder(new.split(",")[0].strip())
        base_dir = resolve_run_folder(base.split(",")[0].strip())
        if same_commit:
            base, new = with_same_commit_runs(base), with_same_commit_runs(new)
        document, spectra = compare_runs(base, new, margins=margins, force=force)
    except CompareInputError as error:
        fail(str(error))
    out_dir = Path(out).resolve() if out else new_dir / f"{COMPARE_DIR_PREFIX}{base_dir.name}"
    files = write_comparison(document, spectra, out_dir)
    print(summary_line(files))


def with_same_commit_runs(spec: str) -> str:
    """Return a side's runs, each joined by the index's runs of the same commit and settings."""
    folders: list[Path] = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        folders += [f for f in same_commit_runs(resolve_run_folder(part)) if f not in folders]
    return ",".join(map(str, folders))


def runs_command(*, reports_dir: str | None = None) -> None:
    """Print the run index of the reports folder, newest last."""
    root = resolve_reports_root(reports_dir)
    entries = read_index(root)
    if not entries:
        print(f"no run recorded in {root} yet", file=sys.stderr)
        return
    print(format_index(entries))


def comparison_margins(
    tolerance: str | float | None = None, profiles: ProfilesFile | None = None
) -> dict[str, Margin]:
    """Resolve the margins once: profiles.toml's `[compare.margins]`, then --tolerance; exit 2.

    --tolerance (percent of the base value) replaces the relative part of the latency and
    throughput margins; left out, the defaults (reporting/compare.py) and the table decide.
    ``profiles``: a run plan's read of the file, else it is read here.
    """
    share = None
    if tolerance is not None and tolerance != "":
        try:
            percent = float(tolerance)
        except ValueError:
            fail(f"--tolerance must be a percentage such as 5, not {tolerance!r}")
        if not 0 <= percent < 1000:
            fail(f"--tolerance must be between 0 and 1000 (percent), not {tolerance!r}")
        share = percent / 100
    try:
        return resolve_margins(share, profiles=profiles)
    except CompareInputError as error:
        fail(str(error))


def resolve_margins(
    tolerance: float | None = None,
    config_path: Path | None = None,
    profiles: ProfilesFile | None = None,
) -> dict[str, Margin]:
    """Return the comparison's margins: the defaults, profiles.toml's overrides, --tolerance.

    ``tolerance`` (a share of the base value) replaces the relative part of every margin
    that has one (latency, throughput). Raise CompareInputError on a malformed table.
    """
    try:
        profiles = profiles or read_profiles(config_path)
        margins = margins_from_table(profiles.compare_margins_table())
    except (ProfileError, ValueError) as error:
        raise CompareInputError(str(error)) from error
    return margins if tolerance is None else with_relative(margins, tolerance)


def summary_line(files: ComparisonFiles) -> str:
    """Say in one line what the comparison found, from how many runs, and where it is."""
    document = files.document
    if document["worse"]:
        gist = "worse: " + ", ".join(document["worse"])
    elif document["better"]:
        gist = "better: " + ", ".join(document["better"])
    else:
        gist = "no significant change"
    if document.get("within_margin"):
        gist += f" ({len(document['within_margin'])} within margin)"
    method = document["method"]
    runs = f"{method['base_runs']} run(s) against {method['new_runs']}"
    if method["between_runs"] != "covered":
        runs += f", noise between runs {method['between_runs']}"
    return f"{gist}; {runs}; comparison at {files.html_path}"
