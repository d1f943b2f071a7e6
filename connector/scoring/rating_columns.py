"""`score_features` for many accounts at once, over numpy columns, equal to it to the last bit.

The backtest rates half a million decisions; rating them one by one in Python cost about a third
of a large backtest. Here every step of `rating._points` and `rating._combine` is the same IEEE
operation on a column instead of a float (numpy adds, multiplies and divides float64 exactly as
Python does, without fusing operations), the weighted sum adds the factors in the same order,
and each `max(a, b)` keeps `a` unless `b > a`, as Python's does. Only the final rounding to two
decimals is left to Python's `round` (numpy's multiplies by 100 first, which can tip a value
that lies just below a halfway point).
`tests/unit/test_rating_columns.py` compares the two on random features and policies.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from connector.scoring.features import Features
from connector.scoring.policy import BANDS, ScoringPolicy
from connector.scoring.rating import (
    HARD_INSOLVENCY,
    HARD_SEVERE,
    HARD_WRITE_OFF,
    CompiledPolicy,
    PiecewiseLinear,
    compiled,
)

Floats = npt.NDArray[np.float64]
Flags = npt.NDArray[np.bool_]

# What the rating reads of each account (`delay` is `payment_delay` or `dbt`, by the policy).
_OPTIONAL = (
    "late_share",
    "trend",
    "external_score",
    "external_risk",
    "disputed_share",
    "utilisation",
    "altman_z",
)
_PLAIN = (
    "invoice_count",
    "exposure",
    "overdue_amount",
    "settled_count",
    "tenure_days",
    "severe_overdue_amount",
    "write_offs",
)
_FLAGS = ("payment_history", "insolvency")


@dataclass(slots=True)
class FactorColumn:
    """One factor for every account: value, points and whether each is there (None = absent)."""

    value: Floats
    value_known: Flags
    points: Floats
    points_known: Flags
    available: Flags


@dataclass(slots=True)
class ColumnRating:
    """`score_features` per account (score, band index, factors in FACTORS order), thin-file rule."""

    score: Floats
    band: npt.NDArray[np.intp]
    factors: list[FactorColumn]
    # `calibration.under_thin_file_rule` per account.
    thin_file: Flags


def _optional(values: Sequence[float | None]) -> tuple[Floats, Flags]:
    """A column with None as NaN, and where a value is there."""
    count = len(values)
    absent = values.count(None) if isinstance(values, tuple | list) else -1
    if absent == 0:
        return np.array(values, dtype=np.float64), np.ones(count, dtype=np.bool_)
    if absent == count:
        return np.full(count, np.nan), np.zeros(count, dtype=np.bool_)
    column = np.fromiter((np.nan if v is None else v for v in values), np.float64, count)
    missing = np.isnan(column)
    if np.count_nonzero(missing) != absent:
        # A NaN among the values (or not a list): tell it apart from None one by one.
        missing = np.fromiter((v is None for v in values), np.bool_, count)
    return column, ~missing


def _curve(curve: PiecewiseLinear, x: Floats) -> Floats:
    """`PiecewiseLinear.__call__` on every value (NaN where x is NaN)."""
    xs = np.array(curve.xs, dtype=np.float64)
    ys = np.array(curve.ys, dtype=np.float64)
    if len(xs) < 2:
        return np.where(np.isnan(x), np.nan, ys[0])
    slopes = np.array(curve.slopes, dtype=np.float64)
    i = np.clip(np.searchsorted(xs, x, side="right") - 1, 0, len(slopes) - 1)
    inner = ys[i] + slopes[i] * (x - xs[i])
    return np.where(x <= xs[0], ys[0], np.where(x >= xs[-1], ys[-1], inner))


def _larger(a: Floats, b: Floats | float) -> Floats:
    """Python's `max(a, b)` per element: `a` unless `b > a`."""
    return np.where(b > a, b, a)


def rate_columns(features: Sequence[Features], policy: ScoringPolicy) -> ColumnRating:
    """Rate many accounts: what `score_features` gives each of them, as columns.

    Args:
        features: the accounts' features.
        policy: the scoring policy.

    Returns:
        Scores, band indexes (0 = A) and the factors, one entry per account.
    """
    c = compiled(policy)
    delay_name = "payment_delay" if c.signed_delay else "dbt"
    optional = (delay_name, *_OPTIONAL)
    read = operator.attrgetter(*optional, *_PLAIN, *_FLAGS, "bucket_counts")
    columns = list(zip(*map(read, features), strict=True)) if features else []
    if not columns:
        empty = np.zeros(0, dtype=np.float64)
        return ColumnRating(empty, np.zeros(0, dtype=np.intp), [], np.zeros(0, dtype=np.bool_))
    known = {name: _optional(columns[k]) for k, name in enumerate(optional)}
    plain = {
        name: np.array(columns[len(optional) + k], dtype=np.float64)
        for k, name in enumerate(_PLAIN)
    }
    flags = {
        name: np.array(columns[len(optional) + len(_PLAIN) + k], dtype=np.bool_)
        for k, name in enumerate(_FLAGS)
    }
    counts = np.array(columns[-1], dtype=np.int64).reshape(len(features), -1)
    with np.errstate(all="ignore"):
        factors = _points(c, known, plain, flags, counts)
        score = _combine(c, known, plain, flags, factors)
    thin = (plain["settled_count"] < policy.thin_file.cap_below_invoices) & ~known["external_risk"][
        1
    ]
    band = np.searchsorted(c.cutoffs, score, side="right")
    return ColumnRating(score, band, factors, thin)


