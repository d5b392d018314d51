"""The CI workflow runs the README's pipeline command on a fresh runner and keeps the report."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

PROJECT_ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = PROJECT_ROOT / ".github" / "workflows" / "load-test.yml"
README = PROJECT_ROOT / "README.md"
PIPELINE_INTRO = "Run the whole pipeline"
APT_POSTGRES = re.compile(r"apt-get install[^\n]*\bpostgresql\b")


def readme_pipeline_command() -> str:
    """Return the first indented code line after the README's "Run the whole pipeline" line."""
    lines = README.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(PIPELINE_INTRO))
    return next(line.strip() for line in lines[start + 1 :] if line.startswith("    "))


def steps(job: str = "smoke") -> list[dict[str, Any]]:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    return workflow["jobs"][job]["steps"]


def uploads() -> list[dict[str, Any]]:
    return [s for s in steps() if s.get("uses", "").startswith("actions/upload-artifact")]


def test_workflow_parses_and_runs_on_a_fresh_ubuntu_runner() -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    # YAML 1.1 reads the bare key `on` as True.
    triggers = workflow.get("on", workflow.get(True))
    assert {"push", "pull_request"} <= set(triggers)
    assert set(workflow["jobs"]) == {"smoke", "ab"}
    for job in workflow["jobs"].values():
        assert job["runs-on"].startswith("ubuntu-")


def test_workflow_runs_the_readme_command() -> None:
    command = readme_pipeline_command()
    assert "nox -s load" in command
    runs = [step.get("run", "").strip() for step in steps()]
    assert command in runs


def test_workflow_installs_postgresql_and_python_before_running() -> None:
    texts = [step.get("uses", "") + step.get("run", "").strip() for step in steps()]
    postgres = next(i for i, text in enumerate(texts) if APT_POSTGRES.search(text))
    python = next(i for i, text in enumerate(texts) if text.startswith("actions/setup-python"))
    pipeline = texts.index(readme_pipeline_command())
    assert postgres < pipeline
    assert python < pipeline
    assert str(steps()[python]["with"]["python-version"]) == "3.11"


def test_workflow_uploads_the_reports_even_when_the_verdict_fails() -> None:
    (upload,) = [s for s in uploads() if s["with"]["name"] == "load-test-report"]
    assert upload["if"] == "always()"
    assert upload["with"]["path"].rstrip("/") == "reports"
    pipeline = [s.get("run", "").strip() for s in steps()].index(readme_pipeline_command())
    assert steps().index(upload) > pipeline


def test_a_pull_request_is_compared_with_the_latest_report_of_main() -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    assert workflow["permissions"]["actions"] == "read"  # to download main's artifact
    texts = [step.get("run", "") for step in steps()]
    download = next(i for i, text in enumerate(texts) if "gh run download" in text)
    assert steps()[download]["if"] == "github.event_name == 'pull_request'"
    assert "--branch main" in texts[download]
    assert "--name load-test-report" in texts[download]
    # The pipeline step runs the README's command as is; the baseline comes by environment.
    pipeline = texts.index(readme_pipeline_command())
    assert download < pipeline
    env = steps()[pipeline]["env"]
    assert env["LOADTEST_BASELINE"] == "${{ steps.baseline.outputs.dir }}"
    assert env["LOADTEST_REGRESSION_GATE"] in ("warn", "fail")
    (comparison,) = [s for s in uploads() if s["with"]["name"] == "load-test-comparison"]
    assert comparison["if"].startswith("always()")
    assert comparison["with"]["path"] == "reports/*/comparison/"
    assert steps().index(comparison) > pipeline


PINNED = re.compile(r"^[\w.-]+/[\w.-]+@[0-9a-f]{40}$")
# The commits of these releases, read from the actions' own tags and pinned the same way in
# other public workflows; a change here is a deliberate upgrade.
PINS = {
    "actions/checkout": "11d5960a326750d5838078e36cf38b85af677262",  # v4.4.0
    "actions/setup-python": "a26af69be951a213d495a4c3e4e4022e16d87065",  # v5.6.0
    "actions/upload-artifact": "ea165f8d65b6e75b540449e92b4886f43607fa02",  # v4.6.2
}


def test_every_action_is_pinned_by_commit_and_checkout_keeps_no_credentials() -> None:
    every_step = steps("smoke") + steps("ab")
    used = [step["uses"] for step in every_step if "uses" in step]
    assert used
    for uses in used:
        assert PINNED.match(uses), uses
        name, commit = uses.split("@")
        assert PINS[name] == commit
    lines = WORKFLOW.read_text().splitlines()
    for line in lines:
        if "uses: " in line:
            assert re.search(r"@[0-9a-f]{40} # v\d+\.\d+\.\d+$", line), line
    checkouts = [s for s in every_step if s.get("uses", "").startswith("actions/checkout@")]
    assert len(checkouts) == 2
    assert all(checkout["with"]["persist-credentials"] is False for checkout in checkouts)


def test_the_job_summary_and_the_junit_are_written_even_when_the_verdict_fails() -> None:
    texts = [step.get("run", "") for step in steps()]
    pipeline = texts.index(readme_pipeline_command())
    job = yaml.safe_load(WORKFLOW.read_text())["jobs"]["smoke"]
    assert steps()[pipeline]["env"]["LOADTEST_JUNIT"] == "${{ env.JUNIT_PATH }}"
    summary = next(i for i, text in enumerate(texts) if "reporting.job_summary" in text)
    assert summary > pipeline
    assert steps()[summary]["if"] == "always()"
    assert '"$GITHUB_STEP_SUMMARY"' in texts[summary]
    assert '--junit "$JUNIT_PATH"' in texts[summary]
    (junit,) = [s for s in uploads() if s["with"]["name"] == "load-test-junit"]
    assert junit["if"] == "always()"
    assert Path(job["env"]["JUNIT_PATH"]).parent == Path(junit["with"]["path"])


def test_a_pull_request_is_gated_by_an_interleaved_ab_against_its_merge_base() -> None:
    job = yaml.safe_load(WORKFLOW.read_text())["jobs"]["ab"]
    assert job["if"] == "github.event_name == 'pull_request'"
    ab_steps = steps("ab")
    (checkout,) = [s for s in ab_steps if s.get("uses", "").startswith("actions/checkout@")]
    assert checkout["with"]["fetch-depth"] == 0  # the merge base's worktree needs history
    texts = [step.get("run", "") for step in ab_steps]
    run = next(i for i, text in enumerate(texts) if "nox -s ab" in text)
    assert "git merge-base" in texts[run]
    assert "--repeats 3" in texts[run]
    # The base branch comes by environment, never spliced into the script.
    assert "${{" not in texts[run]
    assert ab_steps[run]["env"]["BASE_REF"] == "${{ github.base_ref }}"
    postgres = next(i for i, text in enumerate(texts) if APT_POSTGRES.search(text))
    assert postgres < run
    summary = next(i for i, text in enumerate(texts) if "GITHUB_STEP_SUMMARY" in text)
    (upload,) = [s for s in ab_steps if s.get("uses", "").startswith("actions/upload-artifact")]
    assert ab_steps[summary]["if"] == upload["if"] == "always()"
    assert upload["with"]["path"] == "reports/ab-*/"
    assert run < summary < ab_steps.index(upload)
