"""Follow-up task rules: their policy, the defaults, and the pure evaluation against an assessment."""

from __future__ import annotations

import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, Literal

from pydantic import Field, model_validator

from connector.models import Account, RiskAssessment, StrictModel, TaskPriority

RuleKind = Literal[
    "band_downgrade",
    "past_due",
    "over_limit",
    "limit_approval",
    "review_due",
    "external_signal",
    "dispute",
    "insurance",
    "concentration",
    "manual_conflict",
]
BAND_ORDER = "ABCDE"


class RuleLevel(StrictModel):
    """One step of a rule: fires at `threshold`; a higher level escalates an open task."""

    threshold: float
    priority: TaskPriority = TaskPriority.NORMAL
    subject: str
    description: str = ""
    subject_zh: str = ""
    description_zh: str = ""
    reassign_to: str | None = None


class TaskRule(StrictModel):
    """A follow-up rule: when it fires, who gets the task, and what happens when the cause clears."""

    id: str
    kind: RuleKind
    enabled: bool = True
    levels: tuple[RuleLevel, ...]
    assignee: Literal["owner", "credit_manager", "user"] = "owner"
    user_id: str | None = None
    due_in_days: int = Field(default=3, ge=0)
    on_clear: Literal["complete", "comment", "keep"] = "complete"

    @model_validator(mode="after")
    def _levels_ascending(self) -> TaskRule:
        thresholds = [level.threshold for level in self.levels]
        if not thresholds or thresholds != sorted(thresholds):
            raise ValueError("levels must be non-empty and sorted by threshold")
        if self.assignee == "user" and not self.user_id:
            raise ValueError("assignee = 'user' needs user_id")
        return self


def _level(
    threshold: float, priority: str, subject: str, subject_zh: str, description: str = ""
) -> RuleLevel:
    return RuleLevel(
        threshold=threshold,
        priority=TaskPriority(priority),
        subject=subject,
        subject_zh=subject_zh,
        description=description or subject,
        description_zh=subject_zh,
    )


