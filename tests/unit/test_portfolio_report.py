"""Pure parts of the portfolio report: migration, owners, limits, stress, charts, and the snapshots it reads."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from connector.models import Account, Invoice, InvoiceStatus
from connector.report.figures import (
    BookRow,
    FollowUp,
    Settings,
    Snapshot,
    migration,
    movement_figures,
)
from connector.report.health import health_sample
from connector.report.html import render_html
from connector.report.limits import limit_figures
from connector.report.owners import owner_figures
from connector.report.svg import Chart, RefLine, Series, bar_chart, hbar_chart, nice_ceiling
from connector.scoring import PortfolioContext
from connector.scoring.policy import ScoringPolicy
from connector.scoring.stress import Scenario, stress, stress_all
from connector.store import open_store

AS_OF = date(2026, 11, 1)
NOW = datetime(2026, 11, 1, 18, 0, tzinfo=UTC)
SETTINGS = Settings(customer_cap=0.1, max_listed=2)


def row(
    account_id: str, band: str, exposure: str, owner: str | None = "u1", **kw: object
) -> BookRow:
    values: dict[str, object] = {
        "account_id": account_id,
        "name": f"Customer {account_id}",
        "owner_id": owner,
        "industry": "Retail",
        "country": "DE",
        "band": band,
        "score": 50.0,
        "confidence": 0.9,
        "exposure": Decimal(exposure),
        "overdue": Decimal(0),
        "aging": (Decimal(exposure), Decimal(0), Decimal(0), Decimal(0), Decimal(0)),
        "current_limit": None,
        "recommended_limit": None,
        "as_of": AS_OF,
    }
    values.update(kw)
    return BookRow(**values)  # type: ignore[arg-type]


def test_migration_counts_moves_new_and_exited_accounts_and_lists_the_largest_moves_first() -> None:
    before = {"a": "A", "b": "B", "c": "C", "d": "A", "gone": "D"}
    after = {"a": "A", "b": "D", "c": "A", "d": "E", "fresh": "B"}
    names = {key: key.upper() for key in after}
    figures = migration(before, after, names, max_listed=2)
    counts = {
        (figures["rows"][i], figures["columns"][j]): n
        for i, line in enumerate(figures["counts"])
        for j, n in enumerate(line)
        if n
    }
    assert counts == {
        ("A", "A"): 1,
        ("B", "D"): 1,
        ("C", "A"): 1,
        ("A", "E"): 1,
        ("new", "B"): 1,
        ("D", "exited"): 1,
    }
    assert (figures["upgrades"], figures["downgrades"], figures["unchanged"]) == (1, 2, 1)
    assert figures["moved_two_plus"] == 3
    assert [(m["account_id"], m["bands"]) for m in figures["movers"]] == [("d", 4), ("b", 2)]


def snap(run_id: str, day: date, bands: dict[str, str] | None) -> Snapshot:
    return Snapshot(run_id, day, NOW, {"A": 1}, {"A": Decimal(10)}, bands)


def test_movement_compares_the_last_two_runs_and_the_run_a_year_before() -> None:
    snapshots = [
        snap("r0", date(2025, 9, 1), {"a": "A"}),
        snap("r1", date(2025, 11, 1), {"a": "B"}),
        snap("r2", date(2026, 3, 1), None),
        snap("r3", date(2026, 10, 1), {"a": "C"}),
        snap("r4", AS_OF, {"a": "E"}),
    ]
    figures = movement_figures(snapshots, {"a": "Acme"}, AS_OF, SETTINGS)
    assert figures["since_previous"]["from_run"] == "r3"
    assert figures["over_year"]["from_run"] == "r1"
    assert figures["over_year"]["full_window"] is True
    assert figures["since_previous"]["counts"][2][4] == 1
    # The trend covers the last 12 months only, one point per scoring date.
    assert [p["run_id"] for p in figures["trend"]] == ["r1", "r2", "r3", "r4"]


def test_movement_with_one_run_has_nothing_to_compare() -> None:
    figures = movement_figures([snap("r1", AS_OF, {"a": "A"})], {}, AS_OF, SETTINGS)
    assert figures["since_previous"] is None and figures["over_year"] is None
    assert len(figures["trend"]) == 1


def ago(days: int) -> datetime:
    return NOW - timedelta(days=days)


def episode(
    account_id: str,
    rule: str,
    assignee: str,
    opened: datetime,
    closed: datetime | None,
    due: date,
) -> FollowUp:
    """A follow-up episode of a built-in rule (the rule's id is its kind)."""
    return FollowUp(account_id, rule, rule, assignee, opened, closed, due)


def test_owner_figures_count_follow_ups_for_their_assignee_and_on_time_closes_in_the_window() -> (
    None
):
    rows = [
        row("a1", "A", "100"),
        row("a2", "E", "50", overdue=Decimal(30)),
        row("b1", "C", "70", owner="u2"),
    ]
    opened = ago(10)
    followups = [
        episode("a2", "past_due", "u1", opened, None, opened.date() + timedelta(days=2)),
        episode("a2", "limit_approval", "cm", ago(40), None, AS_OF),
        # closed on its due date: on time; closed late; closed before the window: not counted
        episode("a1", "past_due", "u1", ago(20), ago(18), ago(18).date()),
        episode("a1", "dispute", "u1", ago(30), ago(5), ago(20).date()),
        episode("b1", "past_due", "u2", ago(200), ago(120), AS_OF),
    ]
    figures = owner_figures(rows, followups, NOW, SETTINGS)
    owners = {o["owner_id"]: o for o in figures["owners"]}
    u1 = owners["u1"]
    assert (u1["accounts"], u1["exposure"], u1["overdue"]) == (2, "150.00", "30.00")
    assert u1["by_band"]["E"] == "50.00"
    assert u1["open"] == {"past_due": 1}
    assert (u1["closed_in_window"], u1["closed_on_time"], u1["on_time_share"]) == (2, 1, 0.5)
    assert u1["oldest_open"]["days"] == 10
    assert owners["cm"]["open"] == {"limit_approval": 1} and owners["cm"]["accounts"] == 0
    assert owners["u2"]["closed_in_window"] == 0
    assert figures["rules"] == ["limit_approval", "past_due"]


def test_limit_figures_sort_utilisation_and_age_the_held_approvals() -> None:
    rows = [
        row("a", "A", "95", current_limit=Decimal(100), recommended_limit=Decimal(200)),
        row("b", "B", "10", current_limit=Decimal(100), recommended_limit=Decimal(50)),
        row("c", "C", "120", current_limit=Decimal(100), recommended_limit=Decimal(100)),
        row("d", "D", "5"),
    ]
    held = [
        episode("a", "limit_approval", "cm", ago(45), None, AS_OF),
        episode("b", "limit_approval", "cm", ago(2), None, AS_OF),
    ]
    figures = limit_figures(rows, held, NOW, SETTINGS)
    util = {u["class"]: u["accounts"] for u in figures["utilisation"]}
    assert util == {"0_50": 1, "50_80": 0, "80_90": 0, "90_100": 1, "100_plus": 1, "no_limit": 1}
    assert figures["changes"] == {
        "increase": 1,
        "decrease": 1,
        "unchanged": 1,
        "first_limit": 0,
        "no_basis": 1,
    }
    assert figures["held"]["count"] == 2
    assert {a["class"]: a["count"] for a in figures["held"]["ages"]} == {
        "0_7": 1,
        "8_30": 0,
        "31_90": 1,
        "90_plus": 0,
    }
    assert [h["account_id"] for h in figures["held"]["oldest"]] == ["a", "b"]


# -- stress ---------------------------------------------------------------------------------------


def customer() -> tuple[Account, list[Invoice]]:
    account = Account(
        crm_id="X1",
        name="Bauer GmbH",
        industry="Construction",
        country="DE",
        current_credit_limit=Decimal(50000),
        created_at=datetime(2023, 1, 1, tzinfo=UTC),
    )
    invoices = []
    for i in range(14):
        issue = AS_OF - timedelta(days=30 * (i + 1))
        paid = i > 0
        invoices.append(
            Invoice(
                crm_id=f"I{i}",
                account_id="X1",
                issue_date=issue,
                due_date=issue + timedelta(days=30),
                amount=Decimal(10000),
                open_amount=Decimal(0) if paid else Decimal(10000),
                paid_date=issue + timedelta(days=31) if paid else None,
                status=InvoiceStatus.PAID if paid else InvoiceStatus.OPEN,
            )
        )
    return account, invoices


@pytest.mark.parametrize(
    ("shock", "check"),
    [
        pytest.param(
            {"bands_down": 2},
            lambda o: (
                "ABCDE".index(o.band_after) == min(4, "ABCDE".index(o.band_before) + 2)
                and o.limit_after < o.limit_before
                and o.loss == 0
            ),
            id="sector_two_bands_down",
        ),
        pytest.param(
            {"default_rate": 0.4},
            lambda o: (
                o.band_after == "E"
                and o.limit_after == 0
                and o.loss == Decimal("4000.00")
                and o.hard_rule_after
            ),
            id="customer_defaults_at_40pct",
        ),
        pytest.param(
            {"days_late": 120},
            lambda o: o.band_after >= "D" and o.score_after > o.score_before and o.hard_rule_after,
            id="open_items_120_days_later",
        ),
    ],
)
def test_stress_rescores_with_the_same_code_and_shocked_inputs(shock, check) -> None:
    account, invoices = customer()
    outcome = stress(
        account, invoices, PortfolioContext(), ScoringPolicy(), AS_OF, Scenario(**shock)
    )
    assert outcome.exposure == Decimal("10000.00")
    assert outcome.limit_before is not None and outcome.limit_before > 0
    assert check(outcome), outcome


def test_stressing_several_scenarios_at_once_gives_each_scenarios_own_outcome() -> None:
    account, invoices = customer()
    scenarios = [
        Scenario(bands_down=1),
        Scenario(bands_down=4),
        Scenario(default_rate=0.4),
        Scenario(days_late=90, bands_down=1),
        Scenario(days_late=30, default_rate=1),
    ]
    context, policy = PortfolioContext(), ScoringPolicy()
    together = stress_all(account, invoices, context, policy, AS_OF, scenarios)
    one_by_one = [stress(account, invoices, context, policy, AS_OF, s) for s in scenarios]
    assert together == one_by_one
    assert len({o.band_after for o in together}) > 1


def test_model_health_samples_the_same_accounts_every_run_spread_over_the_book() -> None:
    ids = [f"acc-{n:05d}" for n in range(10_000)]
    sample = health_sample(ids, 1000)
    assert len(sample) == len(set(sample)) == 1000 and set(sample) <= set(ids)
    # The same accounts whatever order the store returns them in, and new accounts never
    # push more than their own share out.
    assert health_sample(list(reversed(ids)), 1000) == sample
    grown = health_sample([*ids, *(f"new-{n}" for n in range(1000))], 1000)
    assert len(set(grown) & set(sample)) > 800
    # Spread over the book, not the first ids in CRM order.
    assert 300 < sum(1 for i in sample if i < "acc-05000") < 700
    assert health_sample(ids[:50], 1000) == ids[:50]


def test_a_scenario_needs_a_shock_and_selects_case_insensitively() -> None:
    with pytest.raises(ValidationError, match="needs a shock"):
        Scenario(industry="Construction")
    scenario = Scenario(industry="construction", country=["de", "AT"], bands_down=1)
    account, _ = customer()
    assert scenario.selects(account, "B")
    assert not Scenario(industry="Retail", bands_down=1).selects(account, "B")
    assert not Scenario(band=["D", "E"], bands_down=1).selects(account, "B")
    assert scenario.describe() == "industry = construction and country = de, AT: moves down 1 band"


# -- charts ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "top"), [(0, 1.0), (7, 10.0), (12, 20.0), (2400, 2500.0), (0.31, 0.5)]
)
def test_axis_tops_are_round_numbers_at_or_above_the_data(value: float, top: float) -> None:
    assert nice_ceiling(value) == pytest.approx(top)


