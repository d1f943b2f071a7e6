"""Build the portfolio report's figures from the state store only (no CRM call): read, then compute.

The per-account figures are the ones the last run stored: each assessment's exposure, aging and
limits as the run computed them in the home currency, and the book's totals, HHI and top-10
shares come from `scoring.portfolio.portfolio_report`, the computation behind `crm-risk
portfolio` and the run report, so the three never disagree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from connector.engine.money import HomeInputs, to_home
from connector.errors import ConfigError, ConfigProblem
from connector.models import Account, Invoice, InvoiceStatus, RiskAssessment
from connector.planning.planner import limit_decision
from connector.planning.task_rules import TaskPolicy
from connector.report.figures import (
    BUCKETS,
    BookRow,
    Figures,
    FollowUp,
    Settings,
    Snapshot,
    book_figures,
    concentration_figures,
    confidence_figures,
    limit_figures,
    money,
    movement_figures,
    owner_figures,
    pick_baseline,
)
from connector.scoring import build_portfolio_context, portfolio_report
from connector.scoring.backtest import MIN_CLASS, evaluate, replay
from connector.scoring.currency import (
    CurrencyBook,
    NoRate,
    book_from_json,
    build_book,
    invoice_in_home,
)
from connector.scoring.history import DISPUTED, WRITTEN_OFF, History
from connector.scoring.policy import BANDS, ScoringPolicy, policy_fingerprint
from connector.scoring.stress import Outcome, Scenario, stress_all
from connector.store import SqlStore

if TYPE_CHECKING:
    from connector.config import AppConfig, ConnectionConfig, ReportConfig

_ZERO = Decimal(0)
HIGH_RISK = ("D", "E")
# Invoices issued within this many days of the book's date are the model-health sample.
HEALTH_WINDOW_DAYS = 365
# The payment history replayed for model health: at most this many invoices (the newest).
HEALTH_MAX_INVOICES = 300_000
_CLOSING_ACTIONS = frozenset({"task_complete", "task_comment"})
_OPENING_ACTIONS = frozenset({"task_create", "task_adopt"})


def _decimal(value: Any) -> Decimal:
    if value in (None, ""):
        return _ZERO
    return Decimal(str(value))


@dataclass(frozen=True)
class Book:
    """The scored book as stored: the rows the figures use and the records the scoring code uses."""

    rows: list[BookRow]
    accounts: dict[str, Account]
    assessments: dict[str, RiskAssessment]
    home_currency: str | None
    as_of: date | None
    # The rates the last run converted with (from its snapshot), for re-scoring stored inputs.
    rates: CurrencyBook | None = None
    # Accounts left out because their stored amounts are not in the home currency, by currency.
    other_currency: Mapping[str, list[str]] = field(default_factory=dict)


def read_book(store: SqlStore, connection: str, policy: ScoringPolicy) -> Book:
    """Every scored account with its home-currency figures, refusing a book in several currencies.

    Raises:
        ConfigError: the stored amounts are in more than one currency (no home currency to add
            them up in).
    """
    rows: list[BookRow] = []
    accounts: dict[str, Account] = {}
    assessments: dict[str, RiskAssessment] = {}
    currencies: set[str] = set()
    other_currency: dict[str, list[str]] = {}
    as_of: date | None = None
    home = policy.home_currency
    for account, assessment in store.iter_scored(connection):
        features = assessment.features
        currency = features.get("home_currency") or features.get("currency")
        if home is not None and currency and str(currency) != home:
            # Scored before the home currency was set or changed: its amounts are in another
            # currency, so it is left out of every sum (the next run rescores it in `home`).
            other_currency.setdefault(str(currency), []).append(account.crm_id)
            continue
        if currency:
            currencies.add(str(currency))
        # The run converted the account's limit with this rate (units of the account's currency
        # per home unit); without it the limit is already in the home currency.
        rate = _decimal(features.get("limit_rate")) or Decimal(1)
        current = account.current_credit_limit
        recommended = (
            _decimal(features["recommended_limit_home"])
            if features.get("recommended_limit_home") is not None
            else assessment.recommended_credit_limit
        )
        rows.append(
            BookRow(
                account_id=account.crm_id,
                name=account.name or account.crm_id,
                owner_id=account.owner_id,
                industry=account.industry,
                country=account.country,
                band=assessment.band,
                score=assessment.score,
                confidence=assessment.confidence,
                exposure=_decimal(features.get("exposure")),
                overdue=_decimal(features.get("overdue_amount")),
                aging=tuple(_decimal(features.get(f"aging_{bucket}")) for bucket in BUCKETS),
                current_limit=None
                if current is None
                else (current / rate).quantize(Decimal("0.01")),
                recommended_limit=recommended,
                as_of=assessment.as_of,
            )
        )
        accounts[account.crm_id] = account
        assessments[account.crm_id] = assessment
        if as_of is None or assessment.as_of > as_of:
            as_of = assessment.as_of
    if len(currencies) > 1 and home is None:
        raise ConfigError(
            [
                ConfigProblem(
                    "[policy] home_currency",
                    f"the stored book holds amounts in {', '.join(sorted(currencies))}; the "
                    "report adds amounts up only in one currency",
                    "set [policy] home_currency and run a sync so every amount is converted",
                )
            ]
        )
    if home is None and currencies:
        home = next(iter(currencies))
    return Book(rows, accounts, assessments, home, as_of, other_currency=other_currency)


# -- snapshots ------------------------------------------------------------------------------------


def read_snapshots(store: SqlStore, connection: str, as_of: date, days: int) -> list[Snapshot]:
    """Snapshots as of `as_of` or earlier, with per-account bands loaded where the report needs them."""
    found: list[Snapshot] = []
    for row in store.snapshots(connection, until=as_of):
        summary = row["summary"]
        found.append(
            Snapshot(
                run_id=row["run_id"],
                as_of=date.fromisoformat(row["as_of"]),
                taken_at=datetime.fromisoformat(row["taken_at"]),
                count_by_band={k: int(v) for k, v in (summary.get("count_by_band") or {}).items()},
                exposure_by_band={
                    k: _decimal(v) for k, v in (summary.get("exposure_by_band") or {}).items()
                },
                # Marked as kept; loaded below only for the snapshots the movement figures use.
                bands={} if row["detail"] else None,
            )
        )
    detailed = [s for s in found if s.bands is not None]
    needed = {s.run_id for s in detailed[-2:]}
    baseline = pick_baseline(detailed[:-1], as_of - timedelta(days=days))
    if baseline is not None:
        needed.add(baseline.run_id)
    out = []
    for snapshot in found:
        if snapshot.run_id in needed:
            accounts = store.snapshot_accounts(connection, snapshot.run_id)
            bands = {account_id: band for account_id, (band, _, _) in accounts.items()}
            out.append(replace(snapshot, bands=bands))
        elif snapshot.bands is not None:
            # Kept in the store but not needed: treated as totals only.
            out.append(replace(snapshot, bands=None))
        else:
            out.append(snapshot)
    return out


# -- follow-ups -----------------------------------------------------------------------------------


def read_followups(
    store: SqlStore, connection: str, tasks: TaskPolicy, now: datetime, window_days: int
) -> list[FollowUp]:
    """Open follow-ups from the ledger, and episodes closed in the window from the audit log.

    The ledger keeps only the latest episode per account and rule; the audit log keeps every
    create and every close, so the closed episodes (and their due dates) come from it.
    """
    rules = {rule.id: rule for rule in tasks.rules}

    def due_of(opened: datetime, rule: str, recorded: Any) -> date:
        if recorded:
            return date.fromisoformat(str(recorded))
        days = rules[rule].due_in_days if rule in rules else 3
        return opened.date() + timedelta(days=days)

    def kind_of(rule: str) -> str:
        return rules[rule].kind if rule in rules else rule

    out: list[FollowUp] = []
    for entry in store.task_ledger_rows(connection):
        if entry.state != "open":
            continue
        out.append(
            FollowUp(
                account_id=entry.account_id,
                rule=entry.rule,
                kind=kind_of(entry.rule),
                assignee=entry.owner_id,
                opened_at=entry.opened_at,
                closed_at=None,
                due=due_of(entry.opened_at, entry.rule, entry.meta.get("due_date")),
                level=entry.level,
            )
        )
    window_start = now - timedelta(days=window_days)
    opened: dict[tuple[str, str], tuple[datetime, str | None, Any]] = {}
    # Episodes closed in the window may have opened long before it: read a year more.
    for row in store.task_audit(connection, window_start - timedelta(days=365)):
        key = (str(row["record_id"]), str(row["field"] or ""))
        at = datetime.fromisoformat(row["at"])
        new = row["new_value"] or {}
        if row["action"] in _OPENING_ACTIONS:
            opened[key] = (at, new.get("owner_id"), new.get("due_date"))
        elif row["action"] in _CLOSING_ACTIONS and key in opened:
            start, owner, recorded_due = opened.pop(key)
            if window_start <= at <= now:
                out.append(
                    FollowUp(
                        account_id=key[0],
                        rule=key[1],
                        kind=kind_of(key[1]),
                        assignee=owner,
                        opened_at=start,
                        closed_at=at,
                        due=due_of(start, key[1], recorded_due),
                    )
                )
    return out


# -- stress ---------------------------------------------------------------------------------------


def _group_invoices(invoices: Iterable[Invoice]) -> Iterator[tuple[str, list[Invoice]]]:
    current: str | None = None
    batch: list[Invoice] = []
    for invoice in invoices:
        if invoice.account_id != current:
            if current is not None:
                yield current, batch
            current, batch = invoice.account_id, []
        batch.append(invoice)
    if current is not None:
        yield current, batch


def _with_invoices(
    account_ids: Iterable[str], groups: Iterable[tuple[str, list[Invoice]]]
) -> Iterator[tuple[str, list[Invoice]]]:
    """Each account of `groups` with its invoices, then the other `account_ids` with none."""
    without = set(account_ids)
    for account_id, invoices in groups:
        without.discard(account_id)
        yield account_id, invoices
    for account_id in sorted(without):
        yield account_id, []


def stress_figures(
    store: SqlStore,
    connection: ConnectionConfig,
    config: AppConfig,
    book: Book,
    scenarios: dict[str, Scenario],
) -> dict[str, Any]:
    """Each scenario's exposure at risk and the limit changes it would trigger.

    Every account a scenario selects is scored twice from its stored inputs, as it is and
    shocked, by `scoring.stress.stress` (the sync's own extract, rate and limit rule), at the
    date its assessment was made.
    """
    policy = config.policy_for(connection)
    governance = config.governance_for(connection)
    if not scenarios:
        return {"scenarios": []}
    context = build_portfolio_context(
        (book.accounts[row.account_id], row.exposure) for row in book.rows
    )
    selected: dict[str, set[str]] = {}
    by_id = {row.account_id: row for row in book.rows}
    for key, scenario in scenarios.items():
        selected[key] = {
            row.account_id
            for row in book.rows
            if scenario.selects(book.accounts[row.account_id], row.band)
        }
    wanted = {account_id for ids in selected.values() for account_id in ids}
    outcomes: dict[str, list[tuple[str, Outcome]]] = {key: [] for key in scenarios}
    rates = book.rates or build_book(None, policy.home_currency, policy.rates)
    # Scored in the home currency, as the run scored them (engine.money.to_home).
    score_policy = policy.model_copy(update={"home_currency": rates.home})
    unrated: set[str] = set()
    read = store.iter_invoices(connection.name, wanted)
    for account_id, invoices in _with_invoices(wanted, _group_invoices(read)):
        _stress_one(
            book,
            account_id,
            invoices,
            rates,
            score_policy,
            context,
            scenarios,
            selected,
            outcomes,
            unrated,
        )
    results = []
    for key, scenario in scenarios.items():
        results.append(_summarise(key, scenario, outcomes[key], by_id, book, governance))
    return {"scenarios": results, "left_out_without_rate": len(unrated)}


def _stress_one(
    book: Book,
    account_id: str,
    invoices: list[Invoice],
    rates: CurrencyBook,
    policy: ScoringPolicy,
    context: Any,
    scenarios: dict[str, Scenario],
    selected: dict[str, set[str]],
    outcomes: dict[str, list[tuple[str, Outcome]]],
    unrated: set[str],
) -> None:
    account = book.accounts[account_id]
    as_of = book.assessments[account_id].as_of
    inputs = to_home(account, invoices, rates, as_of)
    if not isinstance(inputs, HomeInputs):
        # A currency without a rate: the run held this account too; it is left out, not summed.
        unrated.add(account_id)
        return
    keys = [key for key in scenarios if account_id in selected[key]]
    shocked = stress_all(
        inputs.account, inputs.invoices, context, policy, as_of, [scenarios[k] for k in keys]
    )
    for key, outcome in zip(keys, shocked, strict=True):
        outcomes[key].append((account_id, outcome))


def _summarise(
    key: str,
    scenario: Scenario,
    outcomes: Sequence[tuple[str, Outcome]],
    rows: dict[str, BookRow],
    book: Book,
    governance: Any,
) -> dict[str, Any]:
    before = dict.fromkeys(BANDS, _ZERO)
    after = dict.fromkeys(BANDS, _ZERO)
    exposure = loss = high_before = high_after = _ZERO
    limit_before = limit_after = _ZERO
    cuts = approvals = to_zero = worse = 0
    for account_id, outcome in outcomes:
        amount = outcome.exposure
        exposure += amount
        loss += outcome.loss
        before[outcome.band_before] += amount
        after[outcome.band_after] += amount
        if outcome.band_before in HIGH_RISK:
            high_before += amount
        if outcome.band_after in HIGH_RISK:
            high_after += amount
        if BANDS.index(outcome.band_after) > BANDS.index(outcome.band_before):
            worse += 1
        old = outcome.limit_before or _ZERO
        new = outcome.limit_after or _ZERO
        limit_before += old
        limit_after += new
        if new < old:
            cuts += 1
            if new == 0:
                to_zero += 1
            current = rows[account_id].current_limit
            assessment = book.assessments[account_id]
            shocked = assessment.model_copy(
                update={"hard_rules": ("STRESS",) if outcome.hard_rule_after else ()}
            )
            if limit_decision(new, current, shocked, governance) == "held":
                approvals += 1
    total_book = sum((row.exposure for row in book.rows), _ZERO)
    return {
        "id": key,
        "label": scenario.describe(),
        "shocks": {
            "bands_down": scenario.bands_down,
            "days_late": scenario.days_late,
            "default_rate": scenario.default_rate,
        },
        "accounts": len(outcomes),
        "accounts_worse": worse,
        "exposure": money(exposure),
        "share_of_book": round(float(exposure / total_book), 4) if total_book > 0 else 0.0,
        "exposure_by_band_before": {b: money(v) for b, v in before.items()},
        "exposure_by_band_after": {b: money(v) for b, v in after.items()},
        "high_risk_before": money(high_before),
        "high_risk_after": money(high_after),
        "loss": money(loss),
        "exposure_at_risk": money(
            loss if scenario.default_rate is not None else high_after - high_before
        ),
        "limits_before": money(limit_before),
        "limits_after": money(limit_after),
        "limit_cuts": cuts,
        "limit_cuts_needing_approval": approvals,
        "limits_to_zero": to_zero,
    }


# -- model health ---------------------------------------------------------------------------------


def history_from_invoices(
    invoices: Iterable[Invoice],
    source: str,
    rates: CurrencyBook | None = None,
    currencies: Mapping[str, str | None] | None = None,
) -> History:
    """The store's invoices as a backtest history (columns), amounts in the home currency.

    Args:
        invoices: the invoices, any order.
        source: how the history is named in the figures.
        rates: converts each amount to the home currency (None: amounts are in one currency).
        currencies: account id -> the account's currency, for invoices that carry none.

    Returns:
        The history; an invoice whose currency has no rate is left out (never summed as is).
    """
    history = History(source=source, fmt="store", encoding="")
    index: dict[str, int] = {}
    for original in invoices:
        invoice = original
        if rates is not None:
            try:
                invoice = invoice_in_home(
                    original, rates, (currencies or {}).get(original.account_id)
                )
            except NoRate:
                history.rows_rejected += 1
                continue
        if invoice.deleted or invoice.status == InvoiceStatus.VOID or invoice.amount <= 0:
            continue
        customer = index.setdefault(invoice.account_id, len(history.customers))
        if customer == len(history.customers):
            history.customers.append(invoice.account_id)
        written_off = invoice.status == InvoiceStatus.WRITTEN_OFF
        settled = invoice.paid_date if (invoice.open_amount <= 0 or written_off) else None
        history.customer.append(customer)
        history.issue.append(invoice.issue_date.toordinal())
        history.due.append(invoice.due_date.toordinal())
        history.paid.append(settled.toordinal() if settled else 0)
        history.amount.append(float(invoice.amount))
        flags = 0
        if invoice.disputed_since is not None or invoice.status == InvoiceStatus.DISPUTED:
            flags |= DISPUTED
        if written_off:
            flags |= WRITTEN_OFF
        history.flags.append(flags)
        history.channel.append(-1)
        history.line.append(len(history.line) + 1)
    history.rows_read = len(history.issue)
    return history


def health_sample(account_ids: Iterable[str], limit: int) -> list[str]:
    """At most `limit` account ids, chosen by a hash of the id: the same accounts on every run,
    spread at random over the book (ids in CRM order would pick the oldest customers)."""
    ids = list(account_ids)
    if len(ids) <= limit:
        return ids
    return sorted(ids, key=lambda i: hashlib.blake2b(i.encode(), digest_size=8).digest())[:limit]


def model_health(
    store: SqlStore,
    connection: str,
    policy: ScoringPolicy,
    book: Book,
    settings: Settings,
) -> dict[str, Any]:
    """The backtest of the stored payment history and the share of low-confidence accounts.

    Invoices issued in the year before the book's date are scored point in time (the backtest's
    `replay`, the same extract and rate) and compared with how they were paid, as known on the
    book's date. Figures resting on fewer than `MIN_CLASS` late or on-time invoices are hidden.
    """
    confidence = confidence_figures(book.rows, settings)
    as_of = book.as_of
    if as_of is None or not book.rows:
        return {"backtest": None, "confidence": confidence}
    sample = health_sample(book.accounts, settings.health_max_accounts)
    history = history_from_invoices(
        store.iter_invoices(connection, sample),
        f"state store ({connection})",
        book.rates,
        {account_id: account.currency for account_id, account in book.accounts.items()},
    )
    known_before = as_of.toordinal() + 1
    start = as_of.toordinal() - HEALTH_WINDOW_DAYS
    rows = [i for i in range(len(history)) if start <= history.issue[i] < known_before]
    backtest: dict[str, Any]
    if len(rows) > HEALTH_MAX_INVOICES:
        rows = sorted(rows, key=lambda i: history.issue[i])[-HEALTH_MAX_INVOICES:]
    if book.rates is not None:
        policy = policy.model_copy(update={"home_currency": book.rates.home})
    run = replay(history, policy) if rows else None
    if run is None:
        backtest = {"invoices": 0, "enough": False}
    else:
        period = evaluate(history, run, rows, known_before, thresholds=(0, 15), bootstrap=0)
        figures = period.to_dict()
        enough = figures["auc"].get("0") is not None
        backtest = {
            "enough": enough,
            "min_class": MIN_CLASS,
            "window_days": HEALTH_WINDOW_DAYS,
            "invoices": figures["invoices"],
            "late_share": figures["late_share"],
            "decided": figures["decided"],
            "positives": figures["positives"],
            "auc": figures["auc"],
            "ks": figures["ks"],
            "band_auc": figures["band_auc"],
            "bands": figures["bands"],
            "bands_monotone": figures["bands_monotone"],
        }
    backtest["accounts_sampled"] = len(sample)
    backtest["accounts_total"] = len(book.accounts)
    return {"backtest": backtest, "confidence": confidence}


# -- the whole report -----------------------------------------------------------------------------


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
    book = read_book(store, connection.name, policy)
    latest = store.snapshots(connection.name)
    stored_rates = latest[-1]["summary"].get("rates") if latest else None
    book = replace(
        book,
        rates=book_from_json(stored_rates)
        if stored_rates
        else build_book(None, policy.home_currency or book.home_currency, policy.rates),
    )
    moment = report_moment(as_of, now)
    report_date = moment.date()
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
    portfolio = portfolio_report(
        (book.accounts[row.account_id], book.assessments[row.account_id], row.exposure)
        for row in book.rows
    )
    snapshots = read_snapshots(store, connection.name, report_date, settings.movement_days)
    names = {row.account_id: row.name for row in book.rows}
    followups = read_followups(store, connection.name, tasks, moment, settings.window_days)
    approvals = [f for f in followups if f.kind == "limit_approval" and f.closed_at is None]
    notes: list[str] = []
    for currency, ids in sorted(book.other_currency.items()):
        notes.append(
            f"left out: {len(ids)} account(s) scored in {currency}, not the home currency "
            f"{book.home_currency} (e.g. {ids[0]}); the next sync rescores them in "
            f"{book.home_currency}"
        )
    if len([s for s in snapshots if s.bands is not None]) < 2:
        notes.append("movement: one run stored so far; the next run adds the comparison")
    header = {
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
    return Figures(
        header=header,
        book=book_figures(book.rows, portfolio),
        movement=movement_figures(snapshots, names, report_date, settings),
        concentration=concentration_figures(portfolio, settings),
        owners=owner_figures(book.rows, followups, moment, settings),
        limits=limit_figures(book.rows, approvals, moment, settings),
        stress=stress_figures(store, connection, config, book, dict(config.report.scenarios)),
        model_health=model_health(store, connection.name, policy, book, settings),
        notes=notes,
    )


__all__ = ["Book", "build_figures", "history_from_invoices", "read_book", "report_moment"]