def _points(
    c: CompiledPolicy,
    known: dict[str, tuple[Floats, Flags]],
    plain: dict[str, Floats],
    flags: dict[str, Flags],
    counts: npt.NDArray[np.int64],
) -> list[FactorColumn]:
    """`rating._points` per account, as one column per factor."""
    delay = known["payment_delay" if c.signed_delay else "dbt"]

    def curved(value: tuple[Floats, Flags], curve: PiecewiseLinear) -> FactorColumn:
        return FactorColumn(value[0], value[1], _curve(curve, value[0]), value[1], value[1])

    rated = plain["invoice_count"] != 0
    exposure = plain["exposure"]
    exposed = exposure > 0
    # The worst aging bucket with an invoice in it (0 when none is overdue).
    worst = np.zeros(len(exposure), dtype=np.intp)
    for bucket in range(1, 5):
        worst = np.where(counts[:, bucket] != 0, bucket, worst)
    share = np.where(exposed, plain["overdue_amount"] / exposure, 0.0)
    bucket_points = np.array(c.bucket_points, dtype=np.float64)[worst]
    past_due = np.where(exposed, bucket_points * share, 0.0)
    past_due = np.where(past_due > 100.0, 100.0, past_due)
    external, external_known = known["external_score"]
    risk, risk_known = known["external_risk"]
    thin = c.policy.thin_file
    settled = plain["settled_count"]
    gap_invoices = 1.0 - np.minimum(settled, thin.full_invoices) / thin.full_invoices
    gap_tenure = 1.0 - np.minimum(plain["tenure_days"], thin.full_tenure_days) / (
        thin.full_tenure_days
    )
    history = flags["payment_history"]
    return [
        curved(delay, c.dbt),
        curved(known["late_share"], c.late_share),
        FactorColumn(share, rated, past_due, rated, rated),
        curved(known["trend"], c.trend),
        FactorColumn(external, external_known, risk, risk_known, risk_known),
        curved(known["disputed_share"], c.disputes),
        curved(known["utilisation"], c.over_limit),
        FactorColumn(settled, history, 100.0 * _larger(gap_invoices, gap_tenure), history, history),
        curved(known["altman_z"], c.financials),
    ]


def _combine(
    c: CompiledPolicy,
    known: dict[str, tuple[Floats, Flags]],
    plain: dict[str, Floats],
    flags: dict[str, Flags],
    factors: list[FactorColumn],
) -> Floats:
    """`rating._combine(...).score` per account: weighted mean, hard-rule floors, thin-file cap."""
    policy = c.policy
    total_w = np.zeros(len(plain["exposure"]), dtype=np.float64)
    total_wp = np.zeros(len(total_w), dtype=np.float64)
    for factor, weight in zip(factors, c.weights, strict=True):
        if weight > 0:
            counted = factor.available & factor.points_known
            total_w = np.where(counted, total_w + weight, total_w)
            total_wp = np.where(counted, total_wp + weight * factor.points, total_wp)
    no_risk = ~known["external_risk"][1]
    no_history = (plain["invoice_count"] == 0) & no_risk & ~known["altman_z"][1]
    unrated = no_history | (total_w <= 0)
    score = np.where(unrated, float(policy.thin_file.no_history_score), total_wp / total_w)
    hard = policy.hard_rules
    severe = plain["severe_overdue_amount"]
    fired = [
        (flags["insolvency"], HARD_INSOLVENCY, hard.insolvency_band),
        (plain["write_offs"] != 0, HARD_WRITE_OFF, hard.write_off_band),
        ((severe > 0) & (severe >= float(hard.materiality_amount)), HARD_SEVERE,
         hard.severe_delinquency_band),
    ]  # fmt: skip
    # The floors in `_combine`'s order: strongest band first (a stable sort).
    for rule, _, band in sorted(fired, key=lambda item: -BANDS.index(item[2])):
        floor = float(c.band_floor[band])
        score = np.where(rule & (floor > score), floor, score)
    thin = policy.thin_file
    capped = flags["payment_history"] & (plain["settled_count"] < thin.cap_below_invoices) & no_risk
    floor = float(c.band_floor[thin.cap_band])
    score = np.where(capped & (floor > score), floor, score)
    score = np.where(score < 0.0, 0.0, score)
    score = np.where(score > 100.0, 100.0, score)
    return np.array([round(s, 2) for s in score.tolist()], dtype=np.float64)
