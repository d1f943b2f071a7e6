"""Portfolio snapshots in the store, on SQLite and PostgreSQL: totals kept, account rows pruned."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from connector.store import open_store

AS_OF = date(2026, 11, 1)
NOW = datetime(2026, 11, 1, 18, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path):
    url = (
        str(tmp_path / "state.db")
        if request.param == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    opened = open_store(url, clock=lambda: NOW)
    yield opened
    opened.close()


def test_snapshots_keep_totals_and_prune_account_rows_to_recent_runs_and_month_starts(
    store,
) -> None:
    day = date(2025, 10, 15)
    runs = []
    while day <= AS_OF:
        run_id = f"run-{day.isoformat()}"
        runs.append((run_id, day))
        store.save_snapshot(
            "c",
            run_id,
            day,
            {"count_by_band": {"A": 1}},
            [("a1", "A", 10.0, Decimal("5.50"))],
            home_currency="EUR",
        )
        day += timedelta(days=10)
    kept = store.snapshots("c")
    # totals older than 400 days are gone; none here is
    assert [s["run_id"] for s in kept] == [run_id for run_id, _ in runs]
    detailed = [s for s in kept if s["detail"]]
    months = {s["as_of"][:7] for s in kept}
    assert len(detailed) == len(months) + 2  # first run of each month + the newest runs
    assert all(s["detail"] for s in kept[-3:])
    assert store.snapshot_accounts("c", kept[-1]["run_id"]) == {"a1": ("A", 10.0, "5.50")}
    pruned = next(s for s in kept if not s["detail"])
    assert store.snapshot_accounts("c", pruned["run_id"]) == {}
    assert [s["run_id"] for s in store.snapshots("c", until=date(2025, 10, 30))] == [
        runs[0][0],
        runs[1][0],
    ]
    # 400 days after a run, its totals fall out too.
    store.save_snapshot("c", "late", date(2026, 10, 20) + timedelta(days=400), {}, [])
    assert {s["as_of"] for s in store.snapshots("c")} == {"2026-10-20", "2026-10-30", "2027-11-24"}
