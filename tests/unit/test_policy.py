"""Scoring policy: defaults are the reference model, every section loads from TOML, bad values fail."""

from __future__ import annotations

import tomllib

import pytest
from pydantic import ValidationError

from connector.scoring.policy import ScoringPolicy, policy_fingerprint


def test_defaults_are_model_v2() -> None:
    # v2 (issue 17): the payment-behaviour block re-chosen before the backtest split
    # (bench/select_model.py; test_backtest checks the defaults equal its recorded choice);
    # the factors the sample cannot test, the bands and the limit rules are the reference's.
    policy = ScoringPolicy()
    weights = policy.weights
    assert policy.model_version == "v2"
    assert (weights.dbt, weights.late_share, weights.past_due, weights.trend) == (45, 0, 20, 0)
    assert (weights.external_score, weights.disputes, weights.over_limit, weights.thin_file) == (
        15,
        0,
        10,
        10,
    )
    assert (
        weights.dbt + weights.late_share + weights.trend + weights.disputes + weights.thin_file
        == 55
    )
    assert policy.bands.cutoffs == (20, 40, 60, 80)
    assert policy.limits.band_multipliers == {"A": 1.0, "B": 0.85, "C": 0.65, "D": 0.35, "E": 0.0}
    assert policy.curves.dbt == ((-10, 0), (15, 80), (90, 100))
    assert policy.curves.late_share[-1] == (1, 100)
    assert policy.windows.grace_days == 0
    assert policy.windows.early_payment == "signed"
    assert policy.windows.early_credit_days == 10
    assert len(policy.probability.table) == 10


def test_nested_sections_load_from_toml() -> None:
    text = """
    language = "zh"
    home_currency = "EUR"
    [weights]
    dbt = 30
    [curves]
    trend = [[0, 0], [30, 100]]
    [limits]
    rounding_step = 500
    band_multipliers = { A = 1.0, B = 0.9, C = 0.6, D = 0.3, E = 0.0 }
    """
    policy = ScoringPolicy.model_validate(tomllib.loads(text))
    assert policy.weights.dbt == 30
    assert policy.weights.trend == ScoringPolicy().weights.trend
    assert policy.curves.trend == ((0, 0), (30, 100))
    assert policy.limits.rounding_step == 500
    assert policy.language == "zh"


@pytest.mark.parametrize(
    "bad",
    [
        {"weights": {"dbt": -1}},
        {"curves": {"dbt": [[10, 0], [5, 100]]}},
        {"curves": {"dbt": [[0, 0], [5, 120]]}},
        {"bands": {"cutoffs": [20, 10, 60, 80]}},
        {"bands": {"levels": {"A": "Low"}}},
        {"limits": {"band_multipliers": {"A": 1.0}}},
        {"windows": {"trend_recent_days": 400}},
        {"language": "fr"},
        {"weights": {"dbtt": 3}},
        {"probability": {"table": [[10, 0.5], [20, 0.4]]}},
        {"probability": {"table": [[20, 0.1], [10, 0.4]]}},
        {"probability": {"table": [[10, 1.5]]}},
        {"windows": {"early_payment": "sometimes"}},
        {"probability": {"thin_file_table": [[10, 0.5], [20, 0.4]]}},
        {"probability": {"fit_window_days": 7}},
    ],
    ids=["negative_weight", "curve_not_increasing", "points_above_100", "cutoffs_unordered",
         "levels_missing_bands", "multipliers_missing_bands", "trend_window_too_long",
         "unknown_language", "typo_in_key", "probability_falls", "table_scores_unordered",
         "probability_above_1", "unknown_early_payment_mode", "thin_file_probability_falls",
         "fit_window_too_short"],
)  # fmt: skip
def test_invalid_settings_are_rejected(bad) -> None:
    with pytest.raises(ValidationError):
        ScoringPolicy.model_validate(bad)


def test_fingerprint_is_stable_and_tracks_every_setting() -> None:
    assert policy_fingerprint(ScoringPolicy()) == policy_fingerprint(ScoringPolicy())
    changed = [
        ScoringPolicy(weights={"dbt": 26}),
        ScoringPolicy(language="zh"),
        ScoringPolicy(limits={"rounding_step": 500}),
        ScoringPolicy(curves={"trend": [[0, 0], [20, 100]]}),
    ]
    prints = {policy_fingerprint(p) for p in changed}
    assert len(prints) == len(changed)
    assert policy_fingerprint(ScoringPolicy()) not in prints


def test_policy_written_as_toml_reads_back_identical() -> None:
    from connector.scoring.policy import policy_to_toml

    policy = ScoringPolicy(
        home_currency="EUR",
        probability={"table": [[5, 0.1], [40, 0.6]], "fitted_on": 'my "book", 2024'},
        limits={"max_limit": "250000"},
    )
    text = policy_to_toml(policy, "fitted by a test\nsecond line")
    assert text.startswith("# fitted by a test\n# second line\n")
    assert ScoringPolicy.model_validate(tomllib.loads(text)) == policy
