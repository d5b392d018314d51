"""Expected error codes: which refusals a scenario provokes on purpose, read from the profiles."""

from __future__ import annotations

from pathlib import Path

import pytest

from load_runner import SCENARIOS
from load_runner.profiles import ProfileError, load_scenario_config

MINIMAL_PROFILE = """
[high_contention]
expected_error_codes = {codes}

[high_contention.test]
users = 2
duration_s = 2
units_per_request = 10
"""


def test_shipped_profiles_expect_only_business_refusals() -> None:
    for scenario in SCENARIOS:
        config = load_scenario_config(scenario, "smoke")
        # The list-append scenario refuses nothing on purpose; aborts are its only expected code.
        expected = (
            "serialization_conflict" if scenario == "isolation_append" else "insufficient_units"
        )
        assert expected in config.expected_error_codes
        assert not {"unauthorized", "not_found", "invalid_request", "unavailable"} & set(
            config.expected_error_codes
        )
        assert config.thresholds.unexpected_error_rate_max == 0.01
        assert config.to_result()["expected_error_codes"] == list(config.expected_error_codes)


def test_only_the_list_append_scenario_requires_a_consistency_model() -> None:
    for scenario in SCENARIOS:
        config = load_scenario_config(scenario, "smoke")
        if scenario == "isolation_append":
            assert config.required_model == "serializable"
            assert config.to_result()["required_model"] == "serializable"
        else:
            assert config.required_model is None
            assert "required_model" not in config.to_result()


def test_expected_error_codes_default_to_none(tmp_path: Path) -> None:
    path = tmp_path / "profiles.toml"
    path.write_text(MINIMAL_PROFILE.format(codes="[]"))
    assert load_scenario_config("high_contention", "test", path).expected_error_codes == ()


@pytest.mark.parametrize("codes", ['"insufficient_units"', "[1, 2]", '[""]'])
def test_malformed_expected_error_codes_are_refused(tmp_path: Path, codes: str) -> None:
    path = tmp_path / "profiles.toml"
    path.write_text(MINIMAL_PROFILE.format(codes=codes))
    with pytest.raises(ProfileError, match="expected_error_codes must be a list of error codes"):
        load_scenario_config("high_contention", "test", path)