def test_bars_are_proportional_and_every_chart_has_its_text_alternative() -> None:
    chart = Chart(
        "c1",
        "Exposure by band",
        "A: 100; B: 50",
        "Band",
        "Exposure (EUR)",
        refs=(RefLine(80, "cap"),),
    )
    svg = bar_chart(chart, ["A", "B"], [Series("Exposure", [100, 50], "#000")])
    assert 'role="img"' in svg and 'aria-labelledby="c1-t c1-d"' in svg
    assert (
        '<title id="c1-t">Exposure by band</title>' in svg
        and '<desc id="c1-d">A: 100; B: 50</desc>' in svg
    )
    assert "Exposure (EUR)" in svg and ">Band<" in svg and ">cap<" in svg
    heights = [
        float(h)
        for h in re.findall(r'<rect x="[\d.]+" y="[\d.]+" width="[\d.]+" height="([\d.]+)"', svg)
    ]
    assert heights[0] == pytest.approx(2 * heights[1])
    bars = hbar_chart(chart, ["<script>alert(1)</script>"], [0.3], "#000")
    assert "<script>" not in bars and "&lt;script&gt;" in bars


def test_html_speaks_chinese_when_the_policy_does(tmp_path: Path) -> None:
    figures = minimal_figures(language="zh")
    html = render_html(figures)
    assert '<html lang="zh-CN">' in html and "信用组合报告" in html and "各评级敞口" in html
    assert "<script" not in html and "Content-Security-Policy" in html


