"""Pure formatting of one assessment for `crm-risk explain`: a JSON-safe dict and a rich view."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.text import Text

from connector.cli.plain import PlainTable
from connector.models import Account, RiskAssessment

_BAND_STYLE = {"A": "green", "B": "green", "C": "yellow", "D": "red", "E": "bold red"}


def _json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    return value


def explanation_dict(account: Account, assessment: RiskAssessment) -> dict[str, Any]:
    """Everything behind a score as plain JSON values (money as decimal strings).

    Args:
        account: the scored account.
        assessment: its assessment.

    Returns:
        account, score, band, level, confidence, limit, reasons, factors, hard rules, features
        and the limit derivation.
    """
    return {
        "account": {
            "crm_id": account.crm_id,
            "name": account.name,
            "currency": account.currency,
            "industry": account.industry,
            "country": account.country,
            "current_credit_limit": _json_value(account.current_credit_limit),
            "manual_credit_limit": _json_value(account.manual_credit_limit),
        },
        "as_of": assessment.as_of.isoformat(),
        "model_version": assessment.model_version,
        "score": assessment.score,
        "band": assessment.band,
        "level": assessment.level,
        "confidence": assessment.confidence,
        "probability_late": assessment.probability_late,
        "recommended_credit_limit": _json_value(assessment.recommended_credit_limit),
        "hard_rules": list(assessment.hard_rules),
        "reasons": [
            {"code": r.code, "text": r.text, "points": r.points} for r in assessment.reasons
        ],
        "factors": [
            {
                "name": f.name,
                "value": f.value,
                "points": f.points,
                "weight": f.weight,
                "contribution": f.contribution,
                "available": f.available,
                "detail": f.detail,
            }
            for f in assessment.factors
        ],
        "features": {k: _json_value(v) for k, v in sorted(assessment.features.items())},
        "limit_derivation": list(assessment.limit_derivation),
    }


def _num(value: float | None, places: int = 2) -> str:
    return "-" if value is None else f"{value:.{places}f}"


def render_explanation(account: Account, assessment: RiskAssessment) -> RenderableType:
    """A terminal view: headline, reasons, factor table, hard rules, limit derivation, features.

    Args:
        account: the scored account.
        assessment: its assessment.

    Returns:
        A rich renderable (print it with a Console).
    """
    style = _BAND_STYLE.get(assessment.band, "")
    limit = assessment.recommended_credit_limit
    currency = assessment.features.get("currency") or account.currency or ""
    headline = Text()
    headline.append(f"{account.name or account.crm_id}", style="bold")
    headline.append(f"  ({account.crm_id})\n")
    headline.append("band ")
    headline.append(f"{assessment.band} ({assessment.level})", style=style)
    headline.append(f"   score {assessment.score:.1f}/100   confidence {assessment.confidence:.0%}")
    headline.append(
        f"\nrecommended limit {f'{limit:,.0f} {currency}' if limit is not None else '-'}"
        f"   current limit "
        f"{f'{account.current_credit_limit:,.0f}' if account.current_credit_limit is not None else '-'}"
        f"   as of {assessment.as_of.isoformat()}   model {assessment.model_version}"
    )
    if assessment.probability_late is not None:
        headline.append(f"\nprobability of paying late {assessment.probability_late:.0%}")
        if assessment.features.get("probability_table") == "thin_file":
            headline.append(" (thin-file table: too few settled invoices for the main one)")

    reasons = PlainTable(title="Reasons", header_style="bold", expand=False)
    reasons.add_column("#", justify="right")
    reasons.add_column("code")
    reasons.add_column("points", justify="right")
    reasons.add_column("why", overflow="fold")
    for i, reason in enumerate(assessment.reasons, start=1):
        reasons.add_row(str(i), reason.code, f"{reason.points:.1f}", reason.text)

    factors = PlainTable(
        title="Factors (score = Σ weight × points / Σ weight of available factors)",
        header_style="bold",
    )
    for column in ("factor", "value", "points", "weight", "contribution", "detail"):
        factors.add_column(column, justify="left" if column in ("factor", "detail") else "right")
    for f in assessment.factors:
        factors.add_row(
            f.name,
            _num(f.value, 3),
            _num(f.points, 1) if f.available else "n/a",
            f"{f.weight:g}",
            f"{f.contribution:.1f}" if f.available else "-",
            f.detail if f.available else (f.detail or "no data: re-weighted, lowers confidence"),
            style=None if f.available else "dim",
        )

    parts: list[RenderableType] = [
        Panel(headline, title="Credit risk", expand=False),
        reasons,
        factors,
    ]
    if assessment.hard_rules:
        parts.append(Text("Hard rules: " + ", ".join(assessment.hard_rules), style="red"))
    derivation = PlainTable(title="Credit limit derivation", header_style="bold", show_header=False)
    derivation.add_column("step", justify="right")
    derivation.add_column("detail", overflow="fold")
    for i, line in enumerate(assessment.limit_derivation, start=1):
        derivation.add_row(str(i), line)
    parts.append(derivation)
    features = PlainTable(title="Features", header_style="bold")
    features.add_column("feature")
    features.add_column("value", justify="right")
    for key, value in sorted(assessment.features.items()):
        features.add_row(key, "-" if value is None else str(value))
    parts.append(features)
    return Group(*parts)
