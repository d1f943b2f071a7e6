"""`crm-risk store migrate`: SQLite to PostgreSQL and back with identical rows, counts and checksums; refusals."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from connector.cli.main import main
from connector.errors import EXIT_CONFIG, StoreError
from connector.models import Account, Invoice
from connector.store import open_store
from connector.store import transfer as transfer_module
from connector.store.base import TaskLedgerEntry
from connector.store.transfer import LEFT_BEHIND, TransferRefused, copy_store, digest_store

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def sqlite_rows(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every copied table's rows, sorted, read with sqlite3 itself (not with the code under test)."""
    with sqlite3.connect(path) as db:
        tables = [
            name
            for (name,) in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
            if name not in LEFT_BEHIND
        ]
        return {
            table: sorted(
                db.execute(f'SELECT * FROM "{table}"').fetchall(),
                key=repr,
            )
            for table in tables
        }


def run_migrate(
    capsys: pytest.CaptureFixture[str], source: str, target: str, *extra: str
) -> tuple[int, dict[str, Any], str]:
    code = main(
        [
            "--log-format",
            "json",
            "store",
            "migrate",
            "--from",
            source,
            "--to",
            target,
            "--json",
            *extra,
        ]
    )
    captured = capsys.readouterr()
    payload = json.loads(captured.out) if code == 0 else {}
    return code, payload, captured.err


def demo_states(tmp_path: Path) -> list[Path]:
    assert main(["demo", "--keep", str(tmp_path / "demo")]) == 0
    states = sorted((tmp_path / "demo").glob("*/crm-risk-state.db"))
    assert states, "the demo kept no state file"
    return states


