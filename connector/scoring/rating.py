"""Factor points, the weighted 0-100 score, hard-rule floors, bands and confidence."""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from connector.scoring.features import Features
from connector.scoring.policy import BANDS, Curve, ScoringPolicy

# (policy weight/curve name, reason code), in the reference's order F1-F9.
FACTORS: tuple[tuple[str, str], ...] = (
    ("dbt", "DBT_HIGH"),
    ("late_share", "LATE_SHARE"),
    ("past_due", "PAST_DUE_NOW"),
    ("trend", "TREND_WORSE"),
    ("external_score", "EXTERNAL_SCORE"),
    ("disputes", "DISPUTES"),
    ("over_limit", "OVER_LIMIT"),
    ("thin_file", "THIN_FILE"),
    ("financials", "FINANCIALS"),
)

HARD_SEVERE = "HARD_SEVERE_DELINQUENCY"
HARD_WRITE_OFF = "HARD_WRITE_OFF"
HARD_INSOLVENCY = "HARD_INSOLVENCY"
THIN_FILE_CAP = "THIN_FILE_CAP"
NO_HISTORY = "NO_HISTORY"


class PiecewiseLinear:
    """A points curve: linear between breakpoints, flat outside them."""

    __slots__ = ("slopes", "xs", "ys")

    def __init__(self, curve: Curve) -> None:
        self.xs = [float(x) for x, _ in curve]
        self.ys = [float(y) for _, y in curve]
        self.slopes = [
            (self.ys[i + 1] - self.ys[i]) / (self.xs[i + 1] - self.xs[i])
            for i in range(len(self.xs) - 1)
        ]

    def __call__(self, x: float) -> float:
        xs = self.xs
        if x <= xs[0]:
            return self.ys[0]
        if x >= xs[-1]:
            return self.ys[-1]
        i = bisect.bisect_right(xs, x) - 1
        return self.ys[i] + self.slopes[i] * (x - xs[i])


@dataclass(frozen=True, slots=True)
class Factor:
    """One factor's outcome: raw value, 0-100 points, weight and weighted contribution."""

    key: str
    code: str
    value: float | None
    points: float | None
    weight: float
    contribution: float
    available: bool


@dataclass(frozen=True, slots=True)
class Rating:
    """The score and band of one account, with the factors and hard rules behind them."""

    score: float
    weighted_score: float
    band: str
    level: str
    confidence: float
    factors: tuple[Factor, ...]
    # (code, floor band, score lift) per hard rule that fired, strongest first.
    hard_rules: tuple[tuple[str, str, float], ...]
    thin_file_capped: bool
    no_history: bool


class CompiledPolicy:
    """Per-policy constants built once (curves, weights, cut-offs) so `assess` stays cheap."""

    def __init__(self, policy: ScoringPolicy) -> None:
        self.policy = policy
        curves = policy.curves
        self.dbt = PiecewiseLinear(curves.dbt)
        self.late_share = PiecewiseLinear(curves.late_share)
        self.trend = PiecewiseLinear(curves.trend)
        self.disputes = PiecewiseLinear(curves.disputes)
        self.over_limit = PiecewiseLinear(curves.over_limit)
        self.financials = PiecewiseLinear(curves.financials)
        self.signed_delay = policy.windows.early_payment == "signed"
        weights = policy.weights
        self.weights = tuple(float(getattr(weights, key)) for key, _ in FACTORS)
        # Financials are optional: their weight counts towards confidence only when mapped.
        self.core_weight = sum(
            w for (key, _), w in zip(FACTORS, self.weights, strict=True) if key != "financials"
        )
        self.cutoffs = list(policy.bands.cutoffs)
        self.levels = dict(policy.bands.levels)
        self.bucket_points = tuple(float(p) for p in policy.aging.points)
        self.band_floor = {
            band: (0.0 if i == 0 else self.cutoffs[i - 1]) for i, band in enumerate(BANDS)
        }


_CACHE: list[CompiledPolicy] = []


def compiled(policy: ScoringPolicy) -> CompiledPolicy:
    """The compiled constants of a policy (a tiny identity cache: policies are frozen)."""
    for item in _CACHE:
        if item.policy is policy:
            return item
    item = CompiledPolicy(policy)
    _CACHE.insert(0, item)
    del _CACHE[8:]
    return item


def band_for(score: float, cutoffs: list[float] | tuple[float, ...]) -> str:
    """The band of a score: A below the first cut-off, E from the last one."""
    return BANDS[bisect.bisect_right(list(cutoffs), score)]


