"""Pure planning: an assessment against what the CRM holds and what we last wrote -> writes and tasks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from connector.models import Account, AccountUpdate, RiskAssessment, TaskAction
from connector.planning.governance import GovernancePolicy
from connector.planning.task_rules import Firing, TaskRule

ELLIPSIS = "…"
MONEY_FIELDS = frozenset({"recommended_credit_limit", "current_credit_limit", "credit_limit_basis"})
SCORE_FIELDS = frozenset({"risk_score", "probability_late"})
LIMIT_FIELD = "current_credit_limit"
# The limit the review started from (the one a person set; empty when none), written beside the
# limit so a store that lost its state tells our own limit writes from a person's.
BASIS_FIELD = "credit_limit_basis"
REVIEWED_FIELD = "risk_reviewed_at"


@dataclass(frozen=True)
class FieldDecision:
    """What the planner decided for one field, with the values involved (for dry runs and audit)."""

    field: str
    action: str  # write | unchanged | held | conflict | frozen | kept_if_empty
    current: Any
    desired: Any
    cause: str = ""


@dataclass(frozen=True)
class AccountPlan:
    """The writes for one account, the decisions behind them and the baseline to adopt."""

    account_id: str
    update: AccountUpdate | None
    decisions: tuple[FieldDecision, ...]
    limit_held: Decimal | None = None
    conflicts: tuple[str, ...] = ()
    # Fields whose CRM value already equals what we want: adopt it as the diff baseline.
    baseline: dict[str, Any] = field(default_factory=dict)

    def count(self, action: str) -> int:
        """How many fields got this decision."""
        return sum(1 for decision in self.decisions if decision.action == action)


def format_reasons(assessment: RiskAssessment) -> str:
    """The reasons as written to the CRM: one `CODE: sentence` per line, most important first."""
    return "\n".join(f"{reason.code}: {reason.text}" for reason in assessment.reasons)


def truncate(text: str, max_length: int | None) -> str:
    """Cut text to the CRM field's length with an ellipsis, so the diff compares what is stored."""
    if max_length is None or len(text) <= max_length:
        return text
    return text[: max(0, max_length - 1)] + ELLIPSIS


def normalize(field_name: str, value: Any) -> Any:
    """A comparable form: money to cents, scores to one decimal, text stripped, empty to None."""
    if value is None or value == "":
        return None
    if field_name in MONEY_FIELDS or field_name in SCORE_FIELDS:
        try:
            number = Decimal(str(value))
        except (InvalidOperation, ValueError):
            return str(value)
        step = Decimal("0.01") if field_name in MONEY_FIELDS else Decimal("0.1")
        if field_name == "probability_late":
            step = Decimal("0.0001")
        return number.quantize(step)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, str):
        return value.strip()
    return value


def desired_values(
    assessment: RiskAssessment, write_fields: Sequence[str], max_lengths: Mapping[str, int]
) -> dict[str, Any]:
    """The canonical values we want in the CRM, for the fields the mapping writes."""
    values: dict[str, Any] = {
        "risk_score": Decimal(str(round(assessment.score, 1))),
        "risk_band": assessment.band,
        "risk_level": assessment.level,
        "risk_reasons": truncate(format_reasons(assessment), max_lengths.get("risk_reasons")),
        "recommended_credit_limit": assessment.recommended_credit_limit,
        LIMIT_FIELD: assessment.recommended_credit_limit,
        "probability_late": (
            Decimal(str(round(assessment.probability_late, 4)))
            if assessment.probability_late is not None
            else None
        ),
        BASIS_FIELD: (
            Decimal(str(assessment.features["limit_basis"]))
            if assessment.features.get("limit_basis") is not None
            else None
        ),
    }
    return {name: values[name] for name in write_fields if name in values}


def _limit_decision(
    desired: Decimal,
    current: Decimal | None,
    assessment: RiskAssessment,
    policy: GovernancePolicy,
    rate: Decimal = Decimal(1),
) -> str:
    """`write` or `held` (needs a human) for a credit limit change, by the governance thresholds.

    Limits are in the account's currency; the absolute thresholds are in the home currency,
    so amounts are divided by `rate` (units of the account's currency per home unit) first.
    """
    if current is None:
        return "write" if desired / rate <= policy.initial_limit_auto_max else "held"
    change = desired - current
    if change == 0:
        return "write"
    relative = abs(change) / current if current > 0 else Decimal("Infinity")
    if change > 0:
        too_big = (
            relative > Decimal(str(policy.increase_relative))
            or change / rate > policy.increase_absolute
        )
        return "held" if too_big else "write"
    if assessment.hard_rules and policy.auto_apply_hard_rule_decreases:
        return "write"
    too_big = (
        relative > Decimal(str(policy.decrease_relative))
        or -change / rate > policy.decrease_absolute
    )
    return "held" if too_big else "write"


