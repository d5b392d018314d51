"""The Kubernetes manifests validate, as committed and as rendered, and run commands the CLI takes.

Kubernetes cannot run here. The manifests are checked against the API's own schemas
(kubernetes-validate --strict: no unknown field, every type right), for a range of versions.
Each shard pod's command is run through a real `sh` with `exec` swapped for printf, for every
JOB_COMPLETION_INDEX, and the words it would execute are checked against the Invoke task's own
options and the shard parser; the merge's `$(VAR)` arguments are expanded as the kubelet does.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from load_runner.sharding import Shard, parse_shard
from pipeline.kubernetes import (
    MANIFEST_FILES,
    SCENARIO_TASKS,
    KubernetesPlan,
    KubernetesPlanError,
    load_base,
    plan_from_options,
    render_manifests,
    write_manifests,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = PROJECT_ROOT / "deploy" / "kubernetes"
README = PROJECT_ROOT / "README.md"
# The oldest and the newest release the cluster may run that kubernetes-validate knows.
KUBERNETES_VERSIONS = ("1.33.0", "1.37.0")
PLAN = KubernetesPlan(
    run_name="run-7",
    shards=4,
    start_at=1_900_000_000,
    image="registry.example/clinic-loadtest:7",
    scenario="high_throughput",
    profile="full",
)
KUBELET_VARIABLE = re.compile(r"\$\((\w+)\)")


def rendered(plan: KubernetesPlan = PLAN) -> dict[str, list[dict[str, Any]]]:
    return render_manifests(load_base(), plan)


def documents(manifests: dict[str, list[dict[str, Any]]]) -> Iterator[dict[str, Any]]:
    for docs in manifests.values():
        yield from docs


def pod_spec(doc: dict[str, Any]) -> dict[str, Any] | None:
    if doc["kind"] == "Pod":
        return doc["spec"]
    template = doc["spec"].get("template")
    return template["spec"] if template else None


def containers(manifests: dict[str, list[dict[str, Any]]]) -> Iterator[dict[str, Any]]:
    for doc in documents(manifests):
        spec = pod_spec(doc)
        if spec is not None:
            yield from spec.get("initContainers", [])
            yield from spec["containers"]


def the(manifests: dict[str, list[dict[str, Any]]], name: str, kind: str = "") -> dict[str, Any]:
    (doc,) = [d for d in manifests[name] if not kind or d["kind"] == kind]
    return doc


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container["env"] if "value" in item}


def _tasks_module() -> Any:
    # tasks.py sits at the project root, outside the installed packages: load it by path.
    spec = importlib.util.spec_from_file_location("loadtest_tasks", PROJECT_ROOT / "tasks.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _task(name: str) -> Any:
    collection, task_name = name.split(".")
    return _tasks_module().namespace.collections[collection].tasks[task_name]


def _task_options(name: str) -> set[str]:
    return {f"--{argument.name.replace('_', '-')}" for argument in _task(name).get_arguments()}


def _executed_words(container: dict[str, Any], index: int) -> list[str]:
    script = container["args"][0].replace("exec invoke", "printf '%s\\n'", 1)
    completed = subprocess.run(
        ["sh", "-c", script],
        env={**env_of(container), "JOB_COMPLETION_INDEX": str(index), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    return completed.stdout.splitlines()


def _kubelet_args(container: dict[str, Any]) -> list[str]:
    """Expand `$(NAME)` in args from the container's env, as the kubelet does."""
    env = env_of(container)
    return [KUBELET_VARIABLE.sub(lambda m: env[m.group(1)], word) for word in container["args"]]


def test_the_committed_files_are_the_ones_rendered() -> None:
    assert sorted(path.name for path in MANIFESTS.glob("*.yaml")) == sorted(MANIFEST_FILES)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_the_manifests_validate_strictly_as_committed(version: str) -> None:
    for doc in documents(load_base()):
        kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_the_rendered_manifests_validate_strictly(version: str, tmp_path: Path) -> None:
    paths = write_manifests(rendered(), tmp_path)
    assert [path.name for path in paths] == [f"{i}-{n}" for i, n in enumerate(MANIFEST_FILES, 1)]
    for path in paths:
        for doc in yaml.safe_load_all(path.read_text()):
            kubernetes_validate.validate(doc, version, strict=True)