def minimal_figures(language: str = "en") -> dict:
    from connector.report.figures import book_figures, concentration_figures, confidence_figures
    from connector.scoring.portfolio import portfolio_report

    rows = [row("a", "A", "100"), row("b", "C", "300")]
    accounts = [
        (Account(crm_id=r.account_id, name=r.name, industry="Retail", country="DE"), r)
        for r in rows
    ]

    class _A:
        def __init__(self, band: str) -> None:
            self.band = band

    portfolio = portfolio_report((a, _A(r.band), r.exposure) for a, r in accounts)  # type: ignore[misc]
    return {
        "connection": "c",
        "crm": "zoho",
        "home_currency": "EUR",
        "language": language,
        "book_as_of": AS_OF.isoformat(),
        "report_date": AS_OF.isoformat(),
        "generated_at": NOW.isoformat(),
        "model_version": "v2",
        "policy_fingerprint": "f",
        "accounts": 2,
        "band_cutoffs": [20, 40, 60, 80],
        "book": book_figures(rows, portfolio),
        "movement": movement_figures([], {}, AS_OF, SETTINGS),
        "concentration": concentration_figures(portfolio, SETTINGS),
        "owners": owner_figures(rows, [], NOW, SETTINGS),
        "limits": limit_figures(rows, [], NOW, SETTINGS),
        "stress": {"scenarios": []},
        "model_health": {"backtest": None, "confidence": confidence_figures(rows, SETTINGS)},
        "notes": [],
    }


