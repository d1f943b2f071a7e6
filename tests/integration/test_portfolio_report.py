"""The portfolio report's figures on both sandboxes, checked against the store read with plain SQL."""

from __future__ import annotations

import io
import json
import sqlite3
from collections import Counter, defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from connector.cli.demo import run_demo
from connector.cli.main import main
from connector.scoring.policy import BANDS
from tests.integration.conftest import Org, write_org_config
from tests.report_scenarios import EVERYONE_LATE, SECTOR_AND_COUNTRY

LATER = "2026-12-16"
REPORT_DATE = "2027-01-15"
SCENARIOS = SECTOR_AND_COUNTRY + EVERYONE_LATE


def store_rows(path: Path) -> list[dict[str, Any]]:
    """Every live scored account as the store holds it, read without the connector's code."""
    with sqlite3.connect(path) as db:
        db.row_factory = sqlite3.Row
        rows = db.execute(
            "SELECT a.account_id, a.band, a.data AS assessment, c.data AS account FROM "
            "assessments a JOIN accounts c ON c.connection = a.connection AND c.crm_id = "
            "a.account_id WHERE c.deleted = 0"
        ).fetchall()
    out = []
    for row in rows:
        assessment = json.loads(row["assessment"])
        account = json.loads(row["account"])
        out.append(
            {
                "id": row["account_id"],
                "band": row["band"],
                "exposure": Decimal(assessment["features"]["exposure"] or "0"),
                "overdue": Decimal(assessment["features"]["overdue_amount"] or "0"),
                "owner": account.get("owner_id"),
                "industry": account.get("industry") or "(unknown)",
                "country": account.get("country") or "(unknown)",
            }
        )
    return out


def open_tasks(path: Path) -> Counter[tuple[str | None, str]]:
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT owner_id, rule FROM task_ledger WHERE state = 'open'").fetchall()
    return Counter((owner, rule) for owner, rule in rows)


def hhi(amounts: dict[str, Decimal]) -> float:
    total = sum(v for v in amounts.values() if v > 0)
    return float(sum((100 * v / total) ** 2 for v in amounts.values() if v > 0))


def grouped(rows: list[dict[str, Any]], key: str) -> dict[str, Decimal]:
    out: dict[str, Decimal] = defaultdict(Decimal)
    for row in rows:
        if row["exposure"] > 0:
            out[row[key]] += row["exposure"]
    return out


def report_json(
    config: Path, capsys: pytest.CaptureFixture[str], html: Path, *extra: str
) -> dict[str, Any]:
    capsys.readouterr()
    code = main(["report", "-c", str(config), "--json", "--html", str(html), *extra])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    figures: dict[str, Any] = json.loads(captured.out)
    return figures


def check_book_against_store(
    figures: dict[str, Any], rows: list[dict[str, Any]], tasks: Counter
) -> None:
    """Totals by band, HHI by three dimensions and owner figures equal the store's own numbers."""
    assert figures["accounts"] == len(rows) > 0
    by_band = {entry["band"]: entry for entry in figures["book"]["by_band"]}
    for band in BANDS:
        members = [row for row in rows if row["band"] == band]
        assert by_band[band]["accounts"] == len(members)
        assert Decimal(by_band[band]["exposure"]) == sum(
            (r["exposure"] for r in members), Decimal(0)
        )
    conc = figures["concentration"]
    assert conc["customer"]["hhi"] == pytest.approx(
        hhi({r["id"]: r["exposure"] for r in rows}), abs=0.06
    )
    assert conc["industry"]["hhi"] == pytest.approx(hhi(grouped(rows, "industry")), abs=0.06)
    assert conc["country"]["hhi"] == pytest.approx(hhi(grouped(rows, "country")), abs=0.06)
    total = sum((r["exposure"] for r in rows if r["exposure"] > 0), Decimal(0))
    top = sorted((r["exposure"] for r in rows if r["exposure"] > 0), reverse=True)[:10]
    assert conc["customer"]["top10_share"] == pytest.approx(float(sum(top) / total), abs=1e-4)
    owners = {o["owner_id"]: o for o in figures["owners"]["owners"]}
    for owner in {row["owner"] for row in rows}:
        mine = [row for row in rows if row["owner"] == owner]
        entry = owners[owner]
        assert entry["accounts"] == len(mine)
        assert Decimal(entry["exposure"]) == sum((r["exposure"] for r in mine), Decimal(0))
        assert Decimal(entry["overdue"]) == sum((r["overdue"] for r in mine), Decimal(0))
        for band in BANDS:
            expected = sum((r["exposure"] for r in mine if r["band"] == band), Decimal(0))
            assert Decimal(entry["by_band"][band]) == expected
    for (owner, rule), count in tasks.items():
        assert owners[owner]["open"][rule] == count
    assert sum(o["open_total"] for o in owners.values()) == sum(tasks.values()) > 0


