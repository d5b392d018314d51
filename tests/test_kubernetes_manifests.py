"""The Kubernetes manifests parse, and the commands they run are ones the CLI accepts.

Kubernetes cannot run here: each shard pod's command is run through a real `sh` with `exec`
swapped for printf, for every JOB_COMPLETION_INDEX, and the words it would execute are checked
against the Invoke task's own options and the shard parser.
"""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from load_runner.sharding import Shard, parse_shard

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = PROJECT_ROOT / "deploy" / "kubernetes"
VALUES = {"SHARDS": "4", "START_AT": "1900000000", "RUN_NAME": "run-7"}


def _load(name: str) -> list[dict[str, Any]]:
    text = (MANIFESTS / name).read_text()
    for key, value in VALUES.items():  # what `envsubst '${SHARDS} ...'` does
        text = text.replace(f"${{{key}}}", value).replace(f"${key}", value)
    return [document for document in yaml.safe_load_all(text) if document]


def _tasks_module() -> Any:
    # tasks.py sits at the project root, outside the installed packages: load it by path.
    spec = importlib.util.spec_from_file_location("loadtest_tasks", PROJECT_ROOT / "tasks.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _task_options(name: str) -> set[str]:
    collection, task_name = name.split(".")
    task = _tasks_module().namespace.collections[collection].tasks[task_name]
    return {f"--{argument.name.replace('_', '-')}" for argument in task.get_arguments()}


def _executed_words(container: dict[str, Any], index: int) -> list[str]:
    environment = {item["name"]: item["value"] for item in container["env"] if "value" in item}
    script = container["args"][0].replace("exec invoke", "printf '%s\\n'", 1)
    completed = subprocess.run(
        ["sh", "-c", script],
        env={**environment, "JOB_COMPLETION_INDEX": str(index), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    return completed.stdout.splitlines()


def test_every_manifest_parses_with_a_kind_and_a_name() -> None:
    names = sorted(path.name for path in MANIFESTS.glob("*.yaml"))
    assert names == [
        "merge-job.yaml", "results-volume.yaml", "service.yaml", "setup-job.yaml",
        "shards-job.yaml",
    ]  # fmt: skip
    for name in names:
        for document in _load(name):
            assert document["apiVersion"]
            assert document["kind"]
            assert document["metadata"]["name"]


def test_the_shards_are_an_indexed_job_of_n_pods_at_once() -> None:
    (job,) = _load("shards-job.yaml")
    spec = job["spec"]
    assert job["kind"] == "Job"
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] == int(VALUES["SHARDS"])
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (claim,) = _load("results-volume.yaml")
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert "ReadWriteMany" in claim["spec"]["accessModes"]


@pytest.mark.parametrize("index", range(int(VALUES["SHARDS"])))
def test_each_pod_runs_its_shard_with_options_the_cli_accepts(index: int) -> None:
    (job,) = _load("shards-job.yaml")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    words = _executed_words(container, index)
    task, *arguments = words
    assert task == "load-test.scenario2"
    options = dict(zip(arguments[::2], arguments[1::2], strict=True))
    assert set(options) <= _task_options(task)
    assert parse_shard(options["--shard"]) == Shard(index + 1, int(VALUES["SHARDS"]))
    assert options["--start-at"] == VALUES["START_AT"]
    assert options["--out"] == f"/results/{VALUES['RUN_NAME']}/shard-{index + 1}"
    assert options["--target-url"].startswith("http://")


def test_the_merge_job_reads_the_folder_the_shards_write() -> None:
    (job,) = _load("merge-job.yaml")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    task, shards, *arguments = container["args"]
    assert task == "load-test.merge"
    assert shards == f"/results/{VALUES['RUN_NAME']}"
    assert set(arguments[::2]) <= _task_options(task)
    env_names = {item["name"] for item in container["env"]}
    assert "DATABASE_URL" in env_names  # the integrity checks read the service's database


def test_the_service_runs_target_serve_with_options_it_accepts() -> None:
    deployment = next(d for d in _load("service.yaml") if d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    task, *arguments = container["args"]
    assert task == "target.serve"
    options = {word for word in arguments if word.startswith("--")}
    assert options <= _task_options("target.serve")
    assert arguments[arguments.index("--host") + 1] == "0.0.0.0"
