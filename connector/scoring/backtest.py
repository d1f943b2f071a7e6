"""Point-in-time backtest: replay an invoice history through the model and report AUC, KS and bands.

Each invoice's customer is scored as of the invoice's issue date, using only what was known
then: invoices settled before that date are history, invoices issued earlier but settled later
count as open (aged to that date), and the invoice's own outcome and dispute flag are never used.
A dispute on an earlier invoice is taken as known only once that invoice was settled (the data
carries no dispute date), which errs against the model rather than leaking the future.

Two CSV layouts are read:

``ibm-ar``
    IBM's "Accounts Receivable" sample (countryCode, customerID, invoiceNumber, InvoiceDate,
    DueDate, InvoiceAmount, Disputed, SettledDate, ..., dates M/D/YYYY).

``canonical``
    One row per invoice, header required, dates ISO (YYYY-MM-DD):

    ============  ========  =========================================================
    column        required  meaning
    ============  ========  =========================================================
    customer_id   yes       the customer (account) id
    invoice_id    yes       the invoice id or number
    issue_date    yes       date issued
    due_date      yes       date due
    amount        yes       invoiced amount (one currency per file, or convert first)
    paid_date     no        date fully paid; empty = still open (used as history only)
    disputed      no        true/false, yes/no or 1/0
    written_off   no        true/false: the invoice was written off (on paid_date or due_date)
    country       no        customer country (reported, not scored)
    industry      no        customer industry (reported, not scored)
    ============  ========  =========================================================
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from connector.errors import ConfigError, ConfigProblem, ConnectorError
from connector.models import Account, Invoice, InvoiceStatus, RiskAssessment
from connector.scoring import PortfolioContext, assess
from connector.scoring.policy import BANDS, ScoringPolicy, policy_fingerprint

BacktestFormat = Literal["ibm-ar", "canonical"]
_TRUE = {"1", "true", "yes", "y", "t"}
_FALSE = {"", "0", "false", "no", "n", "f"}
_MAX_PROBLEMS = 20
IBM_NOTE = (
    "IBM Watson Analytics 'Accounts Receivable' sample: simulated data, a plumbing test of the "
    "model, not evidence of real-world accuracy"
)


@dataclass(frozen=True, slots=True)
class HistoryInvoice:
    """One invoice of a payment history file, as read."""

    customer_id: str
    invoice_id: str
    issue_date: date
    due_date: date
    amount: Decimal
    paid_date: date | None = None
    disputed: bool = False
    written_off: bool = False
    country: str | None = None
    industry: str | None = None

    @property
    def days_late(self) -> int | None:
        """Days paid after the due date (0 when on time or early); None while open."""
        if self.paid_date is None or self.written_off:
            return None
        return max(0, (self.paid_date - self.due_date).days)


def _bool(value: str, where: str, problems: list[ConfigProblem]) -> bool:
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text not in _FALSE:
        problems.append(ConfigProblem(where, f"expected yes/no, got {value!r}"))
    return False


def _date(
    value: str, fmt: BacktestFormat, where: str, problems: list[ConfigProblem]
) -> date | None:
    text = value.strip()
    if not text:
        return None
    try:
        if fmt == "ibm-ar":
            return datetime.strptime(text, "%m/%d/%Y").date()
        return date.fromisoformat(text)
    except ValueError:
        expected = "M/D/YYYY" if fmt == "ibm-ar" else "YYYY-MM-DD"
        problems.append(ConfigProblem(where, f"expected a date {expected}, got {value!r}"))
        return None


_IBM = {
    "customer_id": "customerID",
    "invoice_id": "invoiceNumber",
    "issue_date": "InvoiceDate",
    "due_date": "DueDate",
    "amount": "InvoiceAmount",
    "paid_date": "SettledDate",
    "disputed": "Disputed",
    "country": "countryCode",
}
_CANONICAL = {
    name: name
    for name in (
        "customer_id",
        "invoice_id",
        "issue_date",
        "due_date",
        "amount",
        "paid_date",
        "disputed",
        "written_off",
        "country",
        "industry",
    )
}
_REQUIRED = ("customer_id", "invoice_id", "issue_date", "due_date", "amount")


def load_invoices(path: Path | str, fmt: BacktestFormat = "ibm-ar") -> list[HistoryInvoice]:
    """Read a payment history CSV.

    Args:
        path: the CSV file.
        fmt: "ibm-ar" (IBM's sample layout) or "canonical" (see the module docstring).

    Returns:
        The invoices in file order.

    Raises:
        ConfigError: the file is missing, lacks a required column, or has invalid rows (all
            problems are listed, up to 20, with file:line locations).
    """
    path = Path(path)
    columns = _IBM if fmt == "ibm-ar" else _CANONICAL
    problems: list[ConfigProblem] = []
    rows: list[HistoryInvoice] = []
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError(
            [ConfigProblem(str(path), f"cannot read the file: {exc.strerror}")]
        ) from None
    with handle:
        reader = csv.DictReader(handle)
        header = set(reader.fieldnames or ())
        missing = [columns[name] for name in _REQUIRED if columns[name] not in header]
        if missing:
            raise ConfigError(
                [
                    ConfigProblem(
                        str(path),
                        f"missing column(s) {', '.join(missing)}",
                        f"is --format {fmt} right?",
                    )
                ]
            )
        for line, row in enumerate(reader, start=2):
            if len(problems) >= _MAX_PROBLEMS:
                break
            where = f"{path.name}:{line}"

            def get(name: str, row: dict[str, str] = row) -> str:
                column = columns.get(name)
                return (row.get(column) or "").strip() if column else ""

            issue = _date(get("issue_date"), fmt, f"{where} issue_date", problems)
            due = _date(get("due_date"), fmt, f"{where} due_date", problems)
            paid = _date(get("paid_date"), fmt, f"{where} paid_date", problems)
            try:
                amount = Decimal(get("amount").replace(",", ""))
            except InvalidOperation:
                problems.append(
                    ConfigProblem(f"{where} amount", f"expected a number, got {get('amount')!r}")
                )
                continue
            customer = get("customer_id")
            if not customer:
                problems.append(ConfigProblem(f"{where} customer_id", "empty"))
            if issue is None or due is None or not customer:
                if issue is None or due is None:
                    problems.append(ConfigProblem(where, "issue and due dates are required"))
                continue
            rows.append(
                HistoryInvoice(
                    customer_id=customer,
                    invoice_id=get("invoice_id"),
                    issue_date=issue,
                    due_date=due,
                    amount=amount,
                    paid_date=paid,
                    disputed=_bool(get("disputed"), f"{where} disputed", problems),
                    written_off=_bool(get("written_off"), f"{where} written_off", problems),
                    country=get("country") or None,
                    industry=get("industry") or None,
                )
            )
    if problems:
        raise ConfigError(problems[:_MAX_PROBLEMS], str(path))
    return rows


# -- metrics ------------------------------------------------------------------------------


def auc(scores: Sequence[float], labels: Sequence[bool]) -> float | None:
    """Area under the ROC curve (Mann-Whitney, ties count half); None without both classes."""
    positives = sum(labels)
    negatives = len(labels) - positives
    if positives == 0 or negatives == 0:
        return None
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    rank_sum = 0.0
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        average_rank = (i + j) / 2 + 1
        rank_sum += average_rank * sum(1 for k in range(i, j + 1) if labels[order[k]])
        i = j + 1
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def ks(scores: Sequence[float], labels: Sequence[bool]) -> float | None:
    """Kolmogorov-Smirnov: the largest gap between the bad and good score distributions."""
    positives = sum(labels)
    negatives = len(labels) - positives
    if positives == 0 or negatives == 0:
        return None
    pairs = sorted(zip(scores, labels, strict=True), key=lambda p: p[0])
    best = bad = good = 0.0
    i = 0
    while i < len(pairs):
        value = pairs[i][0]
        while i < len(pairs) and pairs[i][0] == value:
            if pairs[i][1]:
                bad += 1
            else:
                good += 1
            i += 1
        best = max(best, abs(bad / positives - good / negatives))
    return best


@dataclass(frozen=True, slots=True)
class ScoredInvoice:
    """One invoice with the score its customer had on the issue date and the outcome."""

    invoice: HistoryInvoice
    assessment: RiskAssessment

    @property
    def score(self) -> float:
        """The customer's score on the issue date."""
        return self.assessment.score


@dataclass(slots=True)
class PeriodResult:
    """Metrics over one period (in-sample or out-of-time)."""

    invoices: int
    late_share: float | None
    auc: dict[str, float | None]
    ks: dict[str, float | None]
    bands: list[dict[str, Any]]
    bands_monotone: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {
            "invoices": self.invoices,
            "late_share": _r(self.late_share),
            "auc": {k: _r(v) for k, v in self.auc.items()},
            "ks": {k: _r(v) for k, v in self.ks.items()},
            "bands": self.bands,
            "bands_monotone": self.bands_monotone,
        }


def _r(value: float | None, places: int = 4) -> float | None:
    return None if value is None else round(value, places)


def _period(
    rows: Sequence[ScoredInvoice],
    thresholds: Sequence[int],
    probabilities: Sequence[float] | None = None,
) -> PeriodResult:
    scores = [row.score for row in rows]
    days = [row.invoice.days_late or 0 for row in rows]
    aucs: dict[str, float | None] = {}
    kss: dict[str, float | None] = {}
    for n in thresholds:
        labels = [d > n for d in days]
        aucs[str(n)] = auc(scores, labels)
        kss[str(n)] = ks(scores, labels)
    bands: list[dict[str, Any]] = []
    shares: list[float] = []
    for band in BANDS:
        members = [i for i, row in enumerate(rows) if row.assessment.band == band]
        if not members:
            continue
        late = sum(1 for i in members if days[i] > 0) / len(members)
        shares.append(late)
        entry: dict[str, Any] = {
            "band": band,
            "count": len(members),
            "late_share": round(late, 4),
            "late_share_15": round(sum(1 for i in members if days[i] > 15) / len(members), 4),
            "mean_score": round(sum(scores[i] for i in members) / len(members), 2),
        }
        if probabilities is not None:
            entry["mean_probability_late"] = round(
                sum(probabilities[i] for i in members) / len(members), 4
            )
        bands.append(entry)
    monotone = all(b >= a for a, b in itertools.pairwise(shares))
    return PeriodResult(
        invoices=len(rows),
        late_share=(sum(1 for d in days if d > 0) / len(rows)) if rows else None,
        auc=aucs,
        ks=kss,
        bands=bands,
        bands_monotone=monotone,
    )


@dataclass(slots=True)
class BacktestReport:
    """What `crm-risk backtest` prints: out-of-time metrics first, in-sample beside them."""

    source: str
    fmt: str
    split_date: date
    policy_fingerprint: str
    thresholds: tuple[int, ...]
    invoices_total: int
    customers: int
    out_of_time: PeriodResult
    in_sample: PeriodResult
    notes: list[str] = field(default_factory=list)
    fit: dict[str, Any] | None = None

    @property
    def invoices_scored(self) -> int:
        """Invoices scored out of time (after the split)."""
        return self.out_of_time.invoices

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form: the out-of-time figures at the top level, in-sample nested."""
        oot = self.out_of_time.to_dict()
        return {
            "source": self.source,
            "format": self.fmt,
            "split_date": self.split_date.isoformat(),
            "policy_fingerprint": self.policy_fingerprint,
            "invoices_total": self.invoices_total,
            "customers": self.customers,
            "invoices_scored": self.invoices_scored,
            "late_share": oot["late_share"],
            "auc": oot["auc"],
            "ks": oot["ks"],
            "bands": oot["bands"],
            "bands_monotone": oot["bands_monotone"],
            "in_sample": self.in_sample.to_dict(),
            "fit": self.fit,
            "notes": list(self.notes),
        }


def _to_invoice(row: HistoryInvoice, index: int) -> Invoice:
    paid = row.paid_date
    status = InvoiceStatus.OPEN
    if row.written_off:
        status = InvoiceStatus.WRITTEN_OFF
    elif paid is not None:
        status = InvoiceStatus.PAID
    # No dispute date in the data: a dispute is known once the invoice settled (no look-ahead).
    disputed_since = (paid or None) if row.disputed else None
    return Invoice.model_construct(
        crm_id=f"{row.invoice_id}#{index}",
        account_id=row.customer_id,
        number=row.invoice_id,
        issue_date=row.issue_date,
        due_date=row.due_date,
        amount=row.amount,
        open_amount=Decimal(0) if paid is not None else row.amount,
        currency=None,
        exchange_rate=None,
        paid_date=paid if not row.written_off else None,
        status=status,
        disputed_since=disputed_since,
        modified_at=None,
        deleted=False,
    )


def replay(rows: Sequence[HistoryInvoice], policy: ScoringPolicy) -> list[ScoredInvoice]:
    """Score every settled invoice's customer as of its issue date (point in time).

    Args:
        rows: the whole history.
        policy: the scoring policy.

    Returns:
        One scored invoice per settled (not written-off) invoice, in file order.
    """
    by_customer: dict[str, list[tuple[HistoryInvoice, Invoice]]] = {}
    for index, row in enumerate(rows):
        by_customer.setdefault(row.customer_id, []).append((row, _to_invoice(row, index)))
    scored: dict[int, ScoredInvoice] = {}
    positions = {id(row): i for i, row in enumerate(rows)}
    empty = PortfolioContext()
    for customer, items in by_customer.items():
        items.sort(key=lambda pair: pair[0].issue_date)
        first = items[0][0]
        account = Account.model_construct(
            crm_id=customer,
            name=customer,
            country=first.country,
            industry=first.industry,
            **{name: None for name in _ACCOUNT_NONE},
            insolvency_flag=False,
            manual_override=False,
            deleted=False,
        )
        cache: dict[date, RiskAssessment] = {}
        for row, _ in items:
            if row.days_late is None:
                continue
            when = row.issue_date
            assessment = cache.get(when)
            if assessment is None:
                # Only invoices issued strictly before the decision date were known then.
                history = [inv for other, inv in items if other.issue_date < when]
                assessment = assess(account, history, empty, policy, when)
                cache[when] = assessment
            scored[positions[id(row)]] = ScoredInvoice(row, assessment)
    return [scored[i] for i in sorted(scored)]


_ACCOUNT_NONE = (
    "owner_id",
    "owner_active",
    "currency",
    "annual_revenue",
    "employees",
    "created_at",
    "payment_terms_days",
    "current_credit_limit",
    "manual_credit_limit",
    "agency_limit",
    "net_worth",
    "external_score",
    "external_score_date",
    "external_score_source",
    "insured_limit",
    "working_capital",
    "retained_earnings",
    "ebit",
    "book_equity",
    "total_assets",
    "total_liabilities",
    "modified_at",
)


def default_split(rows: Iterable[HistoryInvoice]) -> date:
    """The first day of the month at the middle of the issue dates (used without --split-date)."""
    dates = sorted(row.issue_date for row in rows)
    if not dates:
        return date.today().replace(day=1)
    middle = dates[len(dates) // 2]
    return middle.replace(day=1)


FIT_FEATURES = (
    "DBT_HIGH",
    "LATE_SHARE",
    "PAST_DUE_NOW",
    "TREND_WORSE",
    "EXTERNAL_SCORE",
    "DISPUTES",
    "OVER_LIMIT",
    "THIN_FILE",
    "FINANCIALS",
)


def _design(rows: Sequence[ScoredInvoice]) -> list[list[float]]:
    matrix = []
    for row in rows:
        by_name = {fac.name: fac for fac in row.assessment.factors}
        vector: list[float] = []
        for name in FIT_FEATURES:
            fac = by_name.get(name)
            available = fac is not None and fac.available and fac.points is not None
            vector.append((fac.points or 0.0) / 100.0 if available and fac is not None else 0.0)
            vector.append(1.0 if available else 0.0)
        matrix.append(vector)
    return matrix


def _fit(
    train: Sequence[ScoredInvoice], test: Sequence[ScoredInvoice], thresholds: Sequence[int]
) -> tuple[dict[str, Any], list[float]]:
    try:
        from sklearn.linear_model import LogisticRegression
    except ImportError:
        raise ConnectorError(
            "--fit needs scikit-learn: pip install 'crm-risk-connector[calibration]'"
        ) from None
    labels = [(row.invoice.days_late or 0) > 0 for row in train]
    if len(set(labels)) < 2:
        raise ConnectorError("--fit needs both late and on-time invoices before the split date")
    model = LogisticRegression(max_iter=1000)
    model.fit(_design(train), labels)
    probabilities = [float(p) for p in model.predict_proba(_design(test))[:, 1]] if test else []
    test_days = [row.invoice.days_late or 0 for row in test]
    fitted_auc = {str(n): _r(auc(probabilities, [d > n for d in test_days])) for n in thresholds}
    score_auc = {
        str(n): _r(auc([row.score for row in test], [d > n for d in test_days])) for n in thresholds
    }
    observed = sum(1 for d in test_days if d > 0) / len(test) if test else None
    expected = sum(probabilities) / len(probabilities) if probabilities else None
    beats = (
        fitted_auc.get("0") is not None
        and score_auc.get("0") is not None
        and (fitted_auc["0"] or 0) > (score_auc["0"] or 0)
    )
    names = [f"{name}{suffix}" for name in FIT_FEATURES for suffix in ("_points", "_available")]
    return (
        {
            "model": "logistic regression on factor points and availability flags, fitted before the split",
            "auc": fitted_auc,
            "transparent_auc": score_auc,
            "beats_transparent_score": beats,
            "expected_late_share": _r(expected),
            "observed_late_share": _r(observed),
            "intercept": round(float(model.intercept_[0]), 4),
            "coefficients": {
                n: round(float(c), 4) for n, c in zip(names, model.coef_[0], strict=True)
            },
        },
        probabilities,
    )


def run_backtest(
    path: Path | str,
    fmt: BacktestFormat = "ibm-ar",
    split_date: date | None = None,
    policy: ScoringPolicy | None = None,
    thresholds: Sequence[int] = (0, 15, 30),
    fit: bool = False,
) -> BacktestReport:
    """Replay a payment history point in time and report out-of-time and in-sample metrics.

    Args:
        path: the invoice CSV.
        fmt: its layout ("ibm-ar" or "canonical").
        split_date: invoices issued before it are in-sample (for tuning and `--fit`), from it
            on out-of-time; default: the first of the month at the median issue date.
        policy: the scoring policy (default: the built-in model).
        thresholds: "paid more than N days late" outcomes to report.
        fit: also fit a logistic calibration on the in-sample period (needs scikit-learn).

    Returns:
        The report.

    Raises:
        ConfigError: the file cannot be read or has invalid rows.
        ConnectorError: `fit` without scikit-learn installed.
    """
    policy = policy or ScoringPolicy()
    rows = load_invoices(path, fmt)
    split = split_date or default_split(rows)
    scored = replay(rows, policy)
    before = [row for row in scored if row.invoice.issue_date < split]
    after = [row for row in scored if row.invoice.issue_date >= split]
    notes: list[str] = []
    if fmt == "ibm-ar":
        notes.append(IBM_NOTE)
    open_rows = sum(1 for row in rows if row.paid_date is None and not row.written_off)
    if open_rows:
        notes.append(f"{open_rows} open invoices have no outcome yet: used as history, not scored")
    fit_result: dict[str, Any] | None = None
    probabilities: list[float] | None = None
    if fit:
        fit_result, probabilities = _fit(before, after, thresholds)
    return BacktestReport(
        source=str(path),
        fmt=fmt,
        split_date=split,
        policy_fingerprint=policy_fingerprint(policy),
        thresholds=tuple(thresholds),
        invoices_total=len(rows),
        customers=len({row.customer_id for row in rows}),
        out_of_time=_period(after, thresholds, probabilities),
        in_sample=_period(before, thresholds),
        notes=notes,
        fit=fit_result,
    )


def _fmt(value: float | None, places: int = 3) -> str:
    return "-" if value is None else f"{value:.{places}f}"


def render_backtest(report: BacktestReport) -> RenderableType:
    """Tables for the terminal: metrics by period and threshold, then late share by band."""
    metrics = Table(
        title=f"Backtest of {Path(report.source).name} (split {report.split_date})",
        header_style="bold",
    )
    metrics.add_column("period")
    metrics.add_column("invoices", justify="right")
    metrics.add_column("late share", justify="right")
    for n in report.thresholds:
        metrics.add_column(f"AUC >{n}d", justify="right")
        metrics.add_column(f"KS >{n}d", justify="right")
    for name, period in (("out of time", report.out_of_time), ("in sample", report.in_sample)):
        cells = [name, str(period.invoices), _fmt(period.late_share)]
        for n in report.thresholds:
            cells += [_fmt(period.auc.get(str(n))), _fmt(period.ks.get(str(n)))]
        metrics.add_row(*cells)
    bands = Table(
        title="Out of time, by band (late = paid after the due date)", header_style="bold"
    )
    for column in ("band", "invoices", "late share", "late >15d", "mean score"):
        bands.add_column(column, justify="right" if column != "band" else "left")
    has_probability = report.fit is not None
    if has_probability:
        bands.add_column("mean P(late)", justify="right")
    for entry in report.out_of_time.bands:
        cells = [
            entry["band"],
            str(entry["count"]),
            f"{entry['late_share']:.1%}",
            f"{entry['late_share_15']:.1%}",
            f"{entry['mean_score']:.1f}",
        ]
        if has_probability:
            cells.append(f"{entry.get('mean_probability_late', 0):.1%}")
        bands.add_row(*cells)
    parts: list[RenderableType] = [metrics, bands]
    verdict = "rises monotonically" if report.out_of_time.bands_monotone else "is NOT monotone"
    parts.append(Text(f"Late share across the bands used {verdict}."))
    if report.fit is not None:
        fitted = report.fit["auc"].get("0")
        plain = report.fit["transparent_auc"].get("0")
        better = "beats" if report.fit["beats_transparent_score"] else "does not beat"
        parts.append(
            Text(
                f"Logistic calibration (fitted before the split): out-of-time AUC {_fmt(fitted)} {better} the transparent score's {_fmt(plain)}."
            )
        )
    for note in report.notes:
        parts.append(Text(f"Note: {note}", style="dim"))
    if report.out_of_time.invoices == 0:
        parts.append(Text("No settled invoices were issued on or after the split date."))
    return Group(*parts)
