"""The rooms' arrows: each package imports only the ones below it, and nobody's private names."""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Lowest first: a package may import those before it, never those after it.
LAYERS = (
    "retry_backoff",
    "local_postgres",
    "results",
    "anomalies",
    "target",
    "seeding",
    "molotov_scenarios",
    "load_runner",
    "integrity",
    "watch",
    "faults",
    "reporting",
    "pipeline",
)
# The checker stays independent of the checked (STYLE.md): these never import the service.
INDEPENDENT_OF_TARGET = ("integrity", "molotov_scenarios", "anomalies", "results")


def _imports(package: str) -> Iterator[tuple[Path, int, str, tuple[str, ...]]]:
    """Yield (file, line, imported module, imported names) for every absolute import."""
    for path in sorted((ROOT / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield path, node.lineno, alias.name, ()
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                yield path, node.lineno, node.module, tuple(a.name for a in node.names)


def test_the_layers_name_every_package_that_is_installed() -> None:
    document = tomllib.loads((ROOT / "pyproject.toml").read_text())
    included = {
        name.rstrip("*") for name in document["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    assert included == set(LAYERS)


def test_the_container_image_copies_every_installed_package() -> None:
    copied = {
        line.split()[1].rstrip("/")
        for line in (ROOT / "Containerfile").read_text().splitlines()
        if line.startswith("COPY ")
    }
    assert set(LAYERS) <= copied


@pytest.mark.parametrize("package", LAYERS)
def test_no_arrow_climbs_back_up(package: str) -> None:
    allowed = set(LAYERS[: LAYERS.index(package) + 1])
    upward = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path, line, module, _ in _imports(package)
        if module.split(".")[0] in LAYERS and module.split(".")[0] not in allowed
    ]
    assert upward == []


@pytest.mark.parametrize("package", INDEPENDENT_OF_TARGET)
def test_the_checkers_and_the_load_know_nothing_of_the_service(package: str) -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line}"
        for path, line, module, _ in _imports(package)
        if module.split(".")[0] == "target"
    ]
    assert found == []


@pytest.mark.parametrize("package", LAYERS)
def test_no_module_imports_another_modules_private_names(package: str) -> None:
    private = [
        f"{path.relative_to(ROOT)}:{line} takes {', '.join(names)} from {module}"
        for path, line, module, names in _imports(package)
        if module.split(".")[0] in LAYERS
        for names in [tuple(n for n in names if n.startswith("_") and not n.startswith("__"))]
        if names
    ]
    assert private == []
