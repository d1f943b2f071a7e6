"""Rating many accounts as numpy columns gives what `score_features` gives each, to the last bit."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.scoring import backtest
from connector.scoring.calibration import under_thin_file_rule
from connector.scoring.features import Features
from connector.scoring.history import read_history
from connector.scoring.policy import BANDS, ScoringPolicy
from connector.scoring.rating import FACTORS, score_features
from connector.scoring.rating_columns import ColumnRating, rate_columns

ROOT = Path(__file__).resolve().parents[2]
IBM = ROOT / "tests" / "data" / "ar-late-payments.csv"


def bits(value: float) -> bytes:
    return struct.pack("<d", value)


def assert_same(features: list[Features], policy: ScoringPolicy, rated: ColumnRating) -> None:
    """Every account's score, band, thin-file flag and factor, compared bit for bit."""
    assert len(rated.score) == len(features)
    for k, f in enumerate(features):
        score, band, raw = score_features(f, policy)
        assert bits(float(score)) == bits(float(rated.score[k])), (k, f)
        assert band == rated.band[k], (k, f)
        assert under_thin_file_rule(f, policy) == bool(rated.thin_file[k]), (k, f)
        for (_, code), (value, points, available), column in zip(
            FACTORS, raw, rated.factors, strict=True
        ):
            assert available == bool(column.available[k]), (k, code, f)
            if not available:
                continue
            assert (value is not None) == bool(column.value_known[k]), (k, code, f)
            assert (points is not None) == bool(column.points_known[k]), (k, code, f)
            if value is not None:
                assert bits(float(value)) == bits(float(column.value[k])), (k, code, f)
            if points is not None:
                assert bits(float(points)) == bits(float(column.points[k])), (k, code, f)


# Values near the curves' breakpoints and the cut-offs as well as anywhere: where a `<` against
# a `<=`, or a rounding, would show.
EDGES = [-10.0, -0.0, 0.0, 0.5, 0.8, 1.0, 1.1, 1.2, 2.6, 15.0, 20.0, 40.0, 90.0, 100.0]
numbers = st.sampled_from(EDGES) | st.floats(-50, 200, allow_nan=False, allow_infinity=False)
shares = st.sampled_from([0.0, 0.5, 1.0]) | st.floats(0, 1, allow_nan=False)


@st.composite
def accounts(draw: st.DrawFn) -> Features:
    counts = draw(st.lists(st.integers(0, 3), min_size=5, max_size=5))
    exposure = draw(st.sampled_from([0.0, 100.0]) | st.floats(0, 1e7, allow_nan=False))
    return Features(
        payment_history=draw(st.booleans()),
        invoice_count=draw(st.integers(0, 40)),
        exposure=exposure,
        bucket_counts=counts,
        overdue_amount=draw(st.floats(0, 1, allow_nan=False)) * exposure,
        severe_overdue_amount=draw(st.sampled_from([0.0, 99.99, 100.0, 5000.0])),
        insolvency=draw(st.booleans()),
        write_offs=draw(st.sampled_from([0, 0, 1, 2])),
        dbt=draw(st.none() | numbers),
        payment_delay=draw(st.none() | numbers),
        trend=draw(st.none() | numbers),
        late_share=draw(st.none() | shares),
        disputed_share=draw(st.none() | shares),
        utilisation=draw(st.none() | numbers),
        external_score=draw(st.none() | numbers),
        external_risk=draw(st.none() | st.floats(0, 100, allow_nan=False)),
        altman_z=draw(st.none() | numbers),
        settled_count=draw(st.integers(0, 20)),
        tenure_days=draw(st.integers(0, 800)),
    )


@st.composite
def policies(draw: st.DrawFn) -> ScoringPolicy:
    cutoffs = sorted(draw(st.sets(st.integers(1, 100), min_size=4, max_size=4)))
    weight = st.sampled_from([0, 5, 12.5]) | st.floats(0, 30, allow_nan=False)
    bands = st.sampled_from(BANDS)
    return ScoringPolicy.model_validate(
        {
            "windows": {"early_payment": draw(st.sampled_from(["floor", "signed"]))},
            "weights": {key: draw(weight) for key, _ in FACTORS},
            "curves": {
                "dbt": [[-10, 0], [draw(st.integers(0, 30)), 80], [90, 100]],
                "trend": [[0, draw(st.integers(0, 40))], [15, 100]],
            },
            "aging": {
                "points": sorted(draw(st.lists(st.integers(0, 100), min_size=5, max_size=5)))
            },
            "bands": {"cutoffs": cutoffs},
            "thin_file": {
                "full_invoices": draw(st.integers(1, 15)),
                "full_tenure_days": draw(st.integers(1, 500)),
                "cap_below_invoices": draw(st.integers(0, 5)),
                "cap_band": draw(bands),
                "no_history_score": draw(st.sampled_from([30, 0, 100, 20.5])),
            },
            "hard_rules": {
                "materiality_amount": draw(st.sampled_from([0, 100, 1000])),
                "severe_delinquency_band": draw(bands),
                "write_off_band": draw(bands),
                "insolvency_band": draw(bands),
            },
        }
    )


@settings(max_examples=300, deadline=None)
@given(features=st.lists(accounts(), min_size=1, max_size=40), policy=policies())
def test_columns_equal_score_features_for_random_accounts_and_policies(
    features: list[Features], policy: ScoringPolicy
) -> None:
    assert_same(features, policy, rate_columns(features, policy))


@pytest.mark.parametrize("early_payment", ["signed", "floor"])
def test_columns_equal_score_features_on_every_decision_of_the_ibm_replay(
    early_payment: str,
) -> None:
    policy = ScoringPolicy.model_validate({"windows": {"early_payment": early_payment}})
    history = read_history(IBM, "ibm-ar")
    features = [f for _, f in backtest.decisions(history, policy)]
    assert len(features) > 2000
    assert_same(features, policy, rate_columns(features, policy))


def test_no_accounts_rate_to_empty_columns() -> None:
    rated = rate_columns([], ScoringPolicy())
    assert (len(rated.score), len(rated.band), len(rated.thin_file)) == (0, 0, 0)
