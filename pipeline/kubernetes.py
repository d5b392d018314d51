"""`invoke deploy.render`: the Kubernetes manifests of one sharded run, set by YAML, not by text.

The manifests under deploy/kubernetes/ are valid as committed (run `example`, 4 shards, image
`clinic-loadtest:latest`). Rendering reads them as YAML and sets each value where it belongs:
the image of every container (one parameter), the run's name in the names and labels of its
Jobs and pods and in their RUN_NAME, the shard count in the Indexed Job's completions and
parallelism and its SHARDS, the start time, the scenario's task and the profile. An env var
the base manifests lack is an error, so the base and this code cannot drift apart silently.
"""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from load_runner.profiles import ProfileError, load_scenario_config

MANIFESTS_DIR = Path(__file__).resolve().parent.parent / "deploy" / "kubernetes"
# In the order they are applied: volume and service, then set-up, shards, merge, collector.
MANIFEST_FILES = (
    "results-volume.yaml",
    "service.yaml",
    "setup-job.yaml",
    "shards-job.yaml",
    "merge-job.yaml",
    "collector-pod.yaml",
)
SHARDS_FILE = "shards-job.yaml"
BASE_RUN_NAME = "example"  # the run the committed manifests are written for
RUN_LABEL = "loadtest/run"
DEFAULT_IMAGE = "clinic-loadtest:latest"
DEFAULT_TARGET_URL = "http://reservation-service:8000"
DEFAULT_START_LEAD_S = 120  # pulling the image and starting the pods must take less
# The shard tasks of tasks.py by scenario: `invoke load-test.scenarioN --shard I/N`.
SCENARIO_TASKS = {
    "high_contention": "load-test.scenario1",
    "high_throughput": "load-test.scenario2",
    "mixed_operations": "load-test.scenario3",
    "session_scheduling": "load-test.scenario4",
}
# A name Kubernetes accepts in a Job's name once prefixed (RFC 1123 label, short enough).
RUN_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$")


class KubernetesPlanError(ValueError):
    """A render option that cannot make a valid run (one line, for exit 2)."""


@dataclass(frozen=True)
class KubernetesPlan:
    """Everything one sharded run's manifests are rendered with."""

    run_name: str
    shards: int
    start_at: int  # UNIX time on the service's clock
    image: str = DEFAULT_IMAGE
    scenario: str = "high_throughput"
    profile: str = "full"
    target_url: str = DEFAULT_TARGET_URL


def plan_from_options(
    *,
    shards: str | int,
    start_at: str | int = "",
    image: str = "",
    scenario: str = "high_throughput",
    profile: str = "full",
    run_name: str = "",
    target_url: str = "",
    now: float | None = None,
) -> KubernetesPlan:
    """Check the command line's options once and return the plan; raise KubernetesPlanError."""
    now = time.time() if now is None else now
    try:
        shard_count = int(shards)
    except ValueError:
        raise KubernetesPlanError(f"--shards must be a whole number, not {shards!r}") from None
    if shard_count < 1:
        raise KubernetesPlanError(f"--shards must be at least 1, not {shard_count}")
    try:
        start = int(start_at) if str(start_at) else int(now) + DEFAULT_START_LEAD_S
    except ValueError:
        raise KubernetesPlanError(
            f"--start-at must be a UNIX time in seconds, not {start_at!r}"
        ) from None
    if scenario not in SCENARIO_TASKS:
        raise KubernetesPlanError(
            f"--scenario must be one of {', '.join(SCENARIO_TASKS)}, not {scenario!r}"
        )
    try:
        load_scenario_config(scenario, profile)
    except ProfileError as error:
        raise KubernetesPlanError(str(error)) from None
    name = run_name or f"run-{start}"
    if not RUN_NAME.match(name):
        raise KubernetesPlanError(
            f"--run-name must be lower-case letters, digits and '-' (at most 40), not {name!r}"
        )
    return KubernetesPlan(
        run_name=name,
        shards=shard_count,
        start_at=start,
        image=image or DEFAULT_IMAGE,
        scenario=scenario,
        profile=profile,
        target_url=target_url or DEFAULT_TARGET_URL,
    )


def load_base(directory: Path = MANIFESTS_DIR) -> dict[str, list[dict[str, Any]]]:
    """Return the committed manifests, file by file, as YAML documents."""
    return {
        name: [doc for doc in yaml.safe_load_all((directory / name).read_text()) if doc]
        for name in MANIFEST_FILES
    }


