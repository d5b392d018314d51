"""`invoke load-test.matrix`: the suite once per strategy, in interleaved repeats, one comparison.

Interleaved (repeat 1: A B C, repeat 2: A B C, ...) rather than blocked (A A B B C C), so a
slow spell of the machine lands on every strategy alike instead of on one. Each run is an
ordinary `load-test.all` run (its own folder, report and index line); the matrix goes to
`<reports>/matrix-<UTC time>/` as matrix.html, matrix.json and matrix.md.

Exit codes: 0 when a strategy is recommended, 1 when none met every threshold, 2 on bad input.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Mapping
from pathlib import Path

from markupsafe import Markup

from pipeline.compare_command import comparison_margins
from pipeline.exits import fail
from pipeline.plan import RunPlan, resolve_plan
from pipeline.run import run_plan
from reporting.compare import DEFAULT_MARGINS, Margin, spectrum
from reporting.compare_inputs import CompareInputError, RunSample, load_run_sample
from reporting.matrix import StrategyRuns, matrix_document
from reporting.render import environment
from reporting.spectrum_chart import spectrum_svg
from results.documents import SummaryDocument
from results.files import MATRIX_FILE, SUMMARY_FILE
from results.reader import DocumentError, read_checked_object

DEFAULT_STRATEGIES = "serializable,for_update,atomic"
MATRIX_PREFIX = "matrix-"
COLOURS = ("#1c7ed6", "#e8590c", "#2b8a3e", "#c92a2a", "#862e9c")


def matrix_command(
    *,
    strategies: str = DEFAULT_STRATEGIES,
    repeats: str | int = 2,
    profile: str = "",
    reports_dir: str | None = None,
    workers: str | int | None = None,
    isolations: str = "",
    transaction_shapes: str = "",
    scenarios: str = "",
) -> None:
    """Run every cell ``repeats`` times, interleaved; write and summarise the matrix.

    A cell is a strategy, a transaction shape and an isolation level (empty: the strategy's
    own); it is named by its strategy alone when only strategies vary.
    """
    chosen = [name.strip() for name in strategies.split(",") if name.strip()]
    count = _whole_number("--repeats", repeats)
    if not chosen or len(set(chosen)) != len(chosen):
        fail(f"--strategies must name each strategy once, comma-separated, not {strategies!r}")
    shapes = [part.strip() for part in transaction_shapes.split(",") if part.strip()] or [""]
    levels = [part.strip() for part in isolations.split(",") if part.strip()] or [""]
    # Every cell's plan before the first run: a bad strategy, shape or level is one line.
    cells: dict[str, RunPlan] = {}
    for strategy in chosen:
        for shape in shapes:
            for level in levels:
                plan = resolve_plan(
                    profile=profile,
                    scenarios=scenarios,
                    strategy=strategy,
                    transaction_shape=shape,
                    isolation=level,
                    workers=workers,
                    reports_root=reports_dir,
                )
                name = strategy if shapes == levels == [""] else plan.dimensions.label()
                cells[name] = plan
    first = next(iter(cells.values()))
    root = first.reports_root
    # A malformed [compare.margins] fails before any run, too.
    margins = comparison_margins(profiles=first.profiles)
    run_dirs: dict[str, list[Path]] = {name: [] for name in cells}
    for repeat in range(1, count + 1):
        for name, plan in cells.items():
            print(f"[matrix] repeat {repeat}/{count}: {name}", file=sys.stderr, flush=True)
            outcome = run_plan(plan)
            result = f"{outcome.decision} ({outcome.run_dir.name})"
            print(f"[matrix] {name}: {result}", file=sys.stderr)
            run_dirs[name].append(outcome.run_dir)
    profile = first.profile
    out_dir = root / f"{MATRIX_PREFIX}{dt.datetime.now(dt.UTC).strftime('%Y%m%dT%H%M%SZ')}"
    document = write_matrix(run_dirs, out_dir, profile=profile, repeats=count, margins=margins)
    recommended = document["recommendation"]
    print(
        f"{'recommended: ' + recommended if recommended else 'no recommendation'}: "
        f"{document['recommendation_reason']}; matrix at {out_dir / 'matrix.html'}"
    )
    raise SystemExit(0 if recommended else 1)


def write_matrix(
    run_dirs: dict[str, list[Path]],
    out_dir: Path,
    *,
    profile: str,
    repeats: int,
    margins: Mapping[str, Margin] = DEFAULT_MARGINS,
) -> dict:
    """Load each strategy's runs, build matrix.json and write it with its HTML and Markdown."""
    entries = []
    for strategy, folders in run_dirs.items():
        runs: list[RunSample] = []
        summaries = []
        for folder in folders:
            try:
                summaries.append(read_checked_object(folder / SUMMARY_FILE, SummaryDocument))
            except DocumentError as error:
                fail(str(error))
            try:
                runs.append(load_run_sample(folder))
            except CompareInputError as error:
                print(f"[matrix] {folder.name} left out of the figures: {error}", file=sys.stderr)
        entries.append(StrategyRuns(strategy, tuple(runs), tuple(summaries)))
    document = matrix_document(entries, profile=profile, repeats=repeats, margins=margins)
    with_runs = [entry for entry in entries if entry.runs]
    spectra = {
        name: Markup(
            spectrum_svg(
                [
                    spectrum([v for run in entry.runs for v in run.latencies_ms.get(name, ())])
                    for entry in with_runs
                ],
                label=f"{name}: latency percentile spectrum per strategy",
                names=[entry.strategy for entry in with_runs],
                colours=COLOURS,
            )
        )
        for name in document["scenarios"]
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    env = environment()
    (out_dir / MATRIX_FILE).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    (out_dir / "matrix.html").write_text(
        env.get_template("matrix.html.j2").render(doc=document, spectra=spectra), encoding="utf-8"
    )
    (out_dir / "matrix.md").write_text(
        env.get_template("matrix.md.j2").render(doc=document), encoding="utf-8"
    )
    return document


def _whole_number(option: str, value: str | int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        fail(f"{option} must be a whole number, not {value!r}")
    if number < 1:
        fail(f"{option} must be at least 1, not {number}")
    return number