def test_report_leaves_out_accounts_scored_in_another_currency_and_says_so(
    tmp_path: Path,
) -> None:
    """Amounts are added only in the home currency: an account scored before the home currency
    was set (its stored amounts in USD) is in no sum, and a note names it."""
    from connector.config import AppConfig
    from connector.models import RiskAssessment
    from connector.report import build_figures

    config = AppConfig.model_validate(
        {
            "store": {"url": str(tmp_path / "state.db")},
            "policy": {"home_currency": "EUR"},
            "connections": {
                "acme": {
                    "kind": "zoho",
                    "mapping": "zoho.inventory",
                    "client_secret": "s",
                    "refresh_token": "r",
                }
            },
        }
    )
    store = open_store(config.store.url)
    try:
        for crm_id, currency, exposure in (("E1", "EUR", "1000"), ("U1", "USD", "5000")):
            store.upsert_account("acme", Account(crm_id=crm_id, name=crm_id, currency=currency), {})
            features: dict[str, object] = {"exposure": exposure, "currency": currency}
            if currency == "EUR":
                features["home_currency"] = "EUR"
            store.save_assessment(
                "acme",
                RiskAssessment(
                    account_id=crm_id,
                    as_of=AS_OF,
                    score=50,
                    band="C",
                    level="medium",
                    confidence=0.9,
                    features=features,
                ),
                "fp",
                Decimal(exposure),
            )
        figures = build_figures(store, config, config.connection("acme"), now=NOW).to_dict()
    finally:
        store.close()
    assert figures["accounts"] == 1 and figures["left_out_other_currency"] == 1
    assert Decimal(figures["book"]["exposure"]) == Decimal(1000)
    assert any("U1" in note and "USD" in note for note in figures["notes"])
    assert "U1" in render_html(figures)
