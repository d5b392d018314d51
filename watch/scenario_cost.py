"""What a scenario cost: service and PostgreSQL CPU, 40001/40P01 retries, per committed operation.

The matrix and the report compare cells by these figures: a strategy or isolation level that
keeps the data correct only by retrying, or by burning the database's CPU, shows it here.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from results.files import COST_FILE, RESULT_FILE, SERVICE_FILE
from watch.cpu_watch import POSTGRES, SERVICE, CpuWatch, postgres_finder, process_tree
from watch.service_watch import CONFLICTS, RETRIES


def cost_watch(database_url: str, service_pid: int | None) -> CpuWatch:
    """Return a watch of the service's and PostgreSQL's CPU (either empty when not ours)."""
    groups: dict[str, Callable[[], set[int]]] = {
        SERVICE: lambda: process_tree(service_pid),
        POSTGRES: postgres_finder(database_url),
    }
    return CpuWatch(groups)


def scenario_cost(
    cpu_seconds: Mapping[str, float | None], result: Mapping[str, Any], service: Mapping[str, Any]
) -> dict[str, Any]:
    """Return the cost.json document: totals and per committed operation (pure)."""
    operations = result.get("operations") or {}
    committed = int((operations.get("by_outcome") or {}).get("ok") or 0)
    delta = service.get("delta") or {}
    retries, conflicts = delta.get(RETRIES), delta.get(CONFLICTS)
    window_s = float((result.get("totals") or {}).get("measured_window_s") or 0.0)

    def per_committed(total: float | None, scale: float = 1.0) -> float | None:
        if total is None or committed == 0:
            return None
        return round(scale * total / committed, 4)

    return {
        "schema_version": 1,
        "committed_operations": committed,
        "committed_per_s": round(committed / window_s, 2) if window_s else None,
        "retries": retries,
        "serialization_conflicts": conflicts,
        "retries_per_committed": per_committed(retries),
        "service_cpu_s": cpu_seconds.get(SERVICE),
        "postgres_cpu_s": cpu_seconds.get(POSTGRES),
        "service_cpu_ms_per_committed": per_committed(cpu_seconds.get(SERVICE), 1000.0),
        "postgres_cpu_ms_per_committed": per_committed(cpu_seconds.get(POSTGRES), 1000.0),
    }


def cpu_seconds_between(watch: CpuWatch, started: float, ended: float) -> dict[str, float | None]:
    """Return each group's CPU seconds over the window (None when it was not measured)."""
    cores = watch.cores_used(started, ended)
    inside = [s.at_epoch for s in watch.samples if started <= s.at_epoch <= ended]
    elapsed = inside[-1] - inside[0] if len(inside) >= 2 else 0.0
    return {
        name: None if used is None else round(used * elapsed, 4)
        for name, used in cores.items()
        if name in (SERVICE, POSTGRES)
    }


def write_scenario_cost(
    result_dir: Path, watch: CpuWatch, started: float, ended: float | None = None
) -> Path | None:
    """Write cost.json beside result.json and service.json; None when either is missing."""
    try:
        result = json.loads((result_dir / RESULT_FILE).read_text(encoding="utf-8"))
        service = json.loads((result_dir / SERVICE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    cpu = cpu_seconds_between(watch, started, ended or time.time())
    path = result_dir / COST_FILE
    path.write_text(json.dumps(scenario_cost(cpu, result, service), indent=2) + "\n")
    return path


def read_costs(scenario_dirs: Sequence[Path]) -> dict[str, dict[str, Any]]:
    """Return each scenario folder's cost.json by scenario name (those that have one)."""
    costs = {}
    for folder in scenario_dirs:
        try:
            costs[folder.name] = json.loads((folder / COST_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
    return costs
