"""Points curves proposed from a payment history: each factor's late rate by value, scaled to 0-100.

`crm-risk backtest --fit-curves` asks, for every factor whose curve maps a measured value (delay,
late share, trend, disputes, utilisation), how often invoices were paid late at each value of the
factor, on the invoices whose outcome was known the day before the split. The answer is the same
binned isotonic fit as `probability_late`'s table (about ten value bins, pool-adjacent-violators,
so it never falls as the value rises), and the curve gives 0 points at the lowest late rate and
100 at the highest, linear in the late rate between the rows. So a factor's points span the
values customers actually have (the issue-17 finding: v1's 0-90-day delay curve gave this data's
delays under half its points) and its weight means what it says. Weights are left alone; the
proposal is the user's to adopt (`--write-policy FILE`), after comparing the figures before and
after the split that the backtest prints for it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from connector.scoring.calibration import fit_probability_table
from connector.scoring.policy import Curve, FactorCurves

# Curve setting -> the factor code whose replayed input is the curve's x (see rating._points).
# Financials are left out: their curve falls as Altman Z'' rises, and histories carry no
# balance sheets to fit it on.
CURVE_FACTORS: tuple[tuple[str, str], ...] = (
    ("dbt", "DBT_HIGH"),
    ("late_share", "LATE_SHARE"),
    ("trend", "TREND_WORSE"),
    ("disputes", "DISPUTES"),
    ("over_limit", "OVER_LIMIT"),
)
# A curve is fitted only on at least this many late and this many on-time invoices with a value
# (the backtest's smallest class behind a shown figure).
MIN_CLASS = 30
# Value bins before pooling: about ten rows, readable, each on enough invoices.
BINS = 10


@dataclass(frozen=True, slots=True)
class CurveProposal:
    """What `--fit-curves` found for one factor."""

    setting: str
    code: str
    current: Curve
    # None: the current curve is kept (see `reason`).
    proposed: Curve | None
    invoices: int
    late: int
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {
            "curve": self.setting,
            "factor": self.code,
            "current": [list(row) for row in self.current],
            "proposed": [list(row) for row in self.proposed] if self.proposed else None,
            "invoices": self.invoices,
            "late": self.late,
            "reason": self.reason,
        }


def fit_curve(values: Sequence[float], late: Sequence[bool]) -> Curve | None:
    """A points curve from values and outcomes: monotone late rate by value, scaled to 0-100.

    Args:
        values: the factor's input per invoice (no missing values).
        late: True where the invoice was paid late.

    Returns:
        (value, points) breakpoints with increasing values and non-decreasing points, the first
        at 0 and the last at 100; None when the late rate does not rise with the value (every
        bin pooled into one: the factor cannot rank these invoices).
    """
    table = fit_probability_table(values, late, BINS)
    if len(table) < 2:
        return None
    low, high = table[0][1], table[-1][1]
    if high <= low:
        return None
    return tuple((x, round(100.0 * (p - low) / (high - low), 1)) for x, p in table)


def propose_curves(
    factors: Mapping[str, Sequence[float]],
    rows: Sequence[int],
    late: Sequence[bool],
    curves: FactorCurves,
) -> tuple[FactorCurves, list[CurveProposal]]:
    """Fit every curve the history can speak for; keep the others.

    Args:
        factors: factor code -> replayed input per history row (NaN where it had no data).
        rows: the history rows to fit on (outcome known the day before the split).
        late: their outcomes (True = paid late).
        curves: the policy's current curves.

    Returns:
        (the curves with the fitted ones replaced, one proposal per curve factor).
    """
    proposals: list[CurveProposal] = []
    updates: dict[str, Curve] = {}
    for setting, code in CURVE_FACTORS:
        current: Curve = getattr(curves, setting)
        column = factors.get(code)
        kept = (
            [] if column is None else [j for j, i in enumerate(rows) if not math.isnan(column[i])]
        )
        values = [column[rows[j]] for j in kept] if column is not None else []
        labels = [late[j] for j in kept]
        positives = sum(labels)
        proposed: Curve | None = None
        if positives < MIN_CLASS or len(labels) - positives < MIN_CLASS:
            reason = (
                f"kept: {len(labels)} invoices with a value, {positives} late; a curve needs at "
                f"least {MIN_CLASS} late and {MIN_CLASS} on time"
            )
        else:
            proposed = fit_curve(values, labels)
            reason = (
                "fitted: late rate by value, monotone, scaled to 0-100 points"
                if proposed is not None
                else "kept: the late rate does not rise with the value"
            )
        if proposed is not None:
            updates[setting] = proposed
        proposals.append(
            CurveProposal(setting, code, current, proposed, len(labels), positives, reason)
        )
    return curves.model_copy(update=updates), proposals
