"""A NUL character ("\\x00") in a CRM string, which JSON allows ("\\u0000") but a PostgreSQL text
column cannot hold, quarantines that one record as INVALID_TEXT naming the field and position, as
a lone surrogate does; the run goes on, on the SQLite and the PostgreSQL store alike."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from connector.engine.sync import classify_exit
from connector.store import open_store
from tests.badinput.conftest import Env, crm_state, seed, valid_invoice
from tests.fakes import FakeAdapter, FakeCrm


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, env: Env) -> Iterator[str]:
    if request.param == "sqlite":
        yield str(env.tmp_path / "nul.db")
    else:
        yield request.getfixturevalue("pg_url")


def test_a_nul_character_quarantines_one_record_and_the_run_goes_on(
    env: Env, store_url: str
) -> None:
    reference = FakeCrm()
    seed(reference)
    expected, _ = env.reference(reference)

    crm = FakeCrm()
    seed(crm)
    crm.put("Account", "A002", Name="Nul\x00 name")
    crm.put("Invoice", "A003-X", **valid_invoice("A003", 41, Number="INV-\x00"))
    # A NUL in a field the connector writes is overwritten, not fatal.
    crm.put("Account", "A004", RiskReasons="\x00")
    store = open_store(store_url)
    try:
        report = env.sync(FakeAdapter(crm), store=store)

        assert report.status == "succeeded_with_rejections" and classify_exit(report) == 1
        found = {q["record_id"]: q for q in report.quarantined}
        assert set(found) == {"A002", "A003-X"}
        assert {q["rule"] for q in found.values()} == {"INVALID_TEXT"}
        reason = found["A002"]["reason"]
        assert reason.startswith("record A002: name (Name): text holds a NUL character"), reason
        assert "\\u0000 at character 4" in reason and "correct the value in the CRM" in reason
        assert "\\u0000 at character 5" in found["A003-X"]["reason"]
        accounts, _ = crm_state(crm)
        for account_id in ("A000", "A001", "A004"):
            assert accounts[account_id] == expected[account_id], account_id
        assert {item["account_id"] for item in report.held} == {"A002", "A003"}
        json.dumps(report.to_dict())
        held = {row["record_id"]: row for row in store.quarantined("fake")}
        assert set(held) == {"A002", "A003-X"}
        assert all("\x00" not in json.dumps(row, default=str) for row in held.values())

        # Mended in the CRM: released on the next run.
        crm.put("Account", "A002", Name="Mended name")
        crm.put("Invoice", "A003-X", **valid_invoice("A003", 41))
        again = env.sync(FakeAdapter(crm), store=store)
        assert again.held == [] and store.quarantined("fake") == []
    finally:
        store.close()
