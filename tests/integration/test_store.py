"""The state store on both backends (a real SQLite file, a throw-away PostgreSQL): leases, watermarks, change detection, audit."""

from __future__ import annotations

import sqlite3
import stat
import sys
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from connector.errors import ConfigError, LockHeldError, StoreError
from connector.models import Account, Invoice
from connector.store import open_store

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a fresh store lives: a SQLite file, or an empty PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "state.db")
    return request.getfixturevalue("pg_url")


@pytest.fixture
def store(url: str, clock: Clock):
    opened = open_store(url, clock=clock)
    yield opened
    opened.close()


def account(crm_id: str = "A1", **changes: object) -> Account:
    return Account(crm_id=crm_id, name="Acme", currency="EUR", modified_at=T0, **changes)


def invoice(crm_id: str = "I1", account_id: str = "A1", open_amount: str = "100") -> Invoice:
    return Invoice(
        crm_id=crm_id,
        account_id=account_id,
        issue_date=date(2026, 9, 1),
        due_date=date(2026, 10, 1),
        amount=Decimal("100"),
        open_amount=Decimal(open_amount),
    )


def test_state_file_is_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    open_store(str(path)).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_newer_schema_is_refused(url: str) -> None:
    open_store(url).close()
    if url.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(url) as db:
            db.execute("UPDATE schema_version SET version = 99")
    else:
        with sqlite3.connect(url) as db:
            db.execute("PRAGMA user_version = 99")
    with pytest.raises(StoreError, match="newer"):
        open_store(url)


def test_reopening_keeps_the_data_and_does_not_migrate_again(url: str) -> None:
    first = open_store(url)
    first.set_value("k", "v")
    first.close()
    again = open_store(url)
    try:
        assert again.get_value("k") == "v"
    finally:
        again.close()


def test_postgres_url_without_the_driver_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg now raises ImportError
    with pytest.raises(ConfigError, match=r"crm-risk-connector\[postgres\]"):
        open_store("postgresql://user@127.0.0.1:1/state")


def test_second_holder_is_refused_until_the_lease_expires(store, clock: Clock) -> None:
    store.acquire_lease("c", "first", ttl_seconds=60)
    with pytest.raises(LockHeldError, match="already running"):
        store.acquire_lease("c", "second", ttl_seconds=60)
    clock.now += timedelta(seconds=61)
    store.acquire_lease("c", "second", ttl_seconds=60)
    assert store.lease("c")["holder"] == "second"
    assert not store.heartbeat_lease("c", "first", 60), (
        "the old holder must learn it lost the lease"
    )


def test_lease_is_exclusive_across_connections_of_one_database(url: str, clock: Clock) -> None:
    one = open_store(url, clock=clock)
    two = open_store(url, clock=clock)
    try:
        one.acquire_lease("c", "p1", 60)
        with pytest.raises(LockHeldError):
            two.acquire_lease("c", "p2", 60)
        one.release_lease("c", "p1")
        two.acquire_lease("c", "p2", 60)
    finally:
        one.close()
        two.close()


def test_watermark_never_moves_backwards(store) -> None:
    store.set_watermark("c", "account", T0)
    store.set_watermark("c", "account", T0 - timedelta(hours=1))
    assert store.get_watermark("c", "account") == T0


def test_watermark_in_rolled_back_transaction_is_not_kept(store) -> None:
    def crash_mid_page() -> None:
        with store.transaction():
            store.upsert_account("c", account(), {})
            store.set_watermark("c", "account", T0)
            raise RuntimeError("crash mid page")

    with pytest.raises(RuntimeError):
        crash_mid_page()
    assert store.get_watermark("c", "account") is None
    assert store.get_account("c", "A1") is None


def test_upsert_reports_changes_only_when_inputs_change(store) -> None:
    assert store.upsert_account("c", account(), {"risk_band": None})
    store.clear_scoring_flag("c", ["A1"])
    # A new modification time alone (our own write) is not a change of scoring inputs.
    assert not store.upsert_account(
        "c", account().model_copy(update={"modified_at": T0 + timedelta(1)}), {"risk_band": "B"}
    )
    assert not store.get_account("c", "A1").needs_scoring
    assert store.get_account("c", "A1").crm_values == {"risk_band": "B"}
    assert store.upsert_account("c", account(industry="Retail"), {})
    assert store.get_account("c", "A1").needs_scoring


