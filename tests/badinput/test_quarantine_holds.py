"""Issue 22, points 1, 2 and 7 on the fake CRM: a record that fails validation holds its account, nothing is written from stale data."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from connector.cli.main import main
from connector.engine.sync import classify_exit
from tests.badinput.conftest import Env, crm_state, seed, valid_invoice
from tests.fakes import FakeAdapter, FakeCrm


def _first_run(env: Env) -> tuple[FakeCrm, dict[str, dict[str, Any]], list[tuple[Any, ...]]]:
    crm = FakeCrm()
    seed(crm)
    report = env.sync(FakeAdapter(crm))
    assert report.status == "succeeded", report.to_dict()["errors"]
    accounts, tasks = crm_state(crm)
    return crm, accounts, tasks


def _overdue(account_id: str, k: int, **overrides: Any) -> dict[str, Any]:
    values = valid_invoice(
        account_id,
        k,
        IssueDate="2026-06-01",
        DueDate="2026-07-01",
        Amount=30000,
        OpenAmount=30000,
        PaidDate=None,
        Status="Open",
    )
    values.update(overrides)
    return values


def test_point1_an_invalid_edit_with_a_manual_limit_holds_the_account_and_keeps_the_persons_limit(
    env: Env,
) -> None:
    crm, accounts, tasks = _first_run(env)
    # One edit: manual override on, the limit a person chose, and an invalid revenue.
    crm.put("Account", "A002", ManualOverride=True, CreditLimit=50000, PaymentTerms=-1)
    crm.put("Invoice", "A002-NEW", **_overdue("A002", 20))

    report = env.sync(FakeAdapter(crm))

    after, after_tasks = crm_state(crm)
    assert after["A002"]["CreditLimit"] == 50000, "the person's limit is never overwritten"
    assert {k: v for k, v in after["A002"].items() if k != "CreditLimit"} == {
        k: v for k, v in accounts["A002"].items() if k != "CreditLimit"
    }, "no field of a held account is written"
    assert [t for t in after_tasks if t[0] == "A002"] == [t for t in tasks if t[0] == "A002"]
    assert [item["account_id"] for item in report.held] == ["A002"]
    assert "payment_terms_days" in report.held[0]["records"][0]["reason"]
    assert classify_exit(report) == 1
    assert not [
        row for row in env.store.audit("fake", record_id="A002") if row["run_id"] == report.run_id
    ]


def test_point1_an_invoice_settled_with_an_unmapped_status_holds_the_account_and_its_task(
    env: Env,
) -> None:
    crm, accounts, tasks = _first_run(env)
    open_before = [t for t in tasks if t[0] == "A001"]
    assert open_before, "the seed opens a past-due task on A001"
    # The overdue invoice is settled with a status the admin just added to the picklist.
    crm.put("Invoice", "A001-LATE", Status="Refunded", OpenAmount=0, PaidDate="2026-10-01")

    report = env.sync(FakeAdapter(crm))

    after, after_tasks = crm_state(crm)
    assert after["A001"] == accounts["A001"], "not rescored from the invoice's old 'open' copy"
    assert [t for t in after_tasks if t[0] == "A001"] == open_before, (
        "the open task is left alone: not escalated, not completed"
    )
    [held] = report.held
    assert held["account_id"] == "A001"
    assert held["records"][0]["rule"] == "UNKNOWN_STATUS"
    assert report.to_dict()["quarantined"][0]["value"] == "'Refunded'"

    # The admin maps the new status (here: the person sets it to Paid): the account is released,
    # scored from the valid copy and its task closed.
    crm.put("Invoice", "A001-LATE", Status="Paid")
    released = env.sync(FakeAdapter(crm))
    assert released.held == []
    assert env.store.quarantined("fake") == []
    past_due = [t for t in crm_state(crm)[1] if t[0] == "A001" and "past due" in t[1]]
    assert [status for _, _, status, _ in past_due] == ["Completed"]


def test_point2_an_invoice_from_1900_and_terms_of_minus_300_days_drive_no_write(env: Env) -> None:
    crm, accounts, tasks = _first_run(env)
    assert accounts["A003"]["RiskBand"] in ("A", "B")
    crm.put(
        "Invoice",
        "A003-1900",
        **_overdue(
            "A003", 30, IssueDate="1900-10-01", DueDate="1900-10-31", Amount=9000, OpenAmount=9000
        ),
    )
    crm.put("Account", "A004", PaymentTerms=-300)

    report = env.sync(FakeAdapter(crm))

    after, after_tasks = crm_state(crm)
    assert after["A003"] == accounts["A003"], "no A -> D, no limit cut"
    assert after["A004"] == accounts["A004"], "no limit of 0"
    assert [t for t in after_tasks if t[0] in ("A003", "A004")] == [
        t for t in tasks if t[0] in ("A003", "A004")
    ], "no '46022 days past due' task, no approval task '20,000 -> 0'"
    rules = {(q["record_id"], q["rule"]) for q in report.quarantined}
    assert rules == {("A003-1900", "DATE_BEFORE_FLOOR"), ("A004", "PAYMENT_TERMS_OUT_OF_RANGE")}
    reasons = " ".join(q["reason"] for q in report.quarantined)
    assert "[validation] date_floor" in reasons and "payment_terms_min" in reasons


def test_point7_quarantined_records_stay_listed_until_fixed_and_runs_that_quarantine_exit_1(
    env: Env,
) -> None:
    crm, _accounts, _tasks = _first_run(env)
    crm.put("Invoice", "A000-BAD", **valid_invoice("A000", 40, Amount="lots"))

    first = env.sync(FakeAdapter(crm))
    # Two hours on, other edits move the watermarks past the overlap window, so the run after
    # next no longer reads the bad record.
    crm.clock += timedelta(hours=2)
    crm.put("Account", "A004", Industry="Wholesale")
    crm.put("Invoice", "A004-I0", Number="INV-A004-0-corrected")
    env.sync(FakeAdapter(crm))
    quiet = env.sync(FakeAdapter(crm))
    assert quiet.objects["invoice"]["invalid"] == 0

    assert classify_exit(first) == 1 and first.to_dict()["quarantined_count"] == 1
    # The next run reads nothing new: it exits 0 but the record is still listed and still holds.
    assert classify_exit(quiet) == 0, (quiet.quarantined, quiet.to_dict()["errors"], quiet.objects)
    [row] = env.store.quarantined("fake")
    assert (row["object"], row["record_id"], row["rule"], row["account_id"]) == (
        "invoice",
        "A000-BAD",
        "INVALID_FIELD_VALUE",
        "A000",
    )
    assert row["value"] == "'lots'" and row["first_seen"] <= row["last_seen"]
    assert quiet.held_count == 1


def test_point7_the_quarantine_command_and_status_show_every_held_record(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    crm, _accounts, _tasks = _first_run(env)
    crm.put("Invoice", "A000-BAD", **valid_invoice("A000", 40, Amount="lots"))
    crm.put("Account", "A004", PaymentTerms=-300)
    env.sync(FakeAdapter(crm))
    config = str(env.tmp_path / "crm-risk.toml")
    capsys.readouterr()

    assert main(["quarantine", "--config", config, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["count"] == 2
    rows = {row["record_id"]: row for row in listed["quarantined"]}
    assert rows["A000-BAD"]["holds_account"] == "A000"
    assert rows["A000-BAD"]["rule"] == "INVALID_FIELD_VALUE"
    assert rows["A004"]["rule"] == "PAYMENT_TERMS_OUT_OF_RANGE"
    assert rows["A004"]["value"] == "-300"
    assert rows["A004"]["first_seen"] and rows["A004"]["last_seen"]

    assert main(["quarantine", "--config", config, "--connection", "fake"]) == 0
    text = capsys.readouterr().out
    assert "A000-BAD" in text and "PAYMENT_TERMS_OUT_OF_RANGE" in text

    assert main(["status", "--config", config, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["connections"]["fake"]["quarantined"] == 2
    assert status["connections"]["fake"]["held_accounts"] == 2
    assert status["runs"][0]["report"]["quarantined_count"] == 2
    assert main(["status", "--config", config]) == 0
    assert "quarantined 2 (holding 2 accounts" in capsys.readouterr().out


class _ById(FakeAdapter):
    """The fake CRM, counting the records read back by id."""

    def __init__(self, crm: FakeCrm) -> None:
        super().__init__(crm)
        self.by_id: list[str] = []

    def read_by_ids(self, crm_object: str, fields: Any, ids: Any) -> Any:
        self.by_id.extend(ids)
        return super().read_by_ids(crm_object, fields, ids)


def _sync_with_mapping(env: Env, adapter: FakeAdapter, mapping_text: str) -> Any:
    from connector.engine.sync import SyncOptions, run_sync
    from connector.mapping import load_mapping
    from tests.badinput.conftest import AS_OF, MAPPING

    path = env.tmp_path / "fixed.toml"
    path.write_text(mapping_text or MAPPING.read_text())
    return run_sync(
        config=env.config,
        connection=env.config.connection("fake"),
        adapter=adapter,
        store=env.store,
        mapping=load_mapping(str(path)),
        options=SyncOptions(as_of=AS_OF),
    )


def test_point1_fixing_the_mapping_releases_held_accounts_on_the_next_run_without_an_edit(
    env: Env,
) -> None:
    from tests.badinput.conftest import MAPPING

    crm, _accounts, _tasks = _first_run(env)
    crm.put("Invoice", "A001-LATE", Status="Refunded", OpenAmount=0, PaidDate="2026-10-01")
    held = env.sync(FakeAdapter(crm))
    assert [item["account_id"] for item in held.held] == ["A001"]
    # Hours pass: the incremental read no longer brings the record back by itself.
    crm.clock += timedelta(hours=2)
    crm.put("Account", "A004", Industry="Wholesale")
    crm.put("Invoice", "A004-I0", Number="INV-A004-0-corrected")
    env.sync(FakeAdapter(crm))
    quiet = env.sync(FakeAdapter(crm))
    assert quiet.objects["invoice"]["invalid"] == 0 and quiet.held_count == 1

    # The admin maps the new status; nobody edits the invoice.
    fixed = MAPPING.read_text().replace('Void = "void"', 'Void = "void", Refunded = "paid"')
    adapter = _ById(crm)
    released = _sync_with_mapping(env, adapter, fixed)

    assert adapter.by_id == ["A001-LATE"], "the held record is read again by id"
    assert released.held == [] and released.held_count == 0
    assert env.store.quarantined("fake") == []
    past_due = [t for t in crm_state(crm)[1] if t[0] == "A001" and "past due" in t[1]]
    assert [status for _, _, status, _ in past_due] == ["Completed"], "scored from the valid copy"
    assert classify_exit(released) == 0

    # The mapping stays as it is: no more reads by id.
    again = _ById(crm)
    _sync_with_mapping(env, again, fixed)
    assert again.by_id == []


def test_point1_a_held_record_deleted_in_the_crm_is_released_when_read_again_by_id(
    env: Env,
) -> None:
    from tests.badinput.conftest import MAPPING

    crm, _accounts, _tasks = _first_run(env)
    crm.put("Invoice", "A000-BAD", **valid_invoice("A000", 40, Amount="lots"))
    env.sync(FakeAdapter(crm))
    del crm.records["Invoice"]["A000-BAD"]  # gone without a trace the incremental read sees

    moved = MAPPING.read_text() + '\n[validation]\ndate_floor = "1980-01-01"\n'
    report = _sync_with_mapping(env, _ById(crm), moved)

    assert env.store.quarantined("fake") == [] and report.held_count == 0


def test_point8_a_known_hold_read_again_does_not_make_every_run_exit_1(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    crm, _accounts, _tasks = _first_run(env)
    crm.put("Invoice", "A000-BAD", **valid_invoice("A000", 40, Amount="lots"))
    first = env.sync(FakeAdapter(crm))
    # The same bad record is read again (it sits inside the overlap window of every run).
    second = env.sync(FakeAdapter(crm))
    third = env.sync(FakeAdapter(crm))

    assert classify_exit(first) == 1 and first.to_dict()["quarantined_new"] == 1
    for later in (second, third):
        assert later.objects["invoice"]["invalid"] == 1, "it was read again"
        assert later.to_dict()["quarantined_new"] == 0
        assert later.held_count == 1 and later.status == "succeeded"
        assert classify_exit(later) == 0
        assert later.errors.top() == []
    # A new problem on the same record (another value) is news again.
    crm.put("Invoice", "A000-BAD", Amount="heaps")
    assert classify_exit(env.sync(FakeAdapter(crm))) == 1
    # The hold stays visible where an operator looks.
    config = str(env.tmp_path / "crm-risk.toml")
    capsys.readouterr()
    assert main(["status", "--config", config]) == 0
    assert "quarantined 1 (holding 1 accounts" in capsys.readouterr().out


def test_point6_a_due_date_in_9999_and_a_created_date_in_1800_are_refused_like_a_1900_invoice(
    env: Env,
) -> None:
    crm, accounts, tasks = _first_run(env)
    crm.put("Invoice", "A003-9999", **_overdue("A003", 30, DueDate="9999-12-31", Amount=9000))
    crm.put("Account", "A004", CreatedDate="1800-01-01T00:00:00+00:00")
    crm.put("Account", "A002", CreatedDate="2099-01-01T00:00:00+00:00")

    report = env.sync(FakeAdapter(crm))

    after, after_tasks = crm_state(crm)
    for held in ("A002", "A003", "A004"):
        assert after[held] == accounts[held], f"nothing written onto {held}"
    assert [t for t in after_tasks if t[0] in ("A002", "A003", "A004")] == [
        t for t in tasks if t[0] in ("A002", "A003", "A004")
    ]
    found = {q["record_id"]: q for q in report.quarantined}
    assert {rid: q["rule"] for rid, q in found.items()} == {
        "A003-9999": "DUE_DATE_TOO_FAR",
        "A004": "DATE_BEFORE_FLOOR",
        "A002": "DATE_IN_FUTURE",
    }
    # Each message names the record, the field (canonical and CRM name) and the rule's setting.
    assert "record A003-9999: due_date (DueDate): 9999-12-31" in found["A003-9999"]["reason"]
    assert "[validation] max_due_days" in found["A003-9999"]["reason"]
    assert "record A004: created_at (CreatedDate): 1800-01-01" in found["A004"]["reason"]
    assert "[validation] created_floor" in found["A004"]["reason"]
    assert "record A002: created_at (CreatedDate): 2099-01-01" in found["A002"]["reason"]
    assert classify_exit(report) == 1
