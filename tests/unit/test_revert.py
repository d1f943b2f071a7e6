"""Revert planning from the audit log: what a run replaced, what it created, and unknown runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.engine.revert import FieldRestore, plan_revert
from connector.errors import ConfigError
from connector.store import open_store


def test_plan_reads_the_first_replaced_and_last_written_value_and_the_created_tasks(
    tmp_path: Path,
) -> None:
    store = open_store(str(tmp_path / "s.db"))
    try:
        for old, new in (("10000.00", "8000.00"), ("8000.00", "6000.00")):
            store.append_audit(
                "r2", "c", obj="account", record_id="A1", action="update",
                field="current_credit_limit", old=old, new=new, response="ok",
            )  # fmt: skip
        store.append_audit(
            "r2", "c", obj="task", record_id="A1", action="task_create", field="past_due",
            new={"task_id": "T9"}, response="ok",
        )  # fmt: skip
        store.append_audit(
            "r3", "c", obj="account", record_id="A1", action="update", field="risk_band",
            old="B", new="C", response="ok",
        )  # fmt: skip
        connection, changes, tasks = plan_revert(store, "r2")
        assert connection == "c"
        assert changes == {("A1", "current_credit_limit"): ("10000.00", "6000.00")}
        assert [(t.account_id, t.rule, t.task_id) for t in tasks] == [("A1", "past_due", "T9")]
        with pytest.raises(ConfigError, match="no audited CRM write carries run id 'nope'"):
            plan_revert(store, "nope")
    finally:
        store.close()


@pytest.mark.parametrize(
    ("field", "written", "current", "ours"),
    [
        ("current_credit_limit", "6000.00", 6000, True),
        ("current_credit_limit", "6000.00", 50000, False),
        (
            "risk_reviewed_at",
            "2027-01-20T10:00:00.700000+00:00",
            "2027-01-20T10:00:00.000+0000",
            True,
        ),
        (
            "risk_reviewed_at",
            "2027-01-20T10:00:00.700000+00:00",
            "2027-01-21T09:00:00+00:00",
            False,
        ),
        ("risk_band", "C", "C", True),
    ],
    ids=["limit_same", "limit_edited", "stamp_cut_to_crm_precision", "stamp_rewritten", "band"],
)
def test_a_field_is_restored_only_while_the_crm_holds_what_the_run_wrote(
    field: str, written: str, current: object, ours: bool
) -> None:
    item = FieldRestore("A1", field, written, None, current)
    assert item.still_ours is ours