def _points(c: CompiledPolicy, f: Features) -> list[tuple[float | None, float | None, bool]]:
    """(value, points, available) per factor, in FACTORS order."""
    policy = c.policy
    out: list[tuple[float | None, float | None, bool]] = []
    delay = f.payment_delay if c.signed_delay else f.dbt
    out.append((delay, c.dbt(delay), True) if delay is not None else (None, None, False))
    out.append(
        (f.late_share, c.late_share(f.late_share), True)
        if f.late_share is not None
        else (None, None, False)
    )
    if f.invoice_count:
        if f.exposure > 0:
            # Worst aging bucket, weighted by the overdue share of the open amount (ref. A7 F3).
            # Unlike a bucket-by-bucket average it never falls when more becomes overdue.
            worst = max((i for i in range(1, 5) if f.bucket_counts[i]), default=0)
            overdue_share = f.overdue_amount / f.exposure
            points = c.bucket_points[worst] * overdue_share
        else:
            points = overdue_share = 0.0
        out.append((overdue_share, min(points, 100.0), True))
    else:
        out.append((None, None, False))
    out.append((f.trend, c.trend(f.trend), True) if f.trend is not None else (None, None, False))
    out.append(
        (f.external_score, f.external_risk, True)
        if f.external_risk is not None
        else (f.external_score, None, False)
    )
    out.append(
        (f.disputed_share, c.disputes(f.disputed_share), True)
        if f.disputed_share is not None
        else (None, None, False)
    )
    out.append(
        (f.utilisation, c.over_limit(f.utilisation), True)
        if f.utilisation is not None
        else (None, None, False)
    )
    thin = policy.thin_file
    gap_invoices = 1.0 - min(f.settled_count, thin.full_invoices) / thin.full_invoices
    gap_tenure = 1.0 - min(f.tenure_days, thin.full_tenure_days) / thin.full_tenure_days
    if f.payment_history:
        out.append((float(f.settled_count), 100.0 * max(gap_invoices, gap_tenure), True))
    else:
        out.append((None, None, False))
    out.append(
        (f.altman_z, c.financials(f.altman_z), True)
        if f.altman_z is not None
        else (None, None, False)
    )
    return out


@dataclass(frozen=True, slots=True)
class _Combined:
    """The weighted score with its floors: what `rate` and `score_features` share."""

    score: float
    weighted: float
    total_w: float
    no_history: bool
    applied: tuple[tuple[str, str, float], ...]
    capped: bool


def _combine(
    c: CompiledPolicy, f: Features, raw: list[tuple[float | None, float | None, bool]]
) -> _Combined:
    policy = c.policy
    total_w = 0.0
    total_wp = 0.0
    for (_, points, available), weight in zip(raw, c.weights, strict=True):
        if available and weight > 0 and points is not None:
            total_w += weight
            total_wp += weight * points
    no_history = f.invoice_count == 0 and f.external_risk is None and f.altman_z is None
    if no_history or total_w <= 0:
        # Nothing to rate on: "unknown" is neither good nor bad (D&B "UN", Creditsafe "not rated").
        weighted = float(policy.thin_file.no_history_score)
        no_history = True
    else:
        weighted = total_wp / total_w
    hard = policy.hard_rules
    fired: list[tuple[str, str]] = []
    if f.insolvency:
        fired.append((HARD_INSOLVENCY, hard.insolvency_band))
    if f.write_offs:
        fired.append((HARD_WRITE_OFF, hard.write_off_band))
    if f.severe_overdue_amount > 0 and f.severe_overdue_amount >= float(hard.materiality_amount):
        fired.append((HARD_SEVERE, hard.severe_delinquency_band))
    score = weighted
    applied: list[tuple[str, str, float]] = []
    for code, band in sorted(fired, key=lambda item: -BANDS.index(item[1])):
        floor = c.band_floor[band]
        applied.append((code, band, max(0.0, floor - score)))
        score = max(score, floor)
    thin_rule = policy.thin_file
    capped = (
        f.payment_history
        and f.settled_count < thin_rule.cap_below_invoices
        and f.external_risk is None
    )
    if capped:
        floor = c.band_floor[thin_rule.cap_band]
        capped = score < floor
        score = max(score, floor)
    score = round(min(max(score, 0.0), 100.0), 2)
    return _Combined(score, weighted, total_w, no_history, tuple(applied), capped)


def score_features(
    f: Features, policy: ScoringPolicy
) -> tuple[float, int, list[tuple[float | None, float | None, bool]]]:
    """The score, band index (0 = A) and raw factors only: `rate` without the explanation.

    For the backtest, which rates a million decisions and needs no reasons or confidence.

    Args:
        f: the account's features.
        policy: the scoring policy.

    Returns:
        (score, index of the band in BANDS, (value, points, available) per factor in FACTORS).
    """
    c = compiled(policy)
    raw = _points(c, f)
    score = _combine(c, f, raw).score
    return score, bisect.bisect_right(c.cutoffs, score), raw


def rate(f: Features, policy: ScoringPolicy) -> Rating:
    """Score 0-100 (higher = riskier), apply the hard-rule floors and pick the band.

    Args:
        f: the account's features.
        policy: the scoring policy.

    Returns:
        The rating with every factor's contribution.
    """
    c = compiled(policy)
    raw = _points(c, f)
    combined = _combine(c, f, raw)
    total_w = combined.total_w
    no_history = combined.no_history
    thin_points = raw[7][1] or 0.0
    factors = tuple(
        Factor(
            key=key,
            code=code,
            value=value,
            points=points,
            weight=weight,
            contribution=(
                weight * points / total_w
                if available and points is not None and total_w > 0 and not no_history
                else 0.0
            ),
            available=available,
        )
        for (key, code), (value, points, available), weight in zip(
            FACTORS, raw, c.weights, strict=True
        )
    )
    score = combined.score
    band = band_for(score, c.cutoffs)
    thin_rule = policy.thin_file

    available_weight = sum(
        fac.weight for fac in factors if fac.available and (fac.key != "financials")
    )
    confidence = available_weight / c.core_weight if c.core_weight > 0 else 0.0
    if no_history:
        confidence = 0.0
    confidence *= 1.0 - thin_rule.confidence_penalty * thin_points / 100.0
    return Rating(
        score=score,
        weighted_score=round(combined.weighted, 2),
        band=band,
        level=c.levels[band],
        confidence=round(min(max(confidence, 0.0), 1.0), 3),
        factors=factors,
        hard_rules=combined.applied,
        thin_file_capped=combined.capped,
        no_history=no_history,
    )