@pytest.mark.parametrize("crm", ["salesforce", "zoho"])
def test_report_of_the_demo_state_matches_the_store(
    crm: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    run_demo(Console(file=io.StringIO(), width=120), crm=crm, keep=str(tmp_path))
    home = tmp_path / crm
    store = home / "crm-risk-state.db"
    figures = report_json(home / "crm-risk.toml", capsys, tmp_path / "report.html")
    rows = store_rows(store)
    check_book_against_store(figures, rows, open_tasks(store))
    # The demo's two syncs score the same day: every account stays where it was.
    since = figures["movement"]["since_previous"]
    bands = Counter(row["band"] for row in rows)
    for i, band in enumerate(BANDS):
        assert since["counts"][i][i] == bands[band]
    assert since["upgrades"] == since["downgrades"] == since["moved_two_plus"] == 0
    assert figures["home_currency"] == "EUR"
    html = (tmp_path / "report.html").read_text()
    assert (
        html.count("<svg") >= 12
        and "<script" not in html
        and "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    )


@pytest.fixture(params=["salesforce", "zoho"])
def org_with_scenarios(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from connector.registry import sandbox_starter

    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    with sandbox_starter(request.param)(accounts=60, seed=7) as sandbox:
        folder = tmp_path / "admin"
        config = write_org_config(sandbox, folder, SCENARIOS)
        monkeypatch.chdir(folder)
        yield Org(request.param, sandbox, folder, config)


def test_movement_scenarios_and_limits_match_the_store(
    org_with_scenarios: Org, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    org = org_with_scenarios
    org.sync(capsys)
    first = {row["id"]: row["band"] for row in store_rows(org.store)}
    capsys.readouterr()
    assert main(["sync", "-c", str(org.config), "--json", "--as-of", LATER]) in (0, 1)
    rows = store_rows(org.store)
    second = {row["id"]: row["band"] for row in rows}
    figures = report_json(org.config, capsys, tmp_path / "r.html", "--as-of", REPORT_DATE)
    check_book_against_store(figures, rows, open_tasks(org.store))

    # Migration since the previous run, counted here from the two runs' bands.
    since = figures["movement"]["since_previous"]
    expected = Counter((first[a], second[a]) for a in second if a in first)
    for i, old in enumerate(BANDS):
        for j, new in enumerate(BANDS):
            assert since["counts"][i][j] == expected[(old, new)], (old, new)
    steps = {a: BANDS.index(second[a]) - BANDS.index(first[a]) for a in second if a in first}
    assert since["downgrades"] == sum(1 for s in steps.values() if s > 0) > 0
    assert since["moved_two_plus"] == sum(1 for s in steps.values() if abs(s) >= 2)
    assert {m["account_id"] for m in since["movers"]} == {
        a for a, s in steps.items() if abs(s) >= 2
    }
    assert [point["as_of"] for point in figures["movement"]["trend"]] == ["2026-11-01", LATER]

    scenarios = {s["id"]: s for s in figures["stress"]["scenarios"]}
    germany = [r for r in rows if r["country"] == "DE"]
    assert scenarios["germany_defaults"]["accounts"] == len(germany) > 0
    exposure_de = sum((r["exposure"] for r in germany), Decimal(0))
    assert Decimal(scenarios["germany_defaults"]["exposure"]) == exposure_de
    assert Decimal(scenarios["germany_defaults"]["loss"]) == pytest.approx(
        exposure_de * Decimal("0.4"), abs=Decimal("0.05")
    )
    # A defaulted customer is band E with no limit (the insolvency hard rule).
    assert Decimal(scenarios["germany_defaults"]["exposure_by_band_after"]["E"]) == exposure_de
    assert scenarios["germany_defaults"]["limits_after"] == "0.00"
    electronics = [r for r in rows if r["industry"] == "Electronics"]
    down = scenarios["electronics_down"]
    assert down["accounts"] == len(electronics) > 0
    assert down["accounts_worse"] == sum(1 for r in electronics if r["band"] != "E")
    assert Decimal(down["limits_after"]) <= Decimal(down["limits_before"])
    late = scenarios["everyone_60_days_late"]
    assert late["accounts"] == len(rows)
    assert Decimal(late["high_risk_after"]) >= Decimal(late["high_risk_before"])

    held = figures["limits"]["held"]
    assert held["count"] == sum(
        count for (_, rule), count in open_tasks(org.store).items() if rule == "limit_approval"
    )
