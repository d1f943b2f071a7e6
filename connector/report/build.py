"""Build the portfolio report's figures from the state store only (no CRM call): read, then compute.

The per-account figures are the ones the last run stored: each assessment's exposure, aging and
limits as the run computed them in the home currency, and the book's totals, HHI and top-10
shares come from `scoring.portfolio.portfolio_report`, the computation behind `crm-risk
portfolio` and the run report, so the three never disagree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, time
from typing import TYPE_CHECKING, Any

from connector.errors import ConfigError, ConfigProblem
from connector.report.figures import (
    Figures,
    Settings,
    Snapshot,
    book_figures,
    concentration_figures,
    movement_figures,
)
from connector.report.health import model_health
from connector.report.limits import limit_figures
from connector.report.owners import owner_figures
from connector.report.scenarios import stress_figures
from connector.report.stored import Book, read_book, read_followups, read_snapshots
from connector.scoring import portfolio_report
from connector.scoring.currency import book_from_json, build_book
from connector.scoring.policy import ScoringPolicy, policy_fingerprint
from connector.store import SqlStore

if TYPE_CHECKING:
    from connector.config import AppConfig, ConnectionConfig, ReportConfig


def settings_for(report: ReportConfig, policy: ScoringPolicy) -> Settings:
    """The report's knobs from `[report]` and the policy's caps and band edges."""
    return Settings(
        customer_cap=policy.limits.concentration_cap_share,
        industry_cap=report.industry_cap_share,
        country_cap=report.country_cap_share,
        hhi_moderate=report.hhi_moderate,
        hhi_high=report.hhi_high,
        low_confidence_below=report.low_confidence_below,
        max_listed=report.max_listed,
        health_max_accounts=report.health_max_accounts,
        band_cutoffs=tuple(policy.bands.cutoffs),
    )


def report_moment(as_of: date | None, now: datetime) -> datetime:
    """Where the report's windows end: the end of `as_of` when given, else now."""
    if as_of is None:
        return now
    return datetime.combine(as_of, time.max, tzinfo=UTC)


def build_figures(
    store: SqlStore,
    config: AppConfig,
    connection: ConnectionConfig,
    *,
    as_of: date | None = None,
    now: datetime | None = None,
) -> Figures:
    """Every figure of the report for one connection, from the store.

    Args:
        store: the state store.
        config: the configuration (policy, task rules, governance, [report]).
        connection: the connection whose book to report.
        as_of: the report date: windows end there and later snapshots are ignored (default:
            today). The book is the one the latest run stored, so it must not be newer.
        now: the current time (a parameter for tests).

    Returns:
        The figures.

    Raises:
        ConfigError: `as_of` is before the stored book's date, or the book mixes currencies.
    """
    now = now or datetime.now(UTC)
    policy = config.policy_for(connection)
    tasks = config.tasks_for(connection)
    settings = settings_for(config.report, policy)
    book = _with_rates(store, connection.name, read_book(store, connection.name, policy), policy)
    moment = report_moment(as_of, now)
    report_date = moment.date()
    _refuse_a_later_book(book, report_date)
    portfolio = portfolio_report(
        (book.accounts[row.account_id], book.assessments[row.account_id], row.exposure)
        for row in book.rows
    )
    snapshots = read_snapshots(store, connection.name, report_date, settings.movement_days)
    names = {row.account_id: row.name for row in book.rows}
    followups = read_followups(store, connection.name, tasks, moment, settings.window_days)
    approvals = [f for f in followups if f.kind == "limit_approval" and f.closed_at is None]
    return Figures(
        header=_header(connection, policy, book, report_date, now),
        book=book_figures(book.rows, portfolio),
        movement=movement_figures(snapshots, names, report_date, settings),
        concentration=concentration_figures(portfolio, settings),
        owners=owner_figures(book.rows, followups, moment, settings),
        limits=limit_figures(book.rows, approvals, moment, settings),
        stress=stress_figures(store, connection, config, book, dict(config.report.scenarios)),
        model_health=model_health(store, connection.name, policy, book, settings),
        notes=_notes(book, snapshots),
    )


def _with_rates(store: SqlStore, connection: str, book: Book, policy: ScoringPolicy) -> Book:
    """The book with the rates the last run converted with (from its snapshot), else the policy's."""
    latest = store.snapshots(connection)
    stored_rates = latest[-1]["summary"].get("rates") if latest else None
    return replace(
        book,
        rates=book_from_json(stored_rates)
        if stored_rates
        else build_book(None, policy.home_currency or book.home_currency, policy.rates),
    )


def _refuse_a_later_book(book: Book, report_date: date) -> None:
    if book.as_of is not None and book.as_of > report_date:
        raise ConfigError(
            [
                ConfigProblem(
                    "--as-of",
                    f"the stored book was scored as of {book.as_of.isoformat()}, after "
                    f"{report_date.isoformat()}",
                    "give a date on or after the last run's scoring date",
                )
            ]
        )


def _notes(book: Book, snapshots: Sequence[Snapshot]) -> list[str]:
    """What the reader must know about what the figures leave out."""
    notes: list[str] = []
    for currency, ids in sorted(book.other_currency.items()):
        notes.append(
            f"left out: {len(ids)} account(s) scored in {currency}, not the home currency "
            f"{book.home_currency} (e.g. {ids[0]}); the next sync rescores them in "
            f"{book.home_currency}"
        )
    if len([s for s in snapshots if s.bands is not None]) < 2:
        notes.append("movement: one run stored so far; the next run adds the comparison")
    return notes


def _header(
    connection: ConnectionConfig,
    policy: ScoringPolicy,
    book: Book,
    report_date: date,
    now: datetime,
) -> dict[str, Any]:
    return {
        "connection": connection.name,
        "crm": connection.kind,
        "home_currency": book.home_currency,
        "language": policy.language,
        "book_as_of": book.as_of.isoformat() if book.as_of else None,
        "report_date": report_date.isoformat(),
        "generated_at": now.isoformat(timespec="seconds"),
        "model_version": policy.model_version,
        "band_cutoffs": list(policy.bands.cutoffs),
        "policy_fingerprint": policy_fingerprint(policy),
        "accounts": len(book.rows),
        "left_out_other_currency": sum(len(ids) for ids in book.other_currency.values()),
    }


__all__ = ["build_figures", "report_moment", "settings_for"]
