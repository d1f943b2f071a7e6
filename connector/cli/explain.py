"""Pure formatting of one assessment for `crm-risk explain`: a JSON-safe dict and a rich view."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.text import Text

from connector.cli.plain import PlainTable
from connector.models import Account, RiskAssessment
from connector.planning.governance import GovernancePolicy
from connector.planning.planner import plan_account

_BAND_STYLE = {"A": "green", "B": "green", "C": "yellow", "D": "red", "E": "bold red"}


def _json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    return value


@dataclass(frozen=True)
class KeptValue:
    """A value the next run leaves as it is in the CRM, and why (a person's edit, approval...)."""

    field: str
    action: str  # conflict | held | frozen | kept_if_empty
    crm_value: Any
    desired: Any
    cause: str

    @property
    def sentence(self) -> str:
        """What a person reads: the field, the CRM's value, what we would write and why."""
        crm = "(empty)" if self.crm_value is None else str(self.crm_value)
        what = {
            "conflict": "kept: a person changed it in the CRM",
            "held": "held for approval",
            "frozen": "kept: the account's manual override flag is set",
            "kept_if_empty": "kept: the mapping writes it only when empty",
        }.get(self.action, self.action)
        return f"{self.field} {crm} {what} (we would write {self.desired})"


_KEPT_ACTIONS = ("conflict", "held", "frozen", "kept_if_empty")


def kept_in_crm(
    stored: Any,
    assessment: RiskAssessment,
    *,
    last_written: dict[str, Any],
    mapping: Any,
    governance: GovernancePolicy,
    now: datetime,
) -> list[KeptValue]:
    """The fields the next run would not write, planned as the run plans them (pure).

    Args:
        stored: the StoredAccount (its CRM values of the fields we write).
        assessment: its latest assessment.
        last_written: what the CRM confirmed we wrote last.
        mapping: the connection's mapping (fields written and their write modes).
        governance: the connection's governance policy (manual edits, approvals).
        now: the time for the reviewed-at field.

    Returns:
        One KeptValue per field left as it is in the CRM.
    """
    fields = list(mapping.write_fields())
    try:
        rate = Decimal(str(assessment.features.get("limit_rate") or 1))
    except InvalidOperation:
        rate = Decimal(1)
    plan = plan_account(
        stored.account,
        assessment,
        crm_values=stored.crm_values,
        last_written=last_written,
        write_fields=fields,
        write_modes={name: mapping.write_mode("account", name) for name in fields},
        max_lengths=mapping.max_lengths("account"),
        governance=governance,
        now=now,
        limit_rate=rate,
    )
    return [
        KeptValue(d.field, d.action, d.current, d.desired, d.cause)
        for d in plan.decisions
        if d.action in _KEPT_ACTIONS
    ]


def _limit_view(account: Account, assessment: RiskAssessment) -> dict[str, Any]:
    """The limit figures as numbers with their currencies (the steps stay as sentences)."""
    features = assessment.features
    home = features.get("home_currency") or features.get("currency")
    currency = features.get("limit_currency") or account.currency or home
    return {
        "recommended": _json_value(assessment.recommended_credit_limit),
        "currency": currency,
        "current": _json_value(account.current_credit_limit),
        "current_currency": account.currency or home,
        "manual": _json_value(account.manual_credit_limit),
        "home_currency": home,
        "rate_to_limit_currency": features.get("limit_rate"),
        "derived_in_home_currency": features.get("derived_limit_home"),
        "reviewed_in_home_currency": features.get("recommended_limit_home"),
    }


def explanation_dict(
    account: Account, assessment: RiskAssessment, *, kept: list[KeptValue] | None = None
) -> dict[str, Any]:
    """Everything behind a score as plain JSON values (money as decimal strings).

    Args:
        account: the scored account.
        assessment: its assessment.
        kept: the fields the next run leaves as the CRM has them (see kept_in_crm).

    Returns:
        account, score, band, level, confidence, limit (figures with currencies), reasons,
        factors, hard rules, features, the limit derivation (numbered steps) and the values
        kept in the CRM.
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
        "limit": _limit_view(account, assessment),
        "limit_derivation": [
            {"step": number, "text": text}
            for number, text in enumerate(assessment.limit_derivation, start=1)
        ],
        "kept_in_crm": [
            {
                "field": value.field,
                "action": value.action,
                "crm_value": _json_value(value.crm_value),
                "would_write": _json_value(value.desired),
                "cause": value.cause,
            }
            for value in kept or []
        ],
    }


def _num(value: float | None, places: int = 2) -> str:
    return "-" if value is None else f"{value:.{places}f}"


def render_explanation(
    account: Account, assessment: RiskAssessment, *, kept: list[KeptValue] | None = None
) -> RenderableType:
    """A terminal view: headline, kept values, reasons, factors, hard rules, limit steps, features.

    Args:
        account: the scored account.
        assessment: its assessment.
        kept: the fields the next run leaves as the CRM has them.

    Returns:
        A rich renderable (print it with a Console).
    """
    parts: list[RenderableType] = [
        Panel(_headline(account, assessment), title="Credit risk", expand=False)
    ]
    if kept:
        parts.append(
            Text("Kept as the CRM has it (the next run does not write these):", style="bold")
        )
        parts.extend(Text(f"  {value.sentence}") for value in kept)
    parts += [_reasons_table(assessment), _factors_table(assessment)]
    if assessment.hard_rules:
        parts.append(Text("Hard rules: " + ", ".join(assessment.hard_rules), style="red"))
    parts += [_derivation_table(assessment), _features_table(assessment)]
    return Group(*parts)


def _headline(account: Account, assessment: RiskAssessment) -> Text:
    """Name and id, band and score, the limits, the model and the probability of paying late."""
    style = _BAND_STYLE.get(assessment.band, "")
    limit = assessment.recommended_credit_limit
    view = _limit_view(account, assessment)
    currency = view["currency"] or ""
    current = account.current_credit_limit
    current_text = (
        f"{current:,.0f} {view['current_currency'] or ''}".strip() if current is not None else "-"
    )
    headline = Text()
    headline.append(f"{account.name or account.crm_id}", style="bold")
    headline.append(f"  ({account.crm_id})\n")
    headline.append("band ")
    headline.append(f"{assessment.band} ({assessment.level})", style=style)
    headline.append(f"   score {assessment.score:.1f}/100   confidence {assessment.confidence:.0%}")
    headline.append(
        f"\nrecommended limit {f'{limit:,.0f} {currency}' if limit is not None else '-'}"
        f"   current limit {current_text}"
        f"\nscored as of {assessment.as_of.isoformat()}, model {assessment.model_version}"
    )
    if assessment.probability_late is not None:
        headline.append(f"\nprobability of paying late {assessment.probability_late:.0%}")
        if assessment.features.get("probability_table") == "thin_file":
            headline.append(" (thin-file table: too few settled invoices for the main one)")
    if account.manual_credit_limit is not None:
        headline.append(
            f"\nmanual credit limit {account.manual_credit_limit:,.0f} "
            f"{view['current_currency'] or ''}: never exceeded".replace("  ", " ")
        )
    return headline


def _reasons_table(assessment: RiskAssessment) -> PlainTable:
    reasons = PlainTable(title="Reasons", header_style="bold", expand=False)
    reasons.add_column("#", justify="right")
    reasons.add_column("code")
    reasons.add_column("points", justify="right")
    reasons.add_column("why", overflow="fold")
    for i, reason in enumerate(assessment.reasons, start=1):
        reasons.add_row(str(i), reason.code, f"{reason.points:.1f}", reason.text)
    return reasons


def _factors_table(assessment: RiskAssessment) -> PlainTable:
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
    return factors


def _derivation_table(assessment: RiskAssessment) -> PlainTable:
    derivation = PlainTable(title="Credit limit derivation", header_style="bold", show_header=False)
    derivation.add_column("step", justify="right")
    derivation.add_column("detail", overflow="fold")
    for i, line in enumerate(assessment.limit_derivation, start=1):
        derivation.add_row(str(i), line)
    return derivation


def _features_table(assessment: RiskAssessment) -> PlainTable:
    features = PlainTable(title="Features", header_style="bold")
    features.add_column("feature")
    features.add_column("value", justify="right")
    for key, value in sorted(assessment.features.items()):
        features.add_row(key, "-" if value is None else str(value))
    return features
