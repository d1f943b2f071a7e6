"""The stress section's figures: the accounts each scenario selects, re-scored shocked and summed."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from connector.engine.money import HomeInputs, to_home
from connector.models import Invoice
from connector.planning.planner import limit_decision
from connector.report.figures import BookRow, money
from connector.report.stored import Book
from connector.scoring import build_portfolio_context
from connector.scoring.currency import CurrencyBook, build_book
from connector.scoring.policy import BANDS, ScoringPolicy
from connector.scoring.stress import Outcome, Scenario, stress_all
from connector.store import SqlStore

if TYPE_CHECKING:
    from connector.config import AppConfig, ConnectionConfig


_ZERO = Decimal(0)
HIGH_RISK = ("D", "E")


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


__all__ = ["stress_figures"]
