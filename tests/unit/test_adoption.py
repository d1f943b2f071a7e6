"""Adoption rules: when CRM values count as ours, how marker keys read back, and how scans join the ledger."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from connector.engine.adoption import adopt_open_tasks, adoptable, parse_key, written_elsewhere
from connector.models import TaskPriority, TaskState
from connector.planning.planner import UNKNOWN_LEVEL, LedgerView, plan_tasks
from connector.planning.task_rules import DEFAULT_RULES, Firing
from connector.store import TaskLedgerEntry, open_store

NOW = datetime(2026, 11, 1, 10, 0, 0, 500_000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("in_crm", "ours", "elsewhere"),
    [
        ("2026-11-01T10:00:00+00:00", NOW.isoformat(), False),  # our stamp, cut to seconds
        ("2026-11-01T10:00:00.500+0000", NOW.isoformat(), False),  # our stamp, to the ms
        ("2026-11-01T10:00:02+00:00", NOW.isoformat(), True),  # a later run wrote it
        ("2026-10-01T09:00:00+00:00", NOW.isoformat(), True),  # not the stamp we wrote
        ("2026-11-01T10:00:00+00:00", None, True),  # this store never wrote the account
        (None, NOW.isoformat(), False),  # nothing of ours in the CRM
        (None, None, False),
    ],
    ids=[
        "own_stamp_seconds",
        "own_stamp_millis",
        "later_run",
        "other_stamp",
        "never_written_here",
        "no_stamp_in_crm",
        "nothing",
    ],
)
def test_crm_values_are_ours_only_when_the_stamp_is_the_one_we_wrote(
    in_crm: str | None, ours: str | None, elsewhere: bool
) -> None:
    crm = {"risk_reviewed_at": in_crm} if in_crm else {}
    written = {"risk_reviewed_at": ours} if ours else {}
    assert written_elsewhere(crm, written) is elsewhere


def test_adoptable_takes_non_empty_output_values_only() -> None:
    crm = {
        "risk_score": "42.0",
        "risk_band": "",
        "current_credit_limit": 5000,
        "risk_reasons": None,
    }
    assert adoptable(crm, ["risk_score", "risk_band", "current_credit_limit", "risk_reasons"]) == {
        "risk_score": "42.0",
        "current_credit_limit": 5000,
    }


def test_marker_keys_read_back_from_the_right() -> None:
    key = parse_key("acme:eu:0015g0000001:past_due:3")
    assert key is not None
    assert (key.connection, key.account_id, key.rule, key.episode) == (
        "acme:eu",
        "0015g0000001",
        "past_due",
        3,
    )
    assert parse_key("acme:001:past_due:x") is None
    assert parse_key("something else") is None


def _state(key: str, task_id: str, closed: bool = False) -> TaskState:
    return TaskState(
        crm_task_id=task_id, dedupe_key=key, is_closed=closed, priority=TaskPriority.HIGH
    )


def test_a_scan_adopts_unknown_and_newer_episodes_and_leaves_the_rest(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "s.db"))
    try:
        known = TaskLedgerEntry(
            account_id="A1",
            rule="past_due",
            episode=2,
            state="open",
            dedupe_key="c:A1:past_due:2",
            crm_task_id="T2",
            level=1,
            priority="high",
            owner_id=None,
            meta={},
            opened_at=NOW,
            closed_at=None,
        )
        store.save_ledger("c", known)
        result = adopt_open_tasks(
            store,
            "c",
            [
                _state("c:A1:past_due:1", "T1"),  # older episode than the ledger's: left
                _state("c:A1:past_due:2", "T2"),  # the ledger's own task: left
                _state("c:A1:over_limit:4", "T4"),  # unknown cause: adopted
                _state("c:A2:past_due:1", "T5", closed=True),  # closed: not adopted
                _state("other:A3:past_due:1", "T6"),  # another connection's: left
            ],
            now=NOW,
            run_id="r1",
        )
        assert result.adopted == ["c:A1:over_limit:4"]
        assert result.seen == {"c:A1:past_due:1", "c:A1:past_due:2", "c:A1:over_limit:4"}
        ledger = store.task_ledger("c", "A1")
        assert ledger["past_due"] == known
        adopted = ledger["over_limit"]
        assert (adopted.episode, adopted.state, adopted.crm_task_id, adopted.level) == (
            4,
            "open",
            "T4",
            UNKNOWN_LEVEL,
        )
        assert [row["action"] for row in store.audit("c")] == ["task_adopt"]
    finally:
        store.close()


def test_an_adopted_task_takes_the_level_that_fires_without_a_crm_call() -> None:
    rule = next(rule for rule in DEFAULT_RULES if rule.id == "past_due")
    firing = Firing(
        rule=rule,
        level=2,
        priority=TaskPriority.HIGH,
        subject="s",
        description="d",
        owner_id="U1",
        due_in_days=2,
        meta={},
    )
    adopted = LedgerView(4, "open", "T4", UNKNOWN_LEVEL, "c:A1:past_due:4")
    plan = plan_tasks("c", "A1", [firing], {"past_due": adopted}, [rule], date(2026, 11, 1))
    assert plan.actions == ()
    assert plan.relevel == {"past_due": 2}
    known = LedgerView(4, "open", "T4", 0, "c:A1:past_due:4")
    escalated = plan_tasks("c", "A1", [firing], {"past_due": known}, [rule], date(2026, 11, 1))
    assert [action.action for action in escalated.actions] == ["escalate"]