DEFAULT_RULES: tuple[TaskRule, ...] = (
    TaskRule(
        id="band_downgrade",
        kind="band_downgrade",
        levels=(
            _level(
                1,
                "normal",
                "Risk rating of {account} fell from {previous_band} to {band}",
                "{account} 的风险评级由 {previous_band} 降至 {band}",
                "Score {score} (was {previous_score}). Main reasons: {reasons}",
            ),
            _level(
                3,
                "high",
                "Risk rating of {account} fell sharply from {previous_band} to {band}",
                "{account} 的风险评级由 {previous_band} 大幅降至 {band}",
                "Score {score} (was {previous_score}). Main reasons: {reasons}",
            ),
        ),
    ),
    TaskRule(
        id="past_due",
        kind="past_due",
        due_in_days=2,
        levels=(
            _level(
                30,
                "normal",
                "{account}: invoices {days} days past due ({overdue_amount} {currency})",
                "{account}：发票逾期 {days} 天（{overdue_amount} {currency}）",
                "Please contact the customer about {overdue_count} overdue invoice(s).",
            ),
            _level(
                60,
                "high",
                "{account}: invoices {days} days past due, call the customer ({overdue_amount} {currency})",
                "{account}：发票逾期 {days} 天，请致电客户（{overdue_amount} {currency}）",
                "Escalate collection; agree a payment plan.",
            ),
            _level(
                90,
                "high",
                "{account}: {days} days past due, consider credit hold ({overdue_amount} {currency})",
                "{account}：逾期 {days} 天，建议暂停赊销（{overdue_amount} {currency}）",
                "Severe delinquency: hold new orders until paid; consider collections.",
            ),
        ),
    ),
    TaskRule(
        id="over_limit",
        kind="over_limit",
        levels=(
            _level(
                0.9,
                "normal",
                "{account} uses {utilisation} of its credit limit",
                "{account} 已使用信用额度的 {utilisation}",
            ),
            _level(
                1.0,
                "high",
                "{account} is over its credit limit ({utilisation}): hold new orders",
                "{account} 已超出信用额度（{utilisation}）：暂停新订单",
            ),
        ),
    ),
    TaskRule(
        id="limit_approval",
        kind="limit_approval",
        assignee="credit_manager",
        levels=(
            _level(
                1,
                "normal",
                "Approve credit limit for {account}: {current_limit} -> {recommended_limit} {limit_currency}",
                "请审批 {account} 的信用额度：{current_limit} -> {recommended_limit} {limit_currency}",
                "The recommended change exceeds the approval threshold. To approve, copy the "
                "recommended limit into the credit limit field. Reasons: {reasons}",
            ),
        ),
    ),
    TaskRule(
        id="review_due",
        kind="review_due",
        assignee="credit_manager",
        due_in_days=14,
        levels=(
            _level(
                1,
                "low",
                "Periodic credit review due for {account} (band {band})",
                "{account} 需要定期信用复核（评级 {band}）",
            ),
        ),
    ),
    TaskRule(
        id="external_signal",
        kind="external_signal",
        assignee="credit_manager",
        levels=(
            _level(
                1,
                "normal",
                "Refresh the credit report of {account} ({signal})",
                "请更新 {account} 的信用报告（{signal}）",
            ),
        ),
    ),
    TaskRule(
        id="dispute",
        kind="dispute",
        levels=(
            _level(
                30,
                "normal",
                "{account}: dispute open {dispute_days} days, resolve it",
                "{account}：争议已持续 {dispute_days} 天，请处理",
            ),
        ),
    ),
    TaskRule(
        id="insurance",
        kind="insurance",
        assignee="credit_manager",
        levels=(
            _level(
                1,
                "normal",
                "{account}: exposure above insured limit by {above_insured} {currency}",
                "{account}：敞口超出投保额度 {above_insured} {currency}",
            ),
        ),
    ),
    TaskRule(
        id="concentration",
        kind="concentration",
        assignee="credit_manager",
        levels=(
            _level(
                1,
                "normal",
                "{account} exceeds the concentration cap ({concentration} of exposure)",
                "{account} 超出集中度上限（占敞口 {concentration}）",
            ),
        ),
    ),
)


class TaskPolicy(StrictModel):
    """Which follow-up tasks the connector opens, for whom, and in which language."""

    enabled: bool = True
    language: Literal["en", "zh"] = "en"
    credit_manager_id: str | None = None
    fallback_owner_id: str | None = None
    # What `crm-risk revert` does with the tasks a reverted run created.
    revert_action: Literal["complete", "delete"] = "complete"
    # A calm first rollout: at most this many new tasks per run and per owner (None: no cap).
    # Above a cap the most urgent wait for later runs, and each owner gets one digest task
    # listing the accounts that wait (name, band, cause).
    max_new_per_run: int | None = Field(default=100, ge=1)
    max_new_per_owner: int | None = Field(default=10, ge=1)
    # Limit changes held for approval go to the credit manager as one digest task with a table
    # (updated when the list changes), not one task per account.
    limit_approval_digest: bool = True
    # Review interval in days by band (HighRadius practice: high risk monthly, low risk yearly).
    review_interval_days: dict[str, int] = Field(
        default_factory=lambda: {"A": 365, "B": 180, "C": 90, "D": 30, "E": 30}
    )
    external_score_max_age_days: int = 180
    external_score_drop: float = 10
    score_jump_downgrade: float = 15
    materiality_amount: Decimal = Decimal(100)
    rules: tuple[TaskRule, ...] = DEFAULT_RULES

    @model_validator(mode="after")
    def _unique_ids(self) -> TaskPolicy:
        ids = [rule.id for rule in self.rules]
        duplicates = sorted({rule_id for rule_id in ids if ids.count(rule_id) > 1})
        if duplicates:
            raise ValueError(f"duplicate rule ids: {', '.join(duplicates)}")
        return self