def test_a_wrong_value_fails_validation() -> None:
    # So that the tests above can fail: the committed file before this change had this.
    job = the(rendered(), "shards-job.yaml")
    job["spec"]["completions"] = "${SHARDS}"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, KUBERNETES_VERSIONS[-1], strict=True)


def test_one_image_parameter_sets_every_container() -> None:
    base_images = {container["image"] for container in containers(load_base())}
    assert base_images == {"clinic-loadtest:latest"}
    images = [container["image"] for container in containers(rendered())]
    assert len(images) == 5  # service, set-up, shard, merge, collector
    assert set(images) == {PLAN.image}


def test_every_container_has_requests_and_limits_and_every_job_a_ttl() -> None:
    for container in containers(rendered()):
        resources = container["resources"]
        for kind in ("requests", "limits"):
            assert set(resources[kind]) == {"cpu", "memory"}, (container["name"], kind)
    jobs = [doc for doc in documents(rendered()) if doc["kind"] == "Job"]
    assert len(jobs) == 3
    for job in jobs:
        assert job["spec"]["ttlSecondsAfterFinished"] > 0
    shard = the(rendered(), "shards-job.yaml")["spec"]["template"]["spec"]["containers"][0]
    # Guaranteed QoS: the generator is not throttled below what it asked for.
    assert shard["resources"]["requests"] == shard["resources"]["limits"]


def test_the_shards_are_an_indexed_job_of_n_pods_at_once() -> None:
    manifests = rendered()
    job = the(manifests, "shards-job.yaml")
    spec = job["spec"]
    assert job["metadata"]["name"] == f"loadtest-shards-{PLAN.run_name}"
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] == PLAN.shards
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    claim = the(manifests, "results-volume.yaml")
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert "ReadWriteMany" in claim["spec"]["accessModes"]
    (term,) = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    selector = term["podAffinityTerm"]["labelSelector"]["matchLabels"]
    assert (
        selector
        == {"loadtest/run": PLAN.run_name}
        == {"loadtest/run": spec["template"]["metadata"]["labels"]["loadtest/run"]}
    )


@pytest.mark.parametrize("index", range(PLAN.shards))
def test_each_pod_runs_its_shard_with_options_the_cli_accepts(index: int) -> None:
    (container,) = the(rendered(), "shards-job.yaml")["spec"]["template"]["spec"]["containers"]
    words = _executed_words(container, index)
    task, *arguments = words
    assert task == "load-test.scenario2"
    options = dict(zip(arguments[::2], arguments[1::2], strict=True))
    assert set(options) <= _task_options(task)
    assert parse_shard(options["--shard"]) == Shard(index + 1, PLAN.shards)
    assert options["--start-at"] == str(PLAN.start_at)
    assert options["--profile"] == PLAN.profile
    assert options["--run-dir"] == f"/results/{PLAN.run_name}/shard-{index + 1}"
    assert options["--target-url"].startswith("http://")


@pytest.mark.parametrize("scenario", sorted(SCENARIO_TASKS))
def test_the_scenario_and_profile_are_parameters(scenario: str) -> None:
    plan = plan_from_options(shards=2, start_at=1_900_000_000, scenario=scenario, profile="smoke")
    (container,) = the(rendered(plan), "shards-job.yaml")["spec"]["template"]["spec"]["containers"]
    task, *arguments = _executed_words(container, 0)
    assert task == SCENARIO_TASKS[scenario]
    assert f"({scenario})" in _task(task).__doc__  # tasks.py's scenarioN runs that scenario
    assert arguments[arguments.index("--profile") + 1] == "smoke"