def test_invoice_change_and_deletion_flag_the_account(store) -> None:
    store.upsert_account("c", account(), {})
    store.clear_scoring_flag("c", ["A1"])
    assert store.upsert_invoice("c", invoice()) == {"A1"}
    assert store.upsert_invoice("c", invoice()) == set(), "an identical invoice is not a change"
    store.clear_scoring_flag("c", ["A1"])
    assert store.mark_invoice_deleted("c", "I1") == {"A1"}
    assert store.get_account("c", "A1").needs_scoring
    assert store.invoices_for("c", "A1") == []


def test_invoice_moved_to_another_account_flags_both(store) -> None:
    store.upsert_invoice("c", invoice(account_id="A1"))
    assert store.upsert_invoice("c", invoice(account_id="A2")) == {"A1", "A2"}


def test_open_exposures_sum_live_open_amounts(store) -> None:
    store.upsert_invoice("c", invoice("I1", open_amount="100"))
    store.upsert_invoice("c", invoice("I2", open_amount="50.5"))
    store.upsert_invoice("c", invoice("I3", open_amount="0"))
    store.mark_invoice_deleted("c", "I2")
    assert store.open_exposures("c") == {"A1": Decimal("100")}


def test_snapshot_is_isolated(store) -> None:
    store.upsert_account("c", account(), {})
    copy = store.snapshot()
    assert copy.get_account("c", "A1") is not None, "the copy starts from the real state"
    copy.upsert_account("c", account("A2"), {})
    copy.set_watermark("c", "account", T0)
    copy.close()
    assert store.get_account("c", "A2") is None
    assert store.get_watermark("c", "account") is None


def test_audit_is_append_only_and_filterable(store, clock: Clock) -> None:
    store.append_audit(
        "r1",
        "c",
        obj="account",
        record_id="A1",
        action="update",
        field="risk_band",
        old="B",
        new="C",
    )
    clock.now += timedelta(days=2)
    store.append_audit(
        "r2",
        "c",
        obj="account",
        record_id="A2",
        action="update",
        field="risk_band",
        old=None,
        new="A",
    )
    assert [row["run_id"] for row in store.audit("c")] == ["r1", "r2"]
    assert [row["record_id"] for row in store.audit("c", record_id="A1")] == ["A1"]
    assert [row["run_id"] for row in store.audit("c", since=T0 + timedelta(days=1))] == ["r2"]
    assert store.audit("c")[0]["old_value"] == "B"


def test_failed_writes_count_attempts_and_flag_account(store) -> None:
    store.upsert_account("c", account(), {})
    store.clear_scoring_flag("c", ["A1"])
    store.record_failed_write("c", "account", "A1", ["risk_band"], "UNABLE_TO_LOCK_ROW", "locked")
    store.record_failed_write("c", "account", "A1", ["risk_band"], "UNABLE_TO_LOCK_ROW", "locked")
    rows = store.failed_writes("c")
    assert len(rows) == 1 and rows[0]["attempts"] == 2
    assert store.get_account("c", "A1").needs_scoring
    store.clear_failed_write("c", "account", "A1")
    assert store.failed_writes("c") == []


def test_kv_values_are_shared_between_connections_to_one_database(url: str) -> None:
    one = open_store(url)
    two = open_store(url)
    try:
        one.set_value("zoho:c:token", "value-1")
        assert two.get_value("zoho:c:token") == "value-1"
    finally:
        one.close()
        two.close()


def test_run_left_running_by_a_dead_holder_is_marked_abandoned(store, clock: Clock) -> None:
    store.acquire_lease("c", "dead", ttl_seconds=60)
    store.start_run("r1", "c", "cli")
    clock.now += timedelta(seconds=61)
    store.acquire_lease("c", "next", ttl_seconds=60)
    assert store.recent_runs("c")[0]["status"] == "abandoned"


