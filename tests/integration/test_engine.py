"""One complete run on each store (a real SQLite file, a real PostgreSQL cluster) against the in-memory fake CRM: idempotence, retries, crashes."""

from __future__ import annotations

import copy
import textwrap
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from connector.config import AppConfig, load_config
from connector.engine.sync import SyncOptions, run_sync
from connector.errors import LockHeldError
from connector.mapping import load_mapping
from connector.store import SqlStore, open_store
from tests.fakes import FakeAdapter, FakeCrm
from tests.support import STORES

AS_OF = date(2026, 11, 1)
MAPPING = Path(__file__).resolve().parents[1] / "fixtures" / "mappings" / "fake.toml"


def seed(crm: FakeCrm, accounts: int = 7) -> None:
    """Accounts with distinct payment behaviour: prompt payers, one 95 days overdue, one disputed."""
    for n in range(accounts):
        account_id = f"A{n:03d}"
        crm.put(
            "Account",
            account_id,
            Name=f"Customer {n}",
            OwnerId=f"U{n % 3}",
            Currency="EUR",
            Industry="Retail",
            Country="DE",
            CreatedDate="2022-01-01T00:00:00+00:00",
            PaymentTerms=30,
            CreditLimit=20000,
        )
        for k in range(6):
            month = 3 + k
            crm.put(
                "Invoice",
                f"{account_id}-I{k}",
                Number=f"INV-{n}-{k}",
                AccountId=account_id,
                IssueDate=f"2026-{month:02d}-01",
                DueDate=f"2026-{month + 1:02d}-01",
                Amount=1000,
                OpenAmount=0,
                PaidDate=f"2026-{month + 1:02d}-0{1 + (n % 5)}",
                Status="Paid",
                Currency="EUR",
            )
    crm.put(
        "Invoice",
        "A001-LATE",
        Number="INV-LATE",
        AccountId="A001",
        IssueDate="2026-06-29",
        DueDate="2026-07-29",
        Amount=9000,
        OpenAmount=9000,
        Status="Open",
        Currency="EUR",
    )


@pytest.fixture
def env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store_kind: str, store_url: str
) -> Iterator[tuple[AppConfig, SqlStore]]:
    monkeypatch.setenv("CRMRISK_CONNECTIONS__FAKE__CLIENT_SECRET", "fake-secret")
    monkeypatch.setenv("CRMRISK_CONNECTIONS__FAKE__REFRESH_TOKEN", "fake-refresh")
    config_path = tmp_path / "crm-risk.toml"
    config_path.write_text(
        textwrap.dedent(
            f"""
            [store]
            url = "{store_url}"
            [connections.fake]
            kind = "fake"
            mapping = "{MAPPING}"
            overlap_seconds = 60
            """
        )
    )
    config = load_config(config_path)
    store = open_store(config.store.url)
    assert isinstance(store, STORES[store_kind])
    yield config, store
    store.close()


def sync(config: AppConfig, store, adapter: FakeAdapter, **options):
    connection = config.connection("fake")
    return run_sync(
        config=config,
        connection=connection,
        adapter=adapter,
        store=store,
        mapping=load_mapping(connection.mapping),
        options=SyncOptions(as_of=AS_OF, **options),
    )


def crm_state(crm: FakeCrm) -> tuple[dict, list]:
    fields = (
        "RiskScore",
        "RiskBand",
        "RiskLevel",
        "RiskReasons",
        "RecommendedLimit",
        "CreditLimit",
    )
    accounts = {
        rid: {f: rec.get(f) for f in fields} for rid, rec in sorted(crm.records["Account"].items())
    }
    tasks = sorted(
        (t["WhatId"], t["Subject"], t["Status"], t["Priority"]) for t in crm.tasks.values()
    )
    return accounts, tasks


def test_first_run_writes_every_account_second_run_nothing(env) -> None:
    config, store = env
    crm = FakeCrm()
    seed(crm)
    adapter = FakeAdapter(crm)
    first = sync(config, store, adapter)
    assert first.status == "succeeded"
    assert first.writes["account"]["written"] == 7
    assert all(rec.get("RiskBand") for rec in crm.records["Account"].values())
    assert first.tasks["create"] >= 1
    late = [t for t in crm.tasks.values() if t["WhatId"] == "A001"]
    assert late and any(t["Priority"] == "high" for t in late)

    writes_before = len(adapter.write_requests)
    tasks_before = dict(crm.tasks)
    second = sync(config, store, adapter)
    assert second.status == "succeeded"
    assert second.writes["account"]["written"] == 0
    assert second.tasks["create"] == 0
    assert len(adapter.write_requests) == writes_before
    assert crm.tasks == tasks_before
    assert [run["status"] for run in store.recent_runs("fake")] == ["succeeded", "succeeded"]


def test_changing_one_invoice_rewrites_only_that_account(env) -> None:
    config, store = env
    crm = FakeCrm()
    seed(crm)
    adapter = FakeAdapter(crm)
    sync(config, store, adapter)
    crm.put(
        "Invoice", "A003-I5", OpenAmount=1000, PaidDate=None, Status="Open", DueDate="2026-08-01"
    )
    report = sync(config, store, adapter)
    assert report.scored == 1
    written = {change.crm_id for request in adapter.write_requests[-1:] for change in request}
    assert written == {"A003"}
    assert report.writes["account"]["written"] == 1


