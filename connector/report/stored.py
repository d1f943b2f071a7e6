"""What the report reads from the state store: the scored book, the snapshots, the follow-up episodes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from connector.errors import ConfigError, ConfigProblem
from connector.models import Account, RiskAssessment
from connector.planning.task_rules import TaskPolicy
from connector.report.figures import BUCKETS, BookRow, FollowUp, Snapshot, pick_baseline
from connector.scoring.currency import CurrencyBook
from connector.scoring.policy import ScoringPolicy
from connector.store import SqlStore

_ZERO = Decimal(0)
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


__all__ = ["Book", "read_book", "read_followups", "read_snapshots"]