def test_the_merge_job_reads_the_folder_the_shards_write_and_the_collector_mounts_it() -> None:
    manifests = rendered()
    merge = the(manifests, "merge-job.yaml")
    assert merge["metadata"]["name"] == f"loadtest-merge-{PLAN.run_name}"
    (container,) = merge["spec"]["template"]["spec"]["containers"]
    task, shards, *arguments = _kubelet_args(container)
    assert task == "load-test.merge"
    assert shards == f"/results/{PLAN.run_name}"
    assert set(arguments[::2]) <= _task_options(task)
    merged = arguments[arguments.index("--run-dir") + 1]
    assert merged == f"/results/{PLAN.run_name}/merged"
    env_names = {item["name"] for item in container["env"]}
    assert "DATABASE_URL" in env_names  # the integrity checks read the service's database
    collector = the(manifests, "collector-pod.yaml")
    assert collector["metadata"]["name"] == f"loadtest-collect-{PLAN.run_name}"
    (waiting,) = collector["spec"]["containers"]
    assert waiting["command"][0] == "sleep"  # stays running, so `kubectl cp` has a pod
    (mount,) = waiting["volumeMounts"]
    claims = {
        doc["metadata"]["name"]: volume["persistentVolumeClaim"]["claimName"]
        for doc in (merge, collector)
        for volume in pod_spec(doc)["volumes"]  # type: ignore[index]
    }
    assert len(set(claims.values())) == 1
    assert merged.startswith(mount["mountPath"] + "/")


def test_the_setup_job_belongs_to_the_run() -> None:
    setup = the(rendered(), "setup-job.yaml")
    assert setup["metadata"]["name"] == f"loadtest-setup-{PLAN.run_name}"
    (container,) = setup["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["load-test.setup"]


def test_the_service_runs_target_serve_with_options_it_accepts() -> None:
    deployment = the(rendered(), "service.yaml", kind="Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    task, *arguments = container["args"]
    assert task == "target.serve"
    options = {word for word in arguments if word.startswith("--")}
    assert options <= _task_options("target.serve")
    assert arguments[arguments.index("--host") + 1] == "0.0.0.0"


def test_rendering_leaves_the_base_as_it_was() -> None:
    base = load_base()
    before = yaml.safe_dump_all(list(documents(base)))
    render_manifests(base, PLAN)
    assert yaml.safe_dump_all(list(documents(base))) == before


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"shards": "four"}, "--shards must be a whole number"),
        ({"shards": 0}, "--shards must be at least 1"),
        ({"shards": 2, "start_at": "soon"}, "--start-at must be a UNIX time"),
        ({"shards": 2, "scenario": "isolation_append"}, "--scenario must be one of"),
        ({"shards": 2, "profile": "no-such-profile"}, "no-such-profile"),
        ({"shards": 2, "run_name": "Run_7"}, "--run-name must be"),
    ],
)
def test_bad_options_are_refused_in_one_line(options: dict[str, Any], message: str) -> None:
    with pytest.raises(KubernetesPlanError, match=re.escape(message)):
        plan_from_options(**options)


def test_the_start_defaults_to_two_minutes_from_now_and_names_the_run() -> None:
    plan = plan_from_options(shards=2, now=1_900_000_000.5)
    assert plan.start_at == 1_900_000_120
    assert plan.run_name == "run-1900000120"


def test_the_documented_render_commands_use_options_the_task_accepts() -> None:
    # The README's Kubernetes walk-through (or wherever docs/ carries it).
    texts = [README.read_text()] + [
        path.read_text() for path in (PROJECT_ROOT / "docs").glob("*.md")
    ]
    lines = [line.strip() for text in texts for line in text.splitlines()]
    renders = [line for line in lines if line.startswith("invoke deploy.render")]
    assert renders
    accepted = _task_options("deploy.render")
    for render in renders:
        options = {word.split("=")[0] for word in render.split() if word.startswith("--")}
        assert options <= accepted, render
        assert {"--run-name", "--shards", "--image", "--scenario", "--profile"} <= options
    assert any("--start-at" in render for render in renders)