@dataclass(frozen=True)
class RuleContext:
    """What a rule may look at besides the assessment: last run's result and this run's decisions."""

    previous: RiskAssessment | None = None
    limit_held_for_approval: bool = False
    held_limit: Decimal | None = None
    manual_conflicts: tuple[str, ...] = ()
    last_review: date | None = None
    tracked_since: date | None = None
    # band at which an open downgrade task was raised (its cause holds while the band stays worse)
    downgrade_baseline: str | None = None


@dataclass(frozen=True)
class Firing:
    """A rule that fires for an account, at a level, with its rendered texts and assignee."""

    rule: TaskRule
    level: int
    priority: TaskPriority
    subject: str
    description: str
    owner_id: str | None
    due_in_days: int
    meta: Mapping[str, Any]


def _num(features: Mapping[str, Any], name: str) -> float:
    value = features.get(name)
    if value is None or value == "":
        return 0.0
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def _band_steps(worse: str, better: str) -> int:
    return BAND_ORDER.index(worse) - BAND_ORDER.index(better)


def measure(
    rule: TaskRule,
    account: Account,
    assessment: RiskAssessment,
    ctx: RuleContext,
    policy: TaskPolicy,
    as_of: date,
) -> tuple[float | None, dict[str, Any]]:
    """The rule's metric for this account (None = cause absent) and extra template values."""
    features = assessment.features
    if rule.kind == "past_due":
        days = _num(features, "max_days_past_due")
        material = _num(features, "overdue_amount") >= float(policy.materiality_amount)
        return (days if material and days > 0 else None), {"days": int(days)}
    if rule.kind == "over_limit":
        utilisation = features.get("utilisation")
        return (float(utilisation) if utilisation is not None else None), {}
    if rule.kind == "band_downgrade":
        baseline = ctx.downgrade_baseline
        if baseline is None and ctx.previous is not None:
            baseline = ctx.previous.band
            jump = assessment.score - ctx.previous.score
            if assessment.band == baseline and jump >= policy.score_jump_downgrade:
                return 1.0, {"previous_band": baseline}
        if baseline is None or assessment.band <= baseline:
            return None, {}
        return float(_band_steps(assessment.band, baseline)), {"previous_band": baseline}
    if rule.kind == "limit_approval":
        return (1.0 if ctx.limit_held_for_approval else None), {}
    if rule.kind == "review_due":
        start = ctx.last_review or ctx.tracked_since
        interval = policy.review_interval_days.get(assessment.band)
        if start is None or interval is None:
            return None, {}
        return (1.0 if (as_of - start).days >= interval else None), {}
    if rule.kind == "external_signal":
        age = features.get("external_score_age_days")
        if age is not None and float(age) > policy.external_score_max_age_days:
            return 1.0, {"signal": f"report {int(float(age))} days old"}
        previous_score = ctx.previous.features.get("external_score") if ctx.previous else None
        current_score = features.get("external_score")
        if previous_score is not None and current_score is not None:
            drop = float(previous_score) - float(current_score)
            if drop >= policy.external_score_drop:
                return 1.0, {"signal": f"score fell by {drop:g} points"}
        return None, {}
    if rule.kind == "dispute":
        days = _num(features, "oldest_dispute_days")
        return (days if _num(features, "open_disputes") > 0 else None), {"dispute_days": int(days)}
    if rule.kind == "insurance":
        above = _num(features, "exposure_above_insured")
        return (1.0 if above > 0 else None), {"above_insured": _money(above)}
    if rule.kind == "concentration":
        return (1.0 if features.get("concentration_cap_exceeded") else None), {}
    if rule.kind == "manual_conflict":
        fields = ", ".join(ctx.manual_conflicts)
        return (1.0 if ctx.manual_conflicts else None), {"fields": fields}
    return None, {}


def _money(value: float | Decimal | None) -> str:
    if value is None:
        return "-"
    return f"{Decimal(str(value)).quantize(Decimal(1)):,}"


