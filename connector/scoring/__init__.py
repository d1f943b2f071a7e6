"""Explainable risk scoring: `assess` turns an account and its invoices into a RiskAssessment.

Pure and deterministic: no clock (`as_of` is a parameter), no I/O. Money values in
`RiskAssessment.features` are decimal strings ("1250.00"); ratios and days are numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from connector.models import Account, FactorContribution, Invoice, Reason, RiskAssessment
from connector.scoring.calibration import probability_late, under_thin_file_rule
from connector.scoring.features import Features, extract, features_dict, open_exposure
from connector.scoring.limits import recommend_limit
from connector.scoring.policy import ScoringPolicy
from connector.scoring.portfolio import (
    PortfolioContext,
    PortfolioReport,
    build_portfolio_context,
    portfolio_report,
)
from connector.scoring.rating import Rating, band_for, rate
from connector.scoring.reasons import reasons_for


def _detail(fac_key: str, f: Features) -> str:
    if fac_key == "past_due":
        return f"open {f.exposure:,.2f}, overdue {f.overdue_amount:,.2f}, max {f.max_days_past_due} days past due"
    if fac_key == "dbt" and f.dbt is not None:
        return (
            f"days beyond terms {f.dbt:.1f} (early payment as 0), "
            f"average payment delay {f.payment_delay or 0:+.1f} (early payment negative)"
        )
    if fac_key == "trend" and f.trend is not None:
        return f"recent {f.recent_dbt or 0:.1f} days vs prior {f.prior_dbt or 0:.1f} days"
    if fac_key == "thin_file":
        return f"{f.settled_count} settled invoices, {f.tenure_days} days tenure"
    if fac_key == "external_score" and f.external_score is not None and f.external_risk is None:
        return f"report {f.external_score_age_days} days old: ignored"
    return ""


def assess(
    account: Account,
    invoices: Sequence[Invoice],
    portfolio: PortfolioContext,
    policy: ScoringPolicy,
    as_of: date,
    *,
    payment_history: bool = True,
) -> RiskAssessment:
    """Score one account at `as_of`: score, band, limit, ordered reasons and the full breakdown.

    Args:
        account: the customer.
        invoices: all its known invoices; those issued after `as_of` are ignored.
        portfolio: book totals (see `build_portfolio_context`).
        policy: the scoring policy.
        as_of: the decision date (the only notion of "today").
        payment_history: False when the CRM mapping has no paid-date source: the thin-file
            factor and cap are left out (the run reports "payment history not mapped" once).

    Returns:
        The assessment (built without re-validation: every value is produced here).
    """
    f = extract(account, invoices, portfolio, policy, as_of)
    f.payment_history = payment_history
    rating = rate(f, policy)
    limit, derivation = recommend_limit(account, f, rating.band, portfolio, policy)
    reasons = tuple(
        Reason.model_construct(code=code, text=text, points=points)
        for code, text, points in reasons_for(account, f, rating, policy)
    )
    factors = tuple(
        FactorContribution.model_construct(
            name=fac.code,
            value=None if fac.value is None else round(fac.value, 4),
            points=None if fac.points is None else round(fac.points, 2),
            weight=fac.weight,
            contribution=round(fac.contribution, 2),
            available=fac.available,
            detail=_detail(fac.key, f),
        )
        for fac in rating.factors
    )
    features = features_dict(f)
    features["weighted_score"] = rating.weighted_score
    features["thin_file_capped"] = rating.thin_file_capped
    thin_file = under_thin_file_rule(f, policy)
    # Which table gave probability_late, for `explain` (the thin-file one only when the policy has it).
    features["probability_table"] = (
        "thin_file" if thin_file and policy.probability.thin_file_table else "main"
    )
    return RiskAssessment.model_construct(
        account_id=account.crm_id,
        as_of=as_of,
        score=rating.score,
        band=rating.band,
        level=rating.level,
        confidence=rating.confidence,
        probability_late=probability_late(rating.score, thin_file, policy.probability),
        recommended_credit_limit=limit,
        reasons=reasons,
        factors=factors,
        hard_rules=tuple(code for code, _, _ in rating.hard_rules),
        features=features,
        limit_derivation=derivation,
        model_version=policy.model_version,
    )


__all__ = [
    "PortfolioContext",
    "PortfolioReport",
    "Rating",
    "assess",
    "band_for",
    "build_portfolio_context",
    "open_exposure",
    "portfolio_report",
]