# Public name: the portfolio report asks the same question of its stress scenarios' limits.
limit_decision = _limit_decision


def plan_account(
    account: Account,
    assessment: RiskAssessment,
    *,
    crm_values: Mapping[str, Any],
    last_written: Mapping[str, Any],
    write_fields: Sequence[str],
    write_modes: Mapping[str, str],
    max_lengths: Mapping[str, int],
    governance: GovernancePolicy,
    now: datetime,
    limit_rate: Decimal = Decimal(1),
) -> AccountPlan:
    """Decide, field by field, what to write onto one account. Pure.

    A field is written only when the desired value differs from what the CRM holds. When the
    CRM value differs from what we last wrote, a person changed it: the governance mode for the
    field (respect, overwrite, if_empty) and the mapping's write mode decide who wins.

    Args:
        account: the account as read from the CRM.
        assessment: this run's assessment.
        crm_values: current CRM values of the write fields (canonical names).
        last_written: what the CRM confirmed we wrote last time.
        write_fields: canonical fields the mapping writes.
        write_modes: mapping write mode per field (always, if_empty, respect_manual).
        max_lengths: text field lengths, so truncated reasons compare equal.
        governance: approval thresholds and manual-change policy.
        now: timestamp for the reviewed-at field.
        limit_rate: units of the account's currency per home unit (the absolute approval
            thresholds are home-currency amounts).

    Returns:
        The plan: an AccountUpdate (or None) and a decision per field.
    """
    desired = desired_values(assessment, write_fields, max_lengths)
    decisions: list[FieldDecision] = []
    baseline: dict[str, Any] = {}
    for name, value in desired.items():
        want = normalize(name, value)
        have = normalize(name, crm_values.get(name))
        if want is None:
            continue
        decision = _decide_field(
            name,
            want,
            have,
            account=account,
            assessment=assessment,
            last_written=last_written,
            write_mode=write_modes.get(name),
            governance=governance,
            limit_rate=limit_rate,
        )
        decisions.append(decision)
        if decision.action == "unchanged" and want == have:
            if normalize(name, last_written.get(name)) != want:
                baseline[name] = want
    return AccountPlan(
        account_id=account.crm_id,
        update=_update(account, assessment, decisions, write_fields, crm_values, now),
        decisions=tuple(decisions),
        # Only the limit field is ever held.
        limit_held=next((item.desired for item in decisions if item.action == "held"), None),
        conflicts=tuple(item.field for item in decisions if item.action == "conflict"),
        baseline=baseline,
    )


def _update(
    account: Account,
    assessment: RiskAssessment,
    decisions: Sequence[FieldDecision],
    write_fields: Sequence[str],
    crm_values: Mapping[str, Any],
    now: datetime,
) -> AccountUpdate | None:
    """The fields decided "write" (stamped with the review time when mapped), or None."""
    writes = [decision for decision in decisions if decision.action == "write"]
    to_write = {decision.field: decision.desired for decision in writes}
    previous = {decision.field: decision.current for decision in writes}
    if to_write and REVIEWED_FIELD in write_fields:
        to_write[REVIEWED_FIELD] = now
        previous[REVIEWED_FIELD] = crm_values.get(REVIEWED_FIELD)
    return (
        AccountUpdate(
            account_id=account.crm_id,
            fields=to_write,
            previous=previous,
            cause=_cause("update", assessment),
        )
        if to_write
        else None
    )


def _decide_field(
    name: str,
    want: Any,
    have: Any,
    *,
    account: Account,
    assessment: RiskAssessment,
    last_written: Mapping[str, Any],
    write_mode: str | None,
    governance: GovernancePolicy,
    limit_rate: Decimal,
) -> FieldDecision:
    """What to do with one field whose desired value is known (see plan_account)."""
    if account.manual_override and name not in governance.override_flag_allows:
        return FieldDecision(name, "frozen", have, want, "manual override flag")
    mode = governance.manual_change_mode(name)
    if write_mode == "respect_manual":
        mode = "respect"
    elif write_mode == "if_empty":
        mode = "if_empty"
    person_changed = name in last_written and normalize(name, last_written[name]) != have
    if want == have:
        return FieldDecision(name, "unchanged", have, want)
    if mode == "if_empty" and have is not None:
        return FieldDecision(name, "kept_if_empty", have, want, "field is not empty")
    if person_changed and mode == "respect":
        return FieldDecision(name, "conflict", have, want, "changed in the CRM by a person")
    if name == LIMIT_FIELD:
        decision = _limit_decision(want, have, assessment, governance, limit_rate)
        if decision == "held":
            return FieldDecision(name, "held", have, want, "change needs approval")
    if name == "risk_score" and have is not None and governance.score_write_tolerance > 0:
        if abs(float(want) - float(have)) < governance.score_write_tolerance:
            return FieldDecision(name, "unchanged", have, want, "within tolerance")
    return FieldDecision(name, "write", have, want, _cause(name, assessment))


