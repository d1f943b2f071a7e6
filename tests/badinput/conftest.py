"""Fixtures for bad-input tests: a real SQLite state file, the fake CRM and a reference run to compare with."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from connector.config import AppConfig, load_config
from connector.engine.report import RunReport
from connector.engine.sync import SyncOptions, classify_exit, run_sync
from connector.mapping import load_mapping
from connector.store import SqliteStore, open_store
from tests.fakes import FakeAdapter, FakeCrm

AS_OF = date(2026, 11, 1)
MAPPING = Path(__file__).resolve().parents[1] / "fixtures" / "mappings" / "fake.toml"
# What the connector writes, minus the review timestamp (it differs between any two runs).
OWNED_FIELDS = (
    "RiskScore",
    "RiskBand",
    "RiskLevel",
    "RiskReasons",
    "RecommendedLimit",
    "CreditLimit",
)


def valid_invoice(account_id: str, k: int, **overrides: Any) -> dict[str, Any]:
    """A paid, well-formed invoice; overrides turn it into a bad one."""
    month = 3 + k % 6
    values: dict[str, Any] = {
        "Number": f"INV-{account_id}-{k}",
        "AccountId": account_id,
        "IssueDate": f"2026-{month:02d}-01",
        "DueDate": f"2026-{month + 1:02d}-01",
        "Amount": 1000,
        "OpenAmount": 0,
        "PaidDate": f"2026-{month + 1:02d}-03",
        "Status": "Paid",
        "Currency": "EUR",
    }
    values.update(overrides)
    return values


def seed(crm: FakeCrm, accounts: int = 5) -> None:
    """Accounts with six paid invoices each and one overdue invoice on A001 (it opens a task)."""
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
            crm.put("Invoice", f"{account_id}-I{k}", **valid_invoice(account_id, k))
    crm.put(
        "Invoice",
        "A001-LATE",
        **valid_invoice(
            "A001",
            9,
            IssueDate="2026-06-29",
            DueDate="2026-07-29",
            Amount=9000,
            OpenAmount=9000,
            PaidDate=None,
            Status="Open",
        ),
    )


def crm_state(crm: FakeCrm) -> tuple[dict[str, dict[str, Any]], list[tuple[Any, ...]]]:
    """What a person sees in the CRM: our fields on every account and every task."""
    accounts = {
        rid: {name: rec.get(name) for name in OWNED_FIELDS}
        for rid, rec in sorted(crm.records["Account"].items())
    }
    tasks = sorted(
        (t["WhatId"], t["Subject"], t["Status"], t["Priority"]) for t in crm.tasks.values()
    )
    return accounts, tasks


class Env:
    """A config with one `fake` connection and a helper to run a sync on a store."""

    def __init__(self, config: AppConfig, store: SqliteStore, tmp_path: Path) -> None:
        self.config = config
        self.store = store
        self.tmp_path = tmp_path

    def sync(
        self, adapter: FakeAdapter, store: SqliteStore | None = None, **options: Any
    ) -> RunReport:
        connection = self.config.connection("fake")
        return run_sync(
            config=self.config,
            connection=connection,
            adapter=adapter,
            store=store or self.store,
            mapping=load_mapping(connection.mapping),
            options=SyncOptions(as_of=AS_OF, **options),
        )

    def reference(self, crm: FakeCrm) -> tuple[dict[str, dict[str, Any]], list[tuple[Any, ...]]]:
        """The CRM state a clean run produces on `crm` (run on a separate state file)."""
        store = open_store(str(self.tmp_path / "reference.db"))
        try:
            self.sync(FakeAdapter(crm), store=store)
        finally:
            store.close()
        return crm_state(crm)


def with_bad_text(
    env: Env, name: str, number: str, written: str
) -> tuple[FakeCrm, dict[str, dict[str, Any]]]:
    """The seeded CRM with bad text in three places, and what a clean run writes on each account.

    The bad text goes into account A002's name, invoice A003-X's number, and account A004's risk
    reasons: a field the connector writes, so it is overwritten there, not fatal.
    """
    reference = FakeCrm()
    seed(reference)
    expected, _ = env.reference(reference)
    crm = FakeCrm()
    seed(crm)
    crm.put("Account", "A002", Name=name)
    crm.put("Invoice", "A003-X", **valid_invoice("A003", 41, Number=number))
    crm.put("Account", "A004", RiskReasons=written)
    return crm, expected


def assert_bad_text_held(
    report: RunReport, crm: FakeCrm, expected: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """The run of `with_bad_text`'s CRM: A002 and A003-X quarantined as INVALID_TEXT and their
    accounts held; every other account scored and written as in a clean run (A004 mended).

    Returns:
        The quarantine entries by record id, for the checks of each kind of bad text.
    """
    assert report.status == "succeeded_with_rejections" and classify_exit(report) == 1
    found = {q["record_id"]: q for q in report.quarantined}
    assert set(found) == {"A002", "A003-X"}
    assert {q["rule"] for q in found.values()} == {"INVALID_TEXT"}
    accounts, _ = crm_state(crm)
    for account_id in ("A000", "A001", "A004"):
        assert accounts[account_id] == expected[account_id], account_id
    assert {item["account_id"] for item in report.held} == {"A002", "A003"}
    return found


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    monkeypatch.setenv("CRMRISK_CONNECTIONS__FAKE__CLIENT_SECRET", "fake-secret")
    monkeypatch.setenv("CRMRISK_CONNECTIONS__FAKE__REFRESH_TOKEN", "fake-refresh")
    config_path = tmp_path / "crm-risk.toml"
    config_path.write_text(
        textwrap.dedent(
            f"""
            [store]
            url = "{tmp_path / "state.db"}"
            [connections.fake]
            kind = "fake"
            mapping = "{MAPPING}"
            overlap_seconds = 60
            """
        )
    )
    config = load_config(config_path)
    store = open_store(config.store.url)
    yield Env(config, store, tmp_path)
    store.close()
