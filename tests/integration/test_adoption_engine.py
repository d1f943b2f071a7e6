"""Adoption in the engine on the fake CRM: one scan when the ledger is empty, a look-up for every key never seen."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.fakes import FakeAdapter, FakeCrm
from tests.integration.test_engine import env, seed, sync  # noqa: F401 (fixture)


def test_a_new_store_scans_once_then_creates_without_looking_up(env) -> None:  # noqa: F811
    config, store = env
    crm = FakeCrm()
    seed(crm)
    adapter = FakeAdapter(crm)
    report = sync(config, store, adapter)
    assert report.tasks["create"] > 0
    assert adapter.calls["scan tasks"] == 1
    # The scan proved every key absent, so no create needed a look-up first.
    assert all(flags == [True] for flags in adapter.first_attempts.values())


def test_a_store_with_a_ledger_looks_up_every_key_it_never_saw(env) -> None:  # noqa: F811
    config, store = env
    crm = FakeCrm()
    seed(crm)
    adapter = FakeAdapter(crm)
    sync(config, store, adapter)
    adapter.first_attempts.clear()
    crm.put(
        "Invoice",
        "A003-LATE",
        Number="INV-3-LATE",
        AccountId="A003",
        IssueDate="2026-06-01",
        DueDate="2026-07-01",
        Amount=7000,
        OpenAmount=7000,
        Status="Open",
        Currency="EUR",
    )
    report = sync(config, store, adapter)
    assert adapter.calls["scan tasks"] == 1, "no second scan: the ledger is not empty"
    assert report.tasks["create"] > 0
    assert adapter.first_attempts and all(
        flags == [False] for flags in adapter.first_attempts.values()
    )


def test_a_second_store_on_the_same_crm_adopts_instead_of_duplicating(env, tmp_path) -> None:  # noqa: F811
    from connector.store import open_store

    config, store = env
    crm = FakeCrm()
    seed(crm)
    adapter = FakeAdapter(crm)
    first = sync(config, store, adapter)
    other = open_store(str(tmp_path / "other.db"))
    # Each store runs in a later second than the one before: the reviewed-at stamp that tells
    # them apart reads back from the CRM cut to the second (in one second they would look alike).
    try:
        second = sync(config, other, adapter, now=lambda: datetime.now(UTC) + timedelta(seconds=2))
    finally:
        other.close()
    assert second.adopted_tasks == first.tasks["create"]
    assert second.writes["account"]["conflicts"] == 0
    # The first store sees the other store's stamp and adopts its values: no conflicts there.
    third = sync(config, store, adapter, now=lambda: datetime.now(UTC) + timedelta(seconds=4))
    assert third.writes["account"]["conflicts"] == 0
    assert third.tasks["create"] == 0
    # One open task per (account, rule), whichever store raised it.
    causes = [tuple(t["Description"].splitlines()[-1].split(":")[2:4]) for t in crm.open_tasks()]
    assert len(causes) == len(set(causes))