def render_manifests(
    base: Mapping[str, list[dict[str, Any]]], plan: KubernetesPlan
) -> dict[str, list[dict[str, Any]]]:
    """Return the manifests of ``plan``'s run: pure, the base documents are not changed."""
    rendered = {name: copy.deepcopy(list(docs)) for name, docs in base.items()}
    for name, docs in rendered.items():
        for doc in docs:
            for container in _containers(doc):
                container["image"] = plan.image
            if RUN_LABEL in (doc.get("metadata", {}).get("labels") or {}):
                _set_run(doc, plan.run_name)
            if name == SHARDS_FILE:
                _set_shards(doc, plan)
    return rendered


def write_manifests(rendered: Mapping[str, list[dict[str, Any]]], out_dir: Path) -> list[Path]:
    """Write each rendered file into ``out_dir``, numbered in the order they are applied."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for number, name in enumerate(MANIFEST_FILES, start=1):
        path = out_dir / f"{number}-{name}"
        header = f"# Rendered by `invoke deploy.render` from deploy/kubernetes/{name}.\n"
        text = yaml.safe_dump_all(rendered[name], sort_keys=False)
        path.write_text(header + text, encoding="utf-8")
        paths.append(path)
    return paths


def render_command(out: str, **options: Any) -> None:
    """Render one run's manifests into ``out``; print them and the commands that run them."""
    from pipeline.exits import fail

    try:
        plan = plan_from_options(**options)
    except KubernetesPlanError as error:
        fail(str(error))
    out_dir = Path(out or f"kubernetes-{plan.run_name}")
    paths = write_manifests(render_manifests(load_base(), plan), out_dir)
    for path in paths:
        print(path)
    print(
        f"run {plan.run_name}: {plan.shards} shards of {plan.scenario} ({plan.profile}) start at "
        f"{plan.start_at} ({time.strftime('%H:%M:%S', time.localtime(plan.start_at))}); "
        "the README's Kubernetes section has the kubectl commands"
    )


def _pod_spec(doc: dict[str, Any]) -> dict[str, Any] | None:
    if doc.get("kind") == "Pod":
        return doc["spec"]
    template = (doc.get("spec") or {}).get("template")
    return template["spec"] if template else None


def _containers(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    spec = _pod_spec(doc) or {}
    yield from spec.get("initContainers") or []
    yield from spec.get("containers") or []


def _set_run(doc: dict[str, Any], run_name: str) -> None:
    """Name a run's Job or pod after the run, and label everything it makes with it."""
    metadata = doc["metadata"]
    metadata["name"] = metadata["name"].removesuffix(BASE_RUN_NAME) + run_name
    metadata["labels"][RUN_LABEL] = run_name
    template = (doc.get("spec") or {}).get("template")
    if template:
        template["metadata"]["labels"][RUN_LABEL] = run_name
    affinity = (_pod_spec(doc) or {}).get("affinity") or {}
    for term in (affinity.get("podAntiAffinity") or {}).get(
        "preferredDuringSchedulingIgnoredDuringExecution", []
    ):
        term["podAffinityTerm"]["labelSelector"]["matchLabels"][RUN_LABEL] = run_name
    for container in _containers(doc):
        if any(item["name"] == "RUN_NAME" for item in container.get("env") or []):
            _set_env(container, "RUN_NAME", run_name)


def _set_shards(doc: dict[str, Any], plan: KubernetesPlan) -> None:
    doc["spec"]["completions"] = doc["spec"]["parallelism"] = plan.shards
    (container,) = _pod_spec(doc)["containers"]  # type: ignore[index]
    _set_env(container, "SCENARIO_TASK", SCENARIO_TASKS[plan.scenario])
    _set_env(container, "PROFILE", plan.profile)
    _set_env(container, "SHARDS", str(plan.shards))
    _set_env(container, "START_AT", str(plan.start_at))
    _set_env(container, "TARGET_URL", plan.target_url)


def _set_env(container: dict[str, Any], name: str, value: str) -> None:
    """Set an env var the base manifest declares; a missing one means the base changed."""
    for item in container.get("env") or []:
        if item["name"] == name:
            item["value"] = value
            return
    raise KeyError(f"container {container['name']!r} declares no env var {name}")
