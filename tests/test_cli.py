"""The command line explains itself: help for every option, no short flags, one-line errors."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def tasks_namespace() -> Any:
    # tasks.py sits at the project root, outside the installed packages: load it by path.
    spec = importlib.util.spec_from_file_location("loadtest_tasks", PROJECT_ROOT / "tasks.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.namespace


def test_every_task_option_has_help_and_no_short_flag() -> None:
    namespace = tasks_namespace()
    checked = 0
    for collection_name, collection in namespace.collections.items():
        for task_name, task in collection.tasks.items():
            for argument in task.get_arguments():
                where = f"{collection_name}.{task_name} --{argument.name}"
                assert argument.help, f"{where} has no help text"
                assert all(len(name) > 1 for name in argument.names), f"{where} has a short flag"
                checked += 1
    assert checked > 50


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["load-test.seed", "--seed", "abc"], "error: --seed must be a whole number, not 'abc'"),
        (["load-test.matrix", "--repeats", "two"], "error: --repeats must be a whole number"),
    ],
)
def test_a_bad_whole_number_is_one_line_and_exit_2(arguments: list[str], message: str) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "invoke", *arguments],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 2
    assert completed.stderr.strip() == message or completed.stderr.startswith(message)
    assert completed.stderr.count("\n") == 1
    assert "Traceback" not in completed.stderr
