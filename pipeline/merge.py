"""`invoke load-test.merge SHARDS --run-dir RUN_DIR`: one verdict from a run spread over N hosts.

Merges the shards' results exactly (load_runner/merge.py), then runs the integrity checks
against the service's database (DATABASE_URL, else the local cluster) with the union of all
shards' operations, and writes the report, as `load-test.all` does for a single-host run.

Exit codes: 0 on GO; 1 on CONDITIONAL or NO-GO; 2 bad input (shards that do not belong
together, a missing shard without --allow-missing, no such folder): one line, nothing written.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

from integrity import format_report, run_checks, write_integrity_json
from load_runner.merge import find_shard_results, merge_shards, read_shard_result
from local_postgres import database_url
from pipeline.commands import GO, default_fixtures_path
from pipeline.exits import EXIT_FAILED, fail
from pipeline.run import RunLog
from pipeline.rundirs import new_run_dir, resolve_reports_root
from reporting.report import write_report
from results.files import FIXTURES_FILE, HTML_FILE
from results.merge import ShardMergeError, check_shards


def merge_command(
    shards: str,
    *,
    out: str | None = None,
    allow_missing: bool = False,
    fixtures: str | None = None,
) -> None:
    """Merge, check and report; print the verdict and the report's path; exit 0 only on GO."""
    paths = [Path(part).resolve() for part in re.split(r"[,\s]+", shards.strip()) if part]
    if not paths:
        fail("name the shard folders to merge")
    fixtures_path = Path(fixtures).resolve() if fixtures else default_fixtures_path()
    if not fixtures_path.exists():
        fail(f"fixtures file {fixtures_path} does not exist (the run's test-data.json; --fixtures)")

    # Check everything before writing anything: bad input leaves no half-made run folder.
    try:
        found = [(str(f), read_shard_result(f)) for f in find_shard_results(paths)]
        check_shards(found, allow_missing=allow_missing)
    except ShardMergeError as error:
        fail(str(error))
    run_dir = Path(out).resolve() if out else new_run_dir(resolve_reports_root())
    run_dir.mkdir(parents=True, exist_ok=True)
    decision, reasons = merge_and_report(paths, run_dir, fixtures_path, allow_missing=allow_missing)
    for reason in reasons:
        print(f"  - {reason}", file=sys.stderr)
    print(f"{decision}: report at {run_dir / HTML_FILE}")
    raise SystemExit(0 if decision == GO else EXIT_FAILED)


def merge_and_report(
    paths: list[Path], run_dir: Path, fixtures_path: Path, *, allow_missing: bool
) -> tuple[str, list[str]]:
    """Merge into ``run_dir``, check integrity, write the report; return (decision, reasons)."""
    shutil.copyfile(fixtures_path, run_dir / FIXTURES_FILE)
    merged = merge_shards(paths, run_dir, allow_missing=allow_missing, fixtures_path=fixtures_path)
    log = RunLog(
        run_dir,
        profile=merged.profile,
        scenarios=[merged.scenario],
        target_url=merged.result.get("target_url"),
        sharded={"shards": merged.result["shards"]["count"], "missing": list(merged.missing),
                 "merged_from": [str(path) for path in paths]},
    )  # fmt: skip
    with log.step("integrity", scenario=merged.scenario):
        report = run_checks(database_url(), [merged.result_dir], fixtures_path=fixtures_path)
        write_integrity_json(report, merged.result_dir)
        print(format_report(report), file=sys.stderr)
    log.finish()
    files = write_report(run_dir)
    return files.decision, list(files.summary["verdict"]["reasons"])