class _SafeDict(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


_LOOSE_SPACE = re.compile(r"[ \t]+(?=[)）\n]|$)")


def render(template: str, values: Mapping[str, Any]) -> str:
    """Fill a template; unknown placeholders stay visible instead of raising.

    An empty value (no currency known) leaves no space before a closing bracket or at a line end.
    """
    return _LOOSE_SPACE.sub("", string.Formatter().vformat(template, (), _SafeDict(values)))


def template_values(
    account: Account, assessment: RiskAssessment, ctx: RuleContext
) -> dict[str, Any]:
    """Placeholders every template may use."""
    features = assessment.features
    utilisation = features.get("utilisation")
    concentration = features.get("concentration_share")
    previous = ctx.previous
    return {
        "account": account.name or account.crm_id,
        "band": assessment.band,
        "level": assessment.level,
        "score": f"{assessment.score:.0f}",
        "previous_band": previous.band if previous else "-",
        "previous_score": f"{previous.score:.0f}" if previous else "-",
        "currency": features.get("currency") or account.currency or "",
        # Limits are written in the account's currency; other money figures are in home.
        "limit_currency": features.get("limit_currency")
        or account.currency
        or features.get("currency")
        or "",
        "overdue_amount": _money(_num(features, "overdue_amount")),
        "overdue_count": int(_num(features, "overdue_count")),
        "utilisation": f"{float(utilisation):.0%}" if utilisation is not None else "-",
        "concentration": f"{float(concentration):.1%}" if concentration is not None else "-",
        "current_limit": _money(account.current_credit_limit),
        "recommended_limit": _money(ctx.held_limit or assessment.recommended_credit_limit),
        "reasons": "; ".join(reason.text for reason in assessment.reasons[:3]) or "-",
        "signal": "",
        "days": int(_num(features, "max_days_past_due")),
        "dispute_days": int(_num(features, "oldest_dispute_days")),
        "above_insured": _money(_num(features, "exposure_above_insured")),
    }


def evaluate(
    account: Account,
    assessment: RiskAssessment,
    ctx: RuleContext,
    policy: TaskPolicy,
    as_of: date,
) -> list[Firing]:
    """Every enabled rule that fires for this account now, with its level and rendered texts. Pure."""
    if not policy.enabled:
        return []
    firings = []
    base_values = template_values(account, assessment, ctx)
    for rule in policy.rules:
        if not rule.enabled:
            continue
        metric, extra = measure(rule, account, assessment, ctx, policy, as_of)
        if metric is None:
            continue
        reached = [index for index, level in enumerate(rule.levels) if metric >= level.threshold]
        if not reached:
            continue
        index = reached[-1]
        level = rule.levels[index]
        values = {**base_values, **extra}
        zh = policy.language == "zh"
        subject = render(level.subject_zh if zh and level.subject_zh else level.subject, values)
        description = render(
            level.description_zh if zh and level.description_zh else level.description, values
        )
        firings.append(
            Firing(
                rule=rule,
                level=index,
                priority=level.priority,
                subject=subject[:255],
                description=description,
                owner_id=assignee(rule, level, account, policy),
                due_in_days=rule.due_in_days,
                meta={"metric": metric, **{k: v for k, v in extra.items() if isinstance(v, str)}},
            )
        )
    return firings


def assignee(rule: TaskRule, level: RuleLevel, account: Account, policy: TaskPolicy) -> str | None:
    """Who gets the task: the level's reassignment, the rule's user, the credit manager or the owner."""
    if level.reassign_to:
        return level.reassign_to
    if rule.assignee == "user":
        return rule.user_id
    if rule.assignee == "credit_manager" and policy.credit_manager_id:
        return policy.credit_manager_id
    if account.owner_id and account.owner_active is not False:
        return account.owner_id
    return policy.fallback_owner_id


def rules_by_id(rules: Sequence[TaskRule]) -> dict[str, TaskRule]:
    """Index rules by id."""
    return {rule.id: rule for rule in rules}
