"""A NUL character ("\\x00") in a CRM string, which JSON allows ("\\u0000") but a PostgreSQL text
column cannot hold, quarantines that one record as INVALID_TEXT naming the field and position, as
a lone surrogate does; the run goes on, on the SQLite and the PostgreSQL store alike."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from connector.store import open_store
from tests.badinput.conftest import Env, assert_bad_text_held, valid_invoice, with_bad_text
from tests.fakes import FakeAdapter


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, env: Env) -> Iterator[str]:
    if request.param == "sqlite":
        yield str(env.tmp_path / "nul.db")
    else:
        yield request.getfixturevalue("pg_url")


def test_a_nul_character_quarantines_one_record_and_the_run_goes_on(
    env: Env, store_url: str
) -> None:
    crm, expected = with_bad_text(env, "Nul\x00 name", "INV-\x00", "\x00")
    store = open_store(store_url)
    try:
        report = env.sync(FakeAdapter(crm), store=store)

        found = assert_bad_text_held(report, crm, expected)
        reason = found["A002"]["reason"]
        assert reason.startswith("record A002: name (Name): text holds a NUL character"), reason
        assert "\\u0000 at character 4" in reason and "correct the value in the CRM" in reason
        assert "\\u0000 at character 5" in found["A003-X"]["reason"]
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