def test_the_demo_state_round_trips_through_postgresql_with_identical_checksums(
    tmp_path: Path, pg_cluster: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.pg_cluster import unique_name

    for state in demo_states(tmp_path):
        capsys.readouterr()
        pg = pg_cluster.create_database(unique_name())
        back = tmp_path / f"back-{state.parent.name}.db"
        code, there, err = run_migrate(capsys, str(state), pg)
        assert code == 0, err
        assert there["verified"]
        code, home, err = run_migrate(capsys, pg, f"sqlite:///{back}")
        assert code == 0, err
        assert [t["checksum"] for t in there["tables"]] == [t["checksum"] for t in home["tables"]]
        rows = {t["table"]: t["rows"] for t in there["tables"]}
        assert rows["accounts"] > 0 and rows["audit"] > 0 and rows["task_ledger"] > 0
        assert rows["runs"] == 2 and rows["watermarks"] == 2
        # Read with sqlite3 itself: the round trip changed no row of any table.
        assert sqlite_rows(back) == sqlite_rows(state)


def test_the_migrated_postgresql_store_carries_on_where_sqlite_stopped(
    tmp_path: Path, pg_url: str
) -> None:
    sqlite_path = tmp_path / "state.db"
    source = open_store(str(sqlite_path), clock=lambda: T0)
    fill(source, accounts=5)
    source.close()
    source, target = open_store(str(sqlite_path)), open_store(pg_url, clock=lambda: T0)
    try:
        copy_store(source, target)
        assert target.get_watermark("acme", "account") == T0
        assert target.recent_runs("acme")[0]["status"] == "succeeded"
        assert target.intent("acme", "A00000") == {"risk_score": 10}
        # New audit lines get ids after the copied ones (the sequence moved on).
        before = len(target.audit("acme"))
        target.append_audit("r2", "acme", obj="account", record_id="A00001", action="update")
        ids = [line["id"] for line in target.audit("acme")]
        assert len(ids) == before + 1 == len(set(ids))
    finally:
        source.close()
        target.close()


def test_a_non_empty_target_is_refused_without_force_and_replaced_with_it(
    tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = tmp_path / "first.db", tmp_path / "second.db"
    for path, accounts in ((first, 3), (second, 7)):
        store = open_store(str(path), clock=lambda: T0)
        fill(store, accounts=accounts)
        store.close()
    assert run_migrate(capsys, str(first), pg_url)[0] == 0
    code, _, err = run_migrate(capsys, str(second), pg_url)
    assert code == EXIT_CONFIG
    assert "not empty" in err and "--force" in err
    target = open_store(pg_url)
    try:
        assert target.count_accounts("acme") == 3
    finally:
        target.close()
    code, report, err = run_migrate(capsys, str(second), pg_url, "--force")
    assert code == 0, err
    assert report["replaced_existing_data"]
    source, target = open_store(str(second)), open_store(pg_url)
    try:
        assert digest_store(target) == digest_store(source)
    finally:
        source.close()
        target.close()


def test_a_run_in_progress_on_the_source_is_refused(tmp_path: Path) -> None:
    source = open_store(str(tmp_path / "busy.db"))
    target = open_store(str(tmp_path / "target.db"))
    try:
        source.acquire_lease("acme", "host:1:abc", 300)
        with pytest.raises(TransferRefused, match="run is in progress"):
            copy_store(source, target)
        assert target.count_accounts("acme") == 0
    finally:
        source.close()
        target.close()


def test_a_copy_that_does_not_verify_leaves_the_target_as_it_was(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = open_store(str(tmp_path / "state.db"), clock=lambda: T0)
    fill(source, accounts=3)
    target = open_store(pg_url)
    real = transfer_module.digest_store

    def corrupted(store: Any) -> Any:
        digests = real(store)
        return [
            digest if digest.table != "invoices" else digest.__class__("invoices", 0, "0")
            for digest in digests
        ]

    monkeypatch.setattr(transfer_module, "digest_store", corrupted)
    try:
        with pytest.raises(StoreError, match="does not match the source in invoices"):
            copy_store(source, target)
        monkeypatch.undo()
        assert all(digest.rows == 0 for digest in digest_store(target))
    finally:
        source.close()
        target.close()


def test_passwords_in_store_urls_never_reach_the_output(
    tmp_path: Path, pg_cluster: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    source = open_store(str(tmp_path / "state.db"))
    source.close()
    url = f"postgresql://postgres:hunter2@/nowhere?host={tmp_path}"
    code = main(["store", "migrate", "--from", str(tmp_path / "state.db"), "--to", url])
    captured = capsys.readouterr()
    assert code == 75
    assert "hunter2" not in captured.out + captured.err


@pytest.mark.slow
def test_a_ten_thousand_account_state_round_trips_with_identical_checksums(
    tmp_path: Path, pg_url: str
) -> None:
    original = tmp_path / "big.db"
    store = open_store(str(original), clock=lambda: T0)
    fill(store, accounts=10_000)
    store.close()
    source, pg = open_store(str(original)), open_store(pg_url)
    try:
        there = copy_store(source, pg)
    finally:
        source.close()
    back = open_store(str(tmp_path / "back.db"))
    try:
        home = copy_store(pg, back)
    finally:
        pg.close()
        back.close()
    assert there.verified and home.verified
    assert there.source == home.target
    counts = {digest.table: digest.rows for digest in there.source}
    assert counts["accounts"] == 10_000 and counts["invoices"] == 30_000
    assert sqlite_rows(tmp_path / "back.db") == sqlite_rows(original)


# -- a state with something in every table ------------------------------------------------------


def fill(store: Any, *, accounts: int) -> None:
    """Accounts, invoices, assessments, ledger, audit, intents, history: one transaction."""
    from connector.scoring import assess, build_portfolio_context
    from connector.scoring.policy import ScoringPolicy

    policy = ScoringPolicy()
    with store.transaction():
        store.start_run("r1", "acme", "schedule", worker="host:1:abc")
        for number in range(accounts):
            account_id = f"A{number:05d}"
            account = Account(
                crm_id=account_id,
                name=f"Account {number} – Müller & Söhne",
                currency="EUR",
                modified_at=T0,
                current_credit_limit=Decimal(10_000 + number),
            )
            store.upsert_account("acme", account, {"risk_score": number % 100})
            invoices = []
            for index in range(3):
                invoice = Invoice(
                    crm_id=f"I{number:05d}-{index}",
                    account_id=account_id,
                    issue_date=date(2026, 8, 1) + timedelta(days=index),
                    due_date=date(2026, 9, 1) + timedelta(days=index),
                    currency="EUR",
                    amount=Decimal("1000.10") + index,
                    open_amount=Decimal("250.05") * index,
                    modified_at=T0,
                )
                store.upsert_invoice("acme", invoice)
                invoices.append(invoice)
            if number % 10 == 0:
                context = build_portfolio_context([(account, Decimal(500))], policy)
                assessment = assess(account, invoices, context, policy, date(2026, 11, 1))
                store.save_assessment("acme", assessment, "fp1", Decimal("500.15"))
                store.record_written("acme", account_id, {"risk_score": assessment.score}, "r1")
                store.save_ledger(
                    "acme",
                    TaskLedgerEntry(
                        account_id=account_id,
                        rule="overdue",
                        episode=1,
                        state="open",
                        dedupe_key=f"acme:{account_id}:overdue:1",
                        crm_task_id=f"T{number}",
                        level=0,
                        priority="High",
                        owner_id="U1",
                        meta={"amount": "250.05"},
                        opened_at=T0,
                        closed_at=None,
                    ),
                )
                store.append_audit(
                    "r1",
                    "acme",
                    obj="account",
                    record_id=account_id,
                    action="update",
                    field="risk_score",
                    old=None,
                    new=assessment.score,
                    cause="changed",
                )
        store.record_intents("acme", {"A00000": {"risk_score": 10}})
        store.record_failed_write("acme", "account", "A00001", ["risk_score"], "LOCKED", "busy")
        store.set_watermark("acme", "account", T0)
        store.set_watermark("acme", "invoice", T0)
        store.finish_run("r1", "succeeded", {"run_id": "r1", "status": "succeeded"})