def test_rejected_record_is_retried_and_audited_only_when_accepted(env) -> None:
    config, store = env
    crm = FakeCrm()
    seed(crm)
    adapter = FakeAdapter(crm)
    adapter.reject["A002"] = "FIELD_CUSTOM_VALIDATION_EXCEPTION"
    first = sync(config, store, adapter)
    assert first.status == "succeeded_with_rejections"
    assert first.writes["account"]["rejected"] == 1
    assert "RiskBand" not in crm.records["Account"]["A002"]
    assert not [row for row in store.audit("fake", record_id="A002") if row["action"] == "update"]
    assert [row["record_id"] for row in store.failed_writes("fake")] == ["A002"]

    # Unchanged inputs: the rejected account is sent again (diff against confirmed values).
    second = sync(config, store, adapter)
    assert [c.crm_id for c in adapter.write_requests[-1]] == ["A002"]
    assert second.status == "succeeded_with_rejections"

    del adapter.reject["A002"]
    third = sync(config, store, adapter)
    assert third.status == "succeeded"
    assert crm.records["Account"]["A002"]["RiskBand"]
    assert [row for row in store.audit("fake", record_id="A002") if row["action"] == "update"]
    assert store.failed_writes("fake") == []
    requests = len(adapter.write_requests)
    sync(config, store, adapter)
    assert len(adapter.write_requests) == requests, "after success nothing is resent"


def test_crash_between_batches_converges_to_the_uninterrupted_result(env, tmp_path: Path) -> None:
    config, store = env
    reference_crm = FakeCrm()
    seed(reference_crm)
    crashed_crm = copy.deepcopy(reference_crm)

    reference_store = open_store(str(tmp_path / "reference.db"))
    try:
        sync(config, reference_store, FakeAdapter(reference_crm))
    finally:
        reference_store.close()

    batches = {"n": 0}

    def crash_after_first_batch() -> None:
        batches["n"] += 1
        if batches["n"] == 2:
            raise KeyboardInterrupt("killed between write batches")

    adapter = FakeAdapter(crashed_crm)
    with pytest.raises(KeyboardInterrupt):
        sync(config, store, adapter, after_batch=crash_after_first_batch)
    assert store.lease("fake") is None, "the lease is released even on a crash"
    assert store.recent_runs("fake")[0]["status"] == "failed"
    partially = sum(1 for rec in crashed_crm.records["Account"].values() if rec.get("RiskBand"))
    assert 0 < partially < 7

    sync(config, store, adapter)
    assert crm_state(crashed_crm) == crm_state(reference_crm)


def test_lost_task_create_response_never_duplicates(env) -> None:
    config, store = env
    crm = FakeCrm()
    seed(crm)
    adapter = FakeAdapter(crm)
    adapter.lose_next_create_response = True
    with pytest.raises(Exception, match="timed out"):
        sync(config, store, adapter)
    after_loss = sync(config, store, adapter)
    for _ in range(3):
        sync(config, store, adapter)
    retried = {key: flags for key, flags in adapter.first_attempts.items() if len(flags) > 1}
    # The task whose answer was lost is found by the next run (adopted: the ledger was empty),
    # and the rest of its batch is sent again.
    assert after_loss.adopted_tasks == 1
    assert retried or len(adapter.first_attempts) == 1
    # Every key of that batch may have landed: on retry the adapter is told to look it up.
    assert all(flags[0] and not any(flags[1:]) for flags in retried.values())
    assert all(
        flags == [True] for key, flags in adapter.first_attempts.items() if key not in retried
    )
    subjects = [(t["WhatId"], t["Subject"]) for t in crm.tasks.values()]
    assert len(subjects) == len(set(subjects))
    per_rule = [
        (t["WhatId"], t["Description"].rsplit("[crm-risk:", 1)[1]) for t in crm.tasks.values()
    ]
    assert len(per_rule) == len(set(per_rule))


def test_paying_the_invoice_completes_the_task_and_a_new_episode_opens_a_new_one(env) -> None:
    config, store = env
    crm = FakeCrm()
    seed(crm)
    adapter = FakeAdapter(crm)
    sync(config, store, adapter)
    past_due = [
        t for t in crm.tasks.values() if t["WhatId"] == "A001" and "past due" in t["Subject"]
    ]
    assert len(past_due) == 1
    for _ in range(3):
        sync(config, store, adapter)
    assert (
        len([t for t in crm.tasks.values() if t["WhatId"] == "A001" and "past due" in t["Subject"]])
        == 1
    )

    crm.put("Invoice", "A001-LATE", OpenAmount=0, PaidDate="2026-10-30", Status="Paid")
    sync(config, store, adapter)
    assert past_due[0]["Status"] == "Completed"

    crm.put(
        "Invoice",
        "A001-LATE2",
        Number="L2",
        AccountId="A001",
        IssueDate="2026-07-01",
        DueDate="2026-08-01",
        Amount=5000,
        OpenAmount=5000,
        Status="Open",
        Currency="EUR",
    )
    sync(config, store, adapter)
    tasks = [t for t in crm.tasks.values() if t["WhatId"] == "A001" and "past due" in t["Subject"]]
    assert len(tasks) == 2
    assert sorted(t["Status"] for t in tasks) == ["Completed", "Not Started"]


