"""Compare two run folders and write compare.json, compare.html and compare.md."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from markupsafe import Markup

from reporting.compare import (
    DEFAULT_MARGINS,
    Margin,
    compare_scenario,
    comparison_document,
    spectrum,
)
from reporting.compare_inputs import RunSample, check_comparable, load_side
from reporting.render import environment
from reporting.spectrum_chart import spectrum_svg
from results.files import COMPARE_FILE, COMPARE_HTML_FILE, COMPARE_MARKDOWN_FILE

HTML_TEMPLATE = "compare.html.j2"
MARKDOWN_TEMPLATE = "compare.md.j2"


@dataclass(frozen=True)
class ComparisonFiles:
    """Where a comparison went, and its document."""

    document: dict[str, Any]
    json_path: Path
    html_path: Path
    markdown_path: Path


def compare_runs(
    base_path: str | Path,
    new_path: str | Path,
    *,
    margins: Mapping[str, Margin] = DEFAULT_MARGINS,
    force: bool = False,
) -> tuple[dict[str, Any], dict[str, Markup]]:
    """Read two runs, compare every scenario; return compare.json's document and the charts.

    Either side may name several runs separated by commas (repeats, pooled). Raises
    reporting.compare_inputs.CompareInputError on a folder that is not a run or on runs
    that cannot be compared (different scenarios, shapes or isolation levels unless ``force``).
    """
    base = load_side(base_path, force=force)
    new = load_side(new_path, force=force)
    check_comparable(base, new, force=force)
    return comparison_of(base, new, margins=margins)


def comparison_of(
    base: RunSample, new: RunSample, *, margins: Mapping[str, Margin] = DEFAULT_MARGINS
) -> tuple[dict[str, Any], dict[str, Markup]]:
    """Compare two loaded sides on the scenarios both ran."""
    names = sorted(set(base.scenarios) & set(new.scenarios))
    scenarios = [
        compare_scenario(base.scenarios[name], new.scenarios[name], margins=margins)
        for name in names
    ]
    document = comparison_document(
        scenarios, {"base": base.describe(), "new": new.describe()}, margins=margins
    )
    spectra = {
        name: Markup(
            spectrum_svg(
                [spectrum(base.latencies_ms[name]), spectrum(new.latencies_ms[name])],
                label=f"{name}: latency percentile spectrum, base and new",
            )
        )
        for name in names
    }
    return document, spectra


def write_comparison(
    document: dict[str, Any], spectra: dict[str, Markup], out_dir: Path
) -> ComparisonFiles:
    """Write the three comparison files into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    env = environment()
    json_path = out_dir / COMPARE_FILE
    html_path = out_dir / COMPARE_HTML_FILE
    markdown_path = out_dir / COMPARE_MARKDOWN_FILE
    json_path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    html_path.write_text(
        env.get_template(HTML_TEMPLATE).render(doc=document, spectra=spectra), encoding="utf-8"
    )
    markdown_path.write_text(
        env.get_template(MARKDOWN_TEMPLATE).render(doc=document), encoding="utf-8"
    )
    return ComparisonFiles(document, json_path, html_path, markdown_path)
