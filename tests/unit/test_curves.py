"""`backtest --fit-curves`: points curves from each factor's late rate by value, before the split only."""

from __future__ import annotations

import copy
import json
import math
import random
import tomllib
from datetime import date
from pathlib import Path

import pytest

from connector.cli.main import main
from connector.scoring.backtest import fit_curves, replay
from connector.scoring.curves import CURVE_FACTORS, MIN_CLASS, fit_curve, propose_curves
from connector.scoring.history import read_history
from connector.scoring.policy import FactorCurves, ScoringPolicy

ROOT = Path(__file__).resolve().parents[2]
IBM = ROOT / "tests" / "data" / "ar-late-payments.csv"
SPLIT = date(2013, 1, 1)


def test_a_curve_gives_0_points_at_the_lowest_late_rate_and_100_at_the_highest() -> None:
    # Delays of 0, 5, 10, 20 days, late 10 %, 30 %, 50 %, 90 % of the time: 100 invoices each.
    values: list[float] = []
    late: list[bool] = []
    for delay, rate in ((0, 0.1), (5, 0.3), (10, 0.5), (20, 0.9)):
        values += [float(delay)] * 100
        late += [k < rate * 100 for k in range(100)]
    curve = fit_curve(values, late)
    assert curve is not None
    assert [x for x, _ in curve] == [0.0, 5.0, 10.0, 20.0]
    rates = [(r * 100 + 0.5) / 101 for r in (0.1, 0.3, 0.5, 0.9)]
    expected = [round(100 * (r - rates[0]) / (rates[-1] - rates[0]), 1) for r in rates]
    assert [p for _, p in curve] == expected
    assert curve[0][1] == 0.0 and curve[-1][1] == 100.0
    # A valid policy curve.
    FactorCurves(dbt=curve)


@pytest.mark.parametrize("seed", range(4))
def test_a_fitted_curve_never_falls_as_the_value_rises(seed: int) -> None:
    rng = random.Random(seed)
    values = [rng.uniform(-10, 40) for _ in range(800)]
    late = [rng.random() < 0.1 + 0.02 * max(0.0, v) for v in values]
    curve = fit_curve(values, late)
    assert curve is not None
    xs, points = [x for x, _ in curve], [p for _, p in curve]
    assert xs == sorted(set(xs))
    assert points == sorted(points)


def test_no_curve_where_the_late_rate_does_not_rise_with_the_value() -> None:
    values = [float(v) for v in range(400)]
    falling = [v < 200 for v in range(400)]
    assert fit_curve(values, falling) is None


def test_curves_without_enough_late_or_on_time_invoices_are_kept() -> None:
    rows = list(range(200))
    delay = [float(k % 20) for k in rows]
    share = [math.nan] * 200
    for k in range(40):
        share[k] = k / 40  # only 40 invoices have a late share, MIN_CLASS - 1 of them late
    late = [k < MIN_CLASS - 1 or (k >= 40 and delay[k] > 10) for k in rows]
    curves, proposals = propose_curves(
        {"DBT_HIGH": delay, "LATE_SHARE": share}, rows, late, FactorCurves()
    )
    found = {p.setting: p for p in proposals}
    assert [p.setting for p in proposals] == [setting for setting, _ in CURVE_FACTORS]
    assert found["dbt"].proposed is not None and curves.dbt == found["dbt"].proposed
    assert found["late_share"].proposed is None and curves.late_share == FactorCurves().late_share
    assert "at least 30 late and 30 on time" in found["late_share"].reason
    assert found["over_limit"].invoices == 0 and curves.over_limit == FactorCurves().over_limit


def test_fit_curves_reads_no_outcome_from_on_or_after_the_split() -> None:
    # Every payment and dispute from the split on rewritten: the same curves are proposed.
    full = read_history(IBM, "ibm-ar")
    cut = SPLIT.toordinal()
    future = copy.deepcopy(full)
    for i in range(len(future)):
        if future.paid[i] >= cut:
            future.paid[i] = max(cut, future.due[i] + 40)
    policy = ScoringPolicy()
    proposed, _, found = fit_curves(full, replay(full, policy), SPLIT, policy)
    again, _, found_again = fit_curves(future, replay(future, policy), SPLIT, policy)
    assert again.curves == proposed.curves
    assert found_again == found
    assert found["invoices"] == 1167 and found["positives"] == 458


def test_fit_curves_writes_a_policy_that_reproduces_the_report(tmp_path: Path, capsys) -> None:
    written = tmp_path / "curves.toml"
    code = main(["backtest", "--invoices", str(IBM), "--split-date", "2013-01-01",
                 "--fit-curves", "--write-policy", str(written), "--bootstrap", "0",
                 "--json"])  # fmt: skip
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    curves = {row["curve"]: row for row in report["curves"]["curves"]}
    assert curves["dbt"]["proposed"] is not None
    # The history has no credit limits: the utilisation curve is kept, and says why.
    assert curves["over_limit"]["proposed"] is None and curves["over_limit"]["invoices"] == 0
    text = written.read_text()
    assert text.startswith("# Written by crm-risk backtest --fit-curves")
    policy = ScoringPolicy.model_validate(tomllib.loads(text))
    for setting, row in curves.items():
        want = row["proposed"] or row["current"]
        assert [list(point) for point in getattr(policy.curves, setting)] == want, setting
    # The probability table was refitted for the new score, and is the one written.
    assert [list(row) for row in policy.probability.table] == report["fit"]["table"]
    assert policy.probability.table != ScoringPolicy().probability.table
    # Both before-split figures are printed: current and proposed curves.
    pre = report["curves"]["pre_split"]
    assert set(pre) == {"current", "proposed"} and pre["current"]["auc"]["0"] > 0.8
    # Backtesting the written policy gives the report's figures back.
    code = main(["backtest", "--invoices", str(IBM), "--split-date", "2013-01-01", "--policy",
                 str(written), "--bootstrap", "0", "--json"])  # fmt: skip
    again = json.loads(capsys.readouterr().out)
    for key in ("auc", "band_auc", "brier", "calibration", "bands"):
        assert again[key] == report[key], key
    assert again["curves"] is None


def test_fit_curves_is_shown_in_the_terminal_view(capsys) -> None:
    code = main(["backtest", "--invoices", str(IBM), "--split-date", "2013-01-01",
                 "--fit-curves", "--bootstrap", "0"])  # fmt: skip
    assert code == 0
    out = " ".join(capsys.readouterr().out.split())  # the terminal wraps lines
    assert "Proposed points curves" in out
    assert "current -> proposed curves" in out
    assert "over_limit" in out and "kept:" in out