def test_failed_transaction_in_a_snapshot_undoes_only_its_own_writes(store) -> None:
    copy = store.snapshot()

    def crash_mid_page() -> None:
        with copy.transaction():
            copy.upsert_account("c", account("A2"), {})
            raise RuntimeError("crash mid page")

    try:
        copy.upsert_account("c", account("A1"), {})
        with pytest.raises(RuntimeError):
            crash_mid_page()
        assert copy.get_account("c", "A2") is None
        assert copy.get_account("c", "A1") is not None
        with copy.transaction():
            copy.set_watermark("c", "account", T0)
        assert copy.get_watermark("c", "account") == T0
    finally:
        copy.close()
    assert store.get_account("c", "A1") is None


def test_lease_statements_from_a_snapshot_do_not_block_the_real_store(store) -> None:
    store.acquire_lease("c", "run", 60)
    copy = store.snapshot()
    try:
        copy.upsert_account("c", account(), {})
        assert store.heartbeat_lease("c", "run", 60)
        store.release_lease("c", "run")
    finally:
        copy.close()


def test_a_quarantined_record_holds_its_account_until_released(store) -> None:
    store.upsert_account("c", account("A1"), {})
    store.upsert_account("c", account("A2"), {})
    store.upsert_invoice("c", invoice("I1", account_id="A1", open_amount="70"))
    store.quarantine("c", "invoice", "I1", "bad", "run-1", account_id="A1", rule="X", value="7")
    store.quarantine("c", "invoice", "I1", "still bad", "run-2", account_id="A1", rule="X")

    assert [a.account.crm_id for a in store.iter_accounts("c", exclude_held=True)] == ["A2"]
    assert store.count_accounts("c", exclude_held=True) == 1
    assert store.open_exposures("c") == {}, "a quarantined invoice's stale copy counts for no one"
    [row] = store.quarantined("c")
    assert (row["reason"], row["run_id"], row["account_id"]) == ("still bad", "run-2", "A1")
    assert row["first_seen"] <= row["last_seen"]
    assert list(store.held_accounts("c")) == ["A1"]

    store.clear_scoring_flag("c", ["A1"])
    store.release_quarantine("c", "invoice", "I1")
    assert store.count_quarantined("c") == 0
    assert store.get_account("c", "A1").needs_scoring, "released accounts are scored again"


def test_refused_field_values_are_kept_per_account_and_field(store) -> None:
    store.block_field("c", "A1", "risk_band", "D", "BAD_VALUE", "no D", "g1")
    store.block_field("c", "A1", "risk_band", "E", "BAD_VALUE", "no E", "g1")
    store.block_field("c", "A2", "risk_band", "D", "BAD_VALUE", "no D", "g1")

    [first, second] = store.field_blocks("c")
    assert (first["account_id"], first["value"], first["attempts"]) == ("A1", "E", 2)
    assert second["account_id"] == "A2"
    assert store.clear_field_blocks("c", account_id="A1") == 1
    assert [row["account_id"] for row in store.field_blocks("c")] == ["A2"]


def test_a_version_1_state_file_is_migrated_in_place(tmp_path: Path) -> None:
    import sqlite3
    from importlib import resources

    path = tmp_path / "v1.db"
    raw = sqlite3.connect(path)
    raw.executescript(resources.files("connector.store").joinpath("schema.sql").read_text())
    raw.execute(
        "INSERT INTO quarantine (connection, object, record_id, reason, run_id, at) "
        "VALUES ('c', 'invoice', 'I1', 'bad', 'r1', '2026-01-01T00:00:00+00:00')"
    )
    raw.execute("PRAGMA user_version = 1")
    raw.commit()
    raw.close()

    store = open_store(str(path))
    try:
        [row] = store.quarantined("c")
        assert row["first_seen"] == "2026-01-01T00:00:00+00:00"
        assert row["account_id"] is None, "a v1 row holds no account until it is read again"
        assert store.field_blocks("c") == []
    finally:
        store.close()
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] >= 2