def test_task_closed_by_a_person_is_not_reopened(env) -> None:
    config, store = env
    crm = FakeCrm()
    seed(crm)
    adapter = FakeAdapter(crm)
    sync(config, store, adapter)
    task = next(
        t for t in crm.tasks.values() if t["WhatId"] == "A001" and "past due" in t["Subject"]
    )
    task["Status"] = "Completed"
    for _ in range(3):
        sync(config, store, adapter)
    assert (
        len([t for t in crm.tasks.values() if t["WhatId"] == "A001" and "past due" in t["Subject"]])
        == 1
    )


def test_dry_run_leaves_the_database_and_the_crm_untouched(env) -> None:
    config, store = env
    crm = FakeCrm()
    seed(crm)
    adapter = FakeAdapter(crm)
    report = sync(config, store, adapter, dry_run=True)
    assert report.status == "succeeded"
    assert report.scored == 7, "the dry run scores on its private copy"
    assert adapter.write_requests == []
    assert crm.tasks == {}
    assert store.count_accounts("fake") == 0
    assert store.watermarks("fake") == {}
    assert store.recent_runs("fake") == []
    assert store.lease("fake") is None
    fields = [item for item in report.planned if "fields" in item]
    tasks = [item for item in report.planned if "task" in item]
    assert len(fields) == 7 and fields[0]["fields"]["risk_band"]["old"] is None
    assert any(item["task"] == "create" and item["account_id"] == "A001" for item in tasks)
    real = sync(config, store, adapter)
    assert real.writes["account"]["written"] == 7


def test_deleted_invoice_leaves_scoring(env) -> None:
    config, store = env
    crm = FakeCrm()
    seed(crm)
    adapter = FakeAdapter(crm)
    sync(config, store, adapter)
    crm.delete("Invoice", "A001-LATE")
    report = sync(config, store, adapter)
    assert report.objects["invoice"]["deleted"] == 1
    assert store.get_assessment("fake", "A001").features.get("max_days_past_due", 0) == 0


def test_second_process_cannot_run_while_lease_is_held(env) -> None:
    config, store = env
    store.acquire_lease("fake", "someone-else", ttl_seconds=300)
    with pytest.raises(LockHeldError, match="already running"):
        sync(config, store, FakeAdapter(FakeCrm()))


def test_equal_timestamps_at_a_page_boundary_are_not_skipped(env) -> None:
    config, store = env
    crm = FakeCrm()
    seed(crm, accounts=0)
    same = crm.tick()
    for n in range(5):
        crm.records["Account"][f"S{n}"] = {
            "Id": f"S{n}",
            "Name": f"Same {n}",
            "Currency": "EUR",
            "_modified": same,
        }
    adapter = FakeAdapter(crm)
    adapter.capabilities = adapter.capabilities.__class__(
        name="fake", max_write_batch=3, max_read_page=2
    )
    sync(config, store, adapter)
    assert store.count_accounts("fake") == 5
    watermark = store.get_watermark("fake", "account")
    crm.records["Account"]["S9"] = {
        "Id": "S9",
        "Name": "At watermark",
        "Currency": "EUR",
        "_modified": watermark,
    }
    sync(config, store, adapter)
    assert store.get_account("fake", "S9") is not None


def test_task_refused_for_an_inactive_owner_goes_to_the_fallback(env, monkeypatch) -> None:
    config, store = env
    crm = FakeCrm()
    seed(crm)
    adapter = FakeAdapter(crm)
    adapter.inactive_users = {"U1"}  # owner of A001, the 95-days-overdue account
    report = sync(config, store, adapter)
    late = [t for t in crm.tasks.values() if t["WhatId"] == "A001"]
    assert late, "the follow-up is not lost"
    assert all(t["OwnerId"] is None for t in late), "the CRM's default owner gets it"
    assert report.tasks["failed"] == 0


def test_point12_a_refused_task_owner_is_logged_once_saying_where_the_tasks_went(
    env, monkeypatch, caplog
) -> None:
    """Issue 21 point 12: one line per refused owner and run, naming who got the tasks."""
    import logging

    config, store = env
    crm = FakeCrm()
    seed(crm)
    adapter = FakeAdapter(crm)
    adapter.inactive_users = {"U1"}
    caplog.set_level(logging.WARNING)

    sync(config, store, adapter)

    messages = [record.getMessage() for record in caplog.records]
    refused = [m for m in messages if "refused task owner U1" in m]
    assert len(refused) == 1, messages
    assert "assigned to the CRM's default owner (no [tasks] fallback_owner_id is set)" in refused[0]
    assert "task owner refused; assigned to the fallback owner" not in messages