def _cause(name: str, assessment: RiskAssessment) -> str:
    top = assessment.reasons[0].code if assessment.reasons else "score"
    if name in (LIMIT_FIELD, "recommended_credit_limit"):
        return f"limit rule (band {assessment.band})"
    return f"band {assessment.band}, score {assessment.score:.1f}, top reason {top}"


# -- tasks -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LedgerView:
    """What the planner needs from the task ledger for one (account, rule)."""

    episode: int
    state: str
    crm_task_id: str | None
    level: int
    dedupe_key: str


# The level of a task adopted from the CRM (found by its marker, not created by this store).
UNKNOWN_LEVEL = -1


@dataclass(frozen=True)
class TaskPlan:
    """Task actions for one account plus ledger rows to close without a CRM call (on_clear=keep)."""

    actions: tuple[TaskAction, ...]
    close_without_action: tuple[str, ...] = ()
    levels: dict[str, int] = field(default_factory=dict)
    # Adopted open tasks whose level becomes known now: a ledger update, no CRM call.
    relevel: dict[str, int] = field(default_factory=dict)
    # Why a rule's task is closed, for the audit (e.g. a person settled an approval).
    close_causes: dict[str, str] = field(default_factory=dict)


def dedupe_key(connection: str, account_id: str, rule_id: str, episode: int) -> str:
    """The key that makes a task unique per (connection, account, rule, episode)."""
    return f"{connection}:{account_id}:{rule_id}:{episode}"


def plan_tasks(
    connection: str,
    account_id: str,
    firings: Sequence[Firing],
    ledger: Mapping[str, LedgerView],
    rules: Sequence[TaskRule],
    as_of: date,
) -> TaskPlan:
    """One open task per (account, rule): create, escalate, or clear it as the rule says. Pure."""
    fired = {firing.rule.id: firing for firing in firings}
    actions: list[TaskAction] = []
    close_only: list[str] = []
    levels: dict[str, int] = {}
    relevel: dict[str, int] = {}
    for rule in rules:
        firing = fired.get(rule.id)
        entry = ledger.get(rule.id)
        is_open = entry is not None and entry.state == "open"
        if firing is not None and not is_open:
            episode = entry.episode + 1 if entry is not None else 1
            actions.append(
                TaskAction(
                    action="create",
                    account_id=account_id,
                    rule=rule.id,
                    dedupe_key=dedupe_key(connection, account_id, rule.id, episode),
                    subject=firing.subject,
                    description=firing.description,
                    owner_id=firing.owner_id,
                    due_date=as_of + timedelta(days=firing.due_in_days),
                    priority=firing.priority,
                )
            )
            levels[rule.id] = firing.level
        elif firing is not None and entry is not None and is_open:
            if entry.level == UNKNOWN_LEVEL:
                # Adopted from the CRM: it was raised for this cause; take its level as is.
                relevel[rule.id] = firing.level
            elif firing.level > entry.level and entry.crm_task_id:
                actions.append(
                    TaskAction(
                        action="escalate",
                        account_id=account_id,
                        rule=rule.id,
                        dedupe_key=entry.dedupe_key,
                        subject=firing.subject,
                        description=firing.description,
                        owner_id=firing.owner_id if rule.levels[firing.level].reassign_to else None,
                        priority=firing.priority,
                        crm_task_id=entry.crm_task_id,
                    )
                )
                levels[rule.id] = firing.level
        elif firing is None and entry is not None and is_open:
            if rule.on_clear == "keep" or not entry.crm_task_id:
                close_only.append(rule.id)
                continue
            actions.append(
                TaskAction(
                    action="complete" if rule.on_clear == "complete" else "comment",
                    account_id=account_id,
                    rule=rule.id,
                    dedupe_key=entry.dedupe_key,
                    description=f"The cause cleared on {as_of.isoformat()}.",
                    crm_task_id=entry.crm_task_id,
                )
            )
    return TaskPlan(
        actions=tuple(actions),
        close_without_action=tuple(close_only),
        levels=levels,
        relevel=relevel,
    )
