"""The planner: write only what changed, respect hand edits, hold big limit changes, one task per cause."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from connector.models import Account, Reason, RiskAssessment
from connector.planning.governance import GovernancePolicy
from connector.planning.planner import LedgerView, plan_account, plan_tasks, truncate
from connector.planning.task_rules import DEFAULT_RULES, Firing, RuleContext, TaskPolicy, evaluate

NOW = datetime(2026, 11, 1, 12, tzinfo=UTC)
AS_OF = date(2026, 11, 1)
FIELDS = [
    "risk_score",
    "risk_band",
    "risk_level",
    "risk_reasons",
    "recommended_credit_limit",
    "current_credit_limit",
    "risk_reviewed_at",
]


def assessment(
    score: float = 30, band: str = "B", limit: str | None = "10000", **features: object
) -> RiskAssessment:
    return RiskAssessment(
        account_id="A1",
        as_of=AS_OF,
        score=score,
        band=band,
        level={"A": "Low", "B": "Low", "C": "Medium", "D": "High", "E": "Critical"}[band],
        confidence=1.0,
        recommended_credit_limit=Decimal(limit) if limit else None,
        reasons=(Reason(code="DBT_HIGH", text="Pays 12 days late on average", points=30),),
        features=dict(features),
    )


def plan(
    acc: Account,
    result: RiskAssessment,
    crm: dict,
    last: dict,
    governance: GovernancePolicy | None = None,
    modes: dict | None = None,
):
    return plan_account(
        acc,
        result,
        crm_values=crm,
        last_written=last,
        write_fields=FIELDS,
        write_modes=modes or {},
        max_lengths={"risk_reasons": 255},
        governance=governance or GovernancePolicy(),
        now=NOW,
    )


def in_crm(result: RiskAssessment, **overrides: object) -> dict:
    values = {
        "risk_score": Decimal(str(result.score)),
        "risk_band": result.band,
        "risk_level": result.level,
        "risk_reasons": "DBT_HIGH: Pays 12 days late on average",
        "recommended_credit_limit": result.recommended_credit_limit,
        "current_credit_limit": result.recommended_credit_limit,
    }
    values.update(overrides)
    return values


ACCOUNT = Account(crm_id="A1", name="Acme", current_credit_limit=Decimal(10000))


def test_first_write_sends_every_field_and_stamps_review_time() -> None:
    result = assessment()
    p = plan(ACCOUNT, result, crm={"current_credit_limit": Decimal(10000)}, last={})
    assert p.update is not None
    assert set(p.update.fields) == {
        "risk_score",
        "risk_band",
        "risk_level",
        "risk_reasons",
        "recommended_credit_limit",
        "risk_reviewed_at",
    }
    assert p.update.fields["risk_reviewed_at"] == NOW


def test_nothing_written_when_crm_already_holds_the_values() -> None:
    result = assessment()
    p = plan(ACCOUNT, result, crm=in_crm(result), last={})
    assert p.update is None
    assert "risk_reviewed_at" not in (p.update.fields if p.update else {})
    assert p.baseline["risk_band"] == "B", "matching CRM values become the diff baseline"


def test_only_changed_fields_are_written() -> None:
    result = assessment(score=45, band="C")
    crm = in_crm(assessment(), risk_score=Decimal("30.0"))
    p = plan(ACCOUNT, result, crm=crm, last=crm)
    assert p.update is not None
    assert set(p.update.fields) == {"risk_score", "risk_band", "risk_level", "risk_reviewed_at"}
    assert p.update.previous["risk_band"] == "B"


def test_score_precision_noise_is_not_a_change() -> None:
    result = assessment(score=30.04)
    p = plan(ACCOUNT, result, crm=in_crm(result, risk_score=30.0), last={})
    assert p.update is None


def test_hand_edited_limit_is_respected_and_reported_as_conflict() -> None:
    result = assessment(limit="11000")
    crm = in_crm(result, current_credit_limit=Decimal(15000))
    p = plan(ACCOUNT, result, crm=crm, last={"current_credit_limit": "10000"})
    assert p.update is None or "current_credit_limit" not in p.update.fields
    assert p.conflicts == ("current_credit_limit",)


def test_overwrite_mode_wins_over_a_hand_edit() -> None:
    governance = GovernancePolicy(manual_changes={"risk_band": "overwrite"})
    result = assessment(band="B")
    crm = in_crm(result, risk_band="A")
    p = plan(ACCOUNT, result, crm=crm, last={"risk_band": "B"}, governance=governance)
    assert p.update is not None and p.update.fields["risk_band"] == "B"


def test_if_empty_never_replaces_a_value() -> None:
    result = assessment(band="C", score=50)
    crm = in_crm(assessment(), risk_band="A")
    p = plan(ACCOUNT, result, crm=crm, last={}, modes={"risk_band": "if_empty"})
    assert p.update is not None and "risk_band" not in p.update.fields


@pytest.mark.parametrize(
    ("current", "recommended", "hard_rule", "expected"),
    [
        ("10000", "18000", False, "held"),  # +80 %: needs approval
        ("10000", "11000", False, "write"),  # +10 %: applied
        ("100000", "119000", False, "write"),  # +19 %, 19k: applied
        ("500000", "580000", False, "held"),  # +16 % but 80k above the absolute threshold
        ("10000", "5000", False, "held"),  # -50 %
        ("10000", "0", True, "write"),  # hard-rule decrease auto-applied
        (None, "20000", False, "write"),  # first limit under the auto maximum
        (None, "90000", False, "held"),  # first limit above it
    ],
    ids=[
        "increase_80pct",
        "increase_10pct",
        "increase_19pct",
        "increase_over_absolute",
        "decrease_50pct",
        "hard_rule_cut",
        "first_small",
        "first_large",
    ],
)
def test_limit_governance(
    current: str | None, recommended: str, hard_rule: bool, expected: str
) -> None:
    result = assessment(limit=recommended)
    if hard_rule:
        result = result.model_copy(update={"hard_rules": ("PAST_DUE_90_MATERIAL",)})
    crm = in_crm(result, current_credit_limit=Decimal(current) if current else None)
    p = plan(ACCOUNT, result, crm=crm, last={})
    decision = {d.field: d.action for d in p.decisions}["current_credit_limit"]
    assert decision == expected
    assert (p.limit_held is not None) == (expected == "held")
    if expected == "held":
        assert p.update is None or "current_credit_limit" not in p.update.fields


def test_manual_override_flag_freezes_all_but_score_and_reasons() -> None:
    result = assessment(score=70, band="D", limit="1000")
    frozen = ACCOUNT.model_copy(update={"manual_override": True})
    p = plan(frozen, result, crm=in_crm(assessment()), last={})
    assert p.update is not None
    assert set(p.update.fields) == {"risk_score", "risk_reviewed_at"}
    assert {d.field for d in p.decisions if d.action == "frozen"} >= {
        "risk_band",
        "current_credit_limit",
    }


def test_reasons_are_truncated_to_the_field_length_and_compare_equal() -> None:
    long_text = "x" * 400
    assert len(truncate(long_text, 255)) == 255
    result = assessment().model_copy(update={"reasons": (Reason(code="R", text=long_text),)})
    crm = in_crm(result, risk_reasons=truncate("R: " + long_text, 255))
    assert plan(ACCOUNT, result, crm=crm, last={}).update is None


# -- tasks -----------------------------------------------------------------------------------

POLICY = TaskPolicy()
RULES = POLICY.rules


def fire(
    result: RiskAssessment, acc: Account = ACCOUNT, ctx: RuleContext | None = None
) -> list[Firing]:
    return evaluate(acc, result, ctx or RuleContext(), POLICY, AS_OF)


def test_95_days_overdue_fires_high_priority_past_due_for_the_owner() -> None:
    acc = ACCOUNT.model_copy(update={"owner_id": "U1"})
    firings = {
        f.rule.id: f
        for f in fire(
            assessment(max_days_past_due=95, overdue_amount=48200, overdue_count=3, currency="EUR"),
            acc,
        )
    }
    past_due = firings["past_due"]
    assert past_due.level == 2 and past_due.priority.value == "high"
    assert past_due.owner_id == "U1"
    assert "95 days" in past_due.subject and "48,200" in past_due.subject


def test_immaterial_overdue_amount_does_not_fire() -> None:
    assert not [
        f
        for f in fire(assessment(max_days_past_due=95, overdue_amount=20))
        if f.rule.id == "past_due"
    ]


def test_inactive_owner_falls_back() -> None:
    policy = TaskPolicy(fallback_owner_id="U9")
    acc = ACCOUNT.model_copy(update={"owner_id": "U1", "owner_active": False})
    firings = evaluate(
        acc, assessment(max_days_past_due=40, overdue_amount=500), RuleContext(), policy, AS_OF
    )
    assert firings[0].owner_id == "U9"


def test_chinese_templates() -> None:
    policy = TaskPolicy(language="zh")
    firings = evaluate(
        ACCOUNT, assessment(max_days_past_due=40, overdue_amount=500), RuleContext(), policy, AS_OF
    )
    assert "逾期" in firings[0].subject


def test_downgrade_fires_on_worse_band_and_holds_until_it_improves() -> None:
    previous = assessment(score=30, band="B")
    firings = [
        f
        for f in fire(assessment(score=65, band="D"), ctx=RuleContext(previous=previous))
        if f.rule.id == "band_downgrade"
    ]
    assert firings and firings[0].level == 0 and "B to D" in firings[0].subject
    still = [
        f
        for f in fire(
            assessment(score=45, band="C"),
            ctx=RuleContext(previous=assessment(score=65, band="D"), downgrade_baseline="B"),
        )
        if f.rule.id == "band_downgrade"
    ]
    assert still, "cause holds while the band stays worse than where the downgrade started"
    cleared = [
        f
        for f in fire(assessment(score=30, band="B"), ctx=RuleContext(downgrade_baseline="B"))
        if f.rule.id == "band_downgrade"
    ]
    assert not cleared


def ledger(
    rule: str, *, state: str = "open", level: int = 0, episode: int = 1
) -> dict[str, LedgerView]:
    return {
        rule: LedgerView(
            episode=episode,
            state=state,
            crm_task_id="T1",
            level=level,
            dedupe_key=f"c:A1:{rule}:{episode}",
        )
    }


def past_due(days: int) -> list[Firing]:
    return [
        f
        for f in fire(assessment(max_days_past_due=days, overdue_amount=5000))
        if f.rule.id == "past_due"
    ]


def test_new_cause_creates_one_task_with_episode_key() -> None:
    tp = plan_tasks("c", "A1", past_due(35), {}, RULES, AS_OF)
    assert [(a.action, a.dedupe_key) for a in tp.actions] == [("create", "c:A1:past_due:1")]
    assert tp.actions[0].due_date == date(2026, 11, 3)


def test_open_task_is_not_created_twice() -> None:
    assert plan_tasks("c", "A1", past_due(35), ledger("past_due"), RULES, AS_OF).actions == ()


def test_worse_condition_escalates_instead_of_a_second_task() -> None:
    tp = plan_tasks("c", "A1", past_due(95), ledger("past_due", level=0), RULES, AS_OF)
    assert [(a.action, a.priority.value, a.crm_task_id) for a in tp.actions] == [
        ("escalate", "high", "T1")
    ]


def test_cleared_cause_completes_the_task() -> None:
    tp = plan_tasks("c", "A1", [], ledger("past_due"), RULES, AS_OF)
    assert [(a.action, a.crm_task_id) for a in tp.actions] == [("complete", "T1")]


def test_new_episode_after_clearing_gets_a_new_key() -> None:
    tp = plan_tasks(
        "c", "A1", past_due(35), ledger("past_due", state="closed", episode=1), RULES, AS_OF
    )
    assert [a.dedupe_key for a in tp.actions] == ["c:A1:past_due:2"]


def test_on_clear_keep_closes_the_ledger_only() -> None:
    keep_rules = tuple(
        rule.model_copy(update={"on_clear": "keep"}) if rule.id == "past_due" else rule
        for rule in DEFAULT_RULES
    )
    tp = plan_tasks("c", "A1", [], ledger("past_due"), keep_rules, AS_OF)
    assert tp.actions == () and tp.close_without_action == ("past_due",)
