"""`crm-risk portfolio`: the whole scored book in the home currency, with totals and concentration."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from connector.cli.plain import PlainTable
from connector.models import Account, RiskAssessment
from connector.scoring.portfolio import portfolio_report
from connector.store import SqlStore

CSV_COLUMNS = (
    "crm_id",
    "name",
    "owner_id",
    "band",
    "score",
    "exposure_home",
    "current_limit",
    "recommended_limit",
    "limit_currency",
    "recommended_limit_home",
    "utilisation",
    "concentration_share",
    "industry",
    "country",
    "main_reason",
)


def _scored(
    store: SqlStore, connection: str, bands: set[str], owner: str | None
) -> Iterator[tuple[Account, RiskAssessment]]:
    for stored in store.iter_accounts(connection):
        account = stored.account
        if owner and account.owner_id != owner:
            continue
        assessment = store.get_assessment(connection, account.crm_id)
        if assessment is None or (bands and assessment.band not in bands):
            continue
        yield account, assessment


def _money(value: Any) -> str | None:
    return None if value is None else f"{Decimal(str(value)):.2f}"


def portfolio_document(
    store: SqlStore, connection: str, *, bands: set[str] | None = None, owner: str | None = None
) -> dict[str, Any]:
    """Every scored account and the book's totals, all amounts in the home currency.

    Args:
        store: the state store.
        connection: the connection whose book to show.
        bands: only these bands (all when empty or None).
        owner: only accounts of this owner (CRM user id).

    Returns:
        `{"home_currency", "accounts": [...], "totals": {...}}`; money as decimal strings,
        limits in the account's currency (`limit_currency`) and in home.
    """
    accounts: list[dict[str, Any]] = []
    book: list[tuple[Account, RiskAssessment, Decimal]] = []
    home: str | None = None
    for account, assessment in _scored(store, connection, bands or set(), owner):
        features = assessment.features
        home = home or features.get("home_currency") or features.get("currency")
        exposure = Decimal(str(features.get("exposure") or 0))
        reason = assessment.reasons[0] if assessment.reasons else None
        accounts.append(
            {
                "crm_id": account.crm_id,
                "name": account.name,
                "owner_id": account.owner_id,
                "band": assessment.band,
                "score": round(assessment.score, 1),
                "exposure_home": _money(exposure),
                "current_limit": _money(account.current_credit_limit),
                "recommended_limit": _money(assessment.recommended_credit_limit),
                "limit_currency": features.get("limit_currency") or account.currency or home,
                "recommended_limit_home": _money(features.get("recommended_limit_home")),
                "utilisation": features.get("utilisation"),
                "concentration_share": features.get("concentration_share"),
                "industry": account.industry,
                "country": account.country,
                "main_reason": f"{reason.code}: {reason.text}" if reason else None,
            }
        )
        book.append((account, assessment, exposure))
    totals = portfolio_report(book).to_dict() or {"accounts": 0}
    return {"home_currency": home, "accounts": accounts, "totals": totals}


def portfolio_csv(document: dict[str, Any]) -> str:
    """The accounts as CSV (one header row; totals are in the JSON form)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in document["accounts"]:
        writer.writerow(row)
    return buffer.getvalue()


def _amount(value: str | None, currency: str | None) -> str:
    if value is None:
        return "-"
    text = f"{Decimal(value):,.0f}"
    return f"{text} {currency}" if currency else text


def render_portfolio(document: dict[str, Any]) -> list[PlainTable]:
    """The accounts (riskiest first) and the totals, as rich tables."""
    home = document["home_currency"]
    accounts = PlainTable(
        title=f"Portfolio ({len(document['accounts'])} accounts, in {home or '-'})"
    )
    for column in ("account", "band", "score", "exposure", "limit", "recommended", "main reason"):
        accounts.add_column(column, overflow="fold")
    for row in sorted(document["accounts"], key=lambda r: (-r["score"], r["crm_id"])):
        accounts.add_row(
            row["name"] or row["crm_id"],
            row["band"],
            f"{row['score']:.0f}",
            _amount(row["exposure_home"], home),
            _amount(row["current_limit"], row["limit_currency"]),
            _amount(row["recommended_limit"], row["limit_currency"]),
            row["main_reason"] or "-",
        )
    totals = document["totals"]
    summary = PlainTable(title="Totals")
    summary.add_column("band")
    summary.add_column("accounts", justify="right")
    summary.add_column(f"exposure ({home or '-'})", justify="right")
    for band, count in (totals.get("count_by_band") or {}).items():
        summary.add_row(band, str(count), _amount(totals["exposure_by_band"].get(band, "0"), None))
    concentration = PlainTable(title="Concentration of exposure")
    for column in ("by", "HHI", "top-10 share", "largest"):
        concentration.add_column(column)
    for key in ("by_customer", "by_industry", "by_country"):
        figures = totals.get(key)
        if not figures:
            continue
        top = figures["top"][0] if figures["top"] else None
        concentration.add_row(
            key.removeprefix("by_"),
            f"{figures['hhi']:.0f}",
            f"{figures['top10_share']:.1%}",
            f"{top['name']} ({top['share']:.1%})" if top else "-",
        )
    return [accounts, summary, concentration]


__all__ = ["portfolio_csv", "portfolio_document", "render_portfolio"]
