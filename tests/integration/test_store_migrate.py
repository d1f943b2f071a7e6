"""`crm-risk store migrate`: SQLite to PostgreSQL and back with identical rows, counts and checksums; refusals."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from connector.cli.main import main
from connector.errors import EXIT_CONFIG, LockHeldError, StoreError
from connector.models import Account, Invoice
from connector.store import open_store
from connector.store import transfer as transfer_module
from connector.store.tasks import TaskLedgerEntry
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
    filled(str(sqlite_path), accounts=5)
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
        filled(str(path), accounts=accounts)
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


def test_the_same_sqlite_file_under_other_spellings_is_refused_and_left_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "state"
    folder.mkdir()
    path = folder / "state.db"
    filled(str(path), accounts=4)
    before = sqlite_rows(path)
    (tmp_path / "link.db").symlink_to(path)
    (tmp_path / "alias").symlink_to(folder)
    monkeypatch.chdir(tmp_path)
    spellings = [
        f"sqlite:///{path}",
        "state/state.db",
        "./state/../state/state.db",
        str(tmp_path / "link.db"),
        "sqlite:///alias/state.db",
    ]
    for spelling in spellings:
        code, _, err = run_migrate(capsys, str(path), spelling, "--force")
        assert code == EXIT_CONFIG, (spelling, err)
        assert "same store" in err, spelling
    assert sqlite_rows(path) == before, "nothing of the source was touched"


def test_one_database_reached_by_two_urls_is_found_by_content_and_left_alone(
    tmp_path: Path, pg_url: str
) -> None:
    # copy_store sees two open handles, not their URLs: the check is by content. Here two
    # spellings of one SQLite file, and of one PostgreSQL database.
    path = tmp_path / "state.db"
    filled(str(path), accounts=3)
    filled(pg_url, accounts=3)
    other_spelling = pg_url + ("&" if "?" in pg_url else "?") + "application_name=migrate"
    for first, second in (
        (str(path), f"sqlite:///{tmp_path}/./state.db"),
        (pg_url, other_spelling),
    ):
        source, target = open_store(first), open_store(second)
        try:
            before = digest_store(source)
            with pytest.raises(TransferRefused, match="same store"):
                copy_store(source, target, force=True)
            assert digest_store(source) == before, "the source is as it was (probe gone too)"
            assert source.count_accounts("acme") == 3
        finally:
            source.close()
            target.close()


def _while_copying(
    monkeypatch: pytest.MonkeyPatch, action: Callable[[], None], *, at_table: str | None = None
) -> list[bool]:
    """Run `action` once, as the copy starts reading `at_table` (default: its first table)."""
    real = transfer_module._batches
    done: list[bool] = []

    def batches(store: Any, table: str, digest: Any) -> Any:
        if not done and at_table in (None, table):
            done.append(True)
            action()
        return real(store, table, digest)

    monkeypatch.setattr(transfer_module, "_batches", batches)
    return done


def test_no_run_can_start_on_the_source_while_it_is_copied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "state.db"
    filled(str(path), accounts=3)
    source = open_store(str(path))
    target = open_store(str(tmp_path / "target.db"))
    attempts: list[str] = []

    def a_scheduled_run_starts() -> None:
        # The `crm-risk run` service (no lease between runs) starts its next run now.
        service = open_store(str(path))
        try:
            service.acquire_lease("acme", "otherhost:4242:1:x", 300)
            attempts.append("started")
        except LockHeldError as exc:
            attempts.append(str(exc))
        finally:
            service.close()

    _while_copying(monkeypatch, a_scheduled_run_starts)
    try:
        report = copy_store(source, target)
        assert report.verified
        assert attempts and "already running" in attempts[0] and "store-migrate" in attempts[0]
        assert source.lease("acme") is None, "the migrate gives the leases back"
    finally:
        source.close()
        target.close()


def test_a_source_written_during_the_copy_is_not_committed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "state.db"
    source = open_store(str(path), clock=lambda: T0)
    fill(source, accounts=3)
    target = open_store(str(tmp_path / "target.db"))

    def a_writer_ignores_the_leases() -> None:
        # A connection the source never ran has no lease to hold: its first run writes into
        # tables already copied.
        other = open_store(str(path))
        try:
            other.set_watermark("newcomer", "account", T0)
            other.append_audit("r9", "newcomer", obj="account", record_id="N1", action="update")
        finally:
            other.close()

    last = transfer_module.copied_tables(source)[-1]
    written = _while_copying(monkeypatch, a_writer_ignores_the_leases, at_table=last)
    try:
        with pytest.raises(StoreError, match="changed while it was copied"):
            copy_store(source, target)
        assert written
        assert all(digest.rows == 0 for digest in digest_store(target))
    finally:
        source.close()
        target.close()


def test_a_live_run_service_on_the_source_is_refused(tmp_path: Path, pg_url: str) -> None:
    from connector.store.coordination import WorkQueue

    source = open_store(pg_url)
    target = open_store(str(tmp_path / "target.db"))
    try:
        WorkQueue(source).beat(
            worker_id="worker-1",
            host="otherhost",
            pid=7,
            started_at=datetime.now(UTC),
            capacity=2,
            running=0,
            ttl_seconds=60,
        )
        with pytest.raises(TransferRefused, match="service is using the source store"):
            copy_store(source, target)
    finally:
        source.close()
        target.close()


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


def filled(url: str, *, accounts: int) -> None:
    """Create the store at `url` holding `fill`'s rows for `accounts` accounts, and close it."""
    store = open_store(url, clock=lambda: T0)
    try:
        fill(store, accounts=accounts)
    finally:
        store.close()


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
