"""Point-in-time backtest: replay a payment history through the model; ranking, bands, calibration.

Each invoice is given the score its customer had on the invoice's issue date, with the features
`extract` gives (computed incrementally by `scoring.timeline`, equal to `extract` to the last
bit) and the same `rate` the sync uses, from what was known then: invoices issued earlier and
settled before that day are history, those settled later count as open (aged to that day), and
the invoice's own outcome and dispute flag are never used. A dispute on an earlier invoice is
taken as known once that invoice was settled (the files carry no dispute date), which errs
against the model rather than leaking the future.

Outcome "late by more than N days": paid more than N days after the due date; an invoice written
off, or still open more than N days past its due date when the file ends, counts as late; one
still open and not yet N days past due has no outcome yet (history only).

Periods. Invoices issued before the split date are in-sample, from it on out-of-time. Anything
fitted (`--fit`: the probability table; `bench/select_model.py`: the model) uses only in-sample
invoices whose outcome was already known the day before the split: due more than N days before
it, with the outcome as it stood then (a payment on or after the split is unknown, so such an
invoice counts as late by more than N days, which it then was).

Figures resting on fewer than 30 late or 30 on-time invoices are not shown (null in JSON): an AUC
on two late invoices says nothing. Intervals are percentile intervals of a bootstrap that resamples
customers, not invoices, because one customer's invoices are not independent.
"""

from __future__ import annotations

import itertools
import logging
import os
import pickle
import sys
import time
from array import array
from collections.abc import Iterable, Iterator, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from connector.scoring.backtest_figures import (
    MIN_BAND,
    MIN_CLASS,
    THRESHOLDS,
    BacktestReport,
    PeriodResult,
    evaluate,
    known_at_split,
    outcome,
    rounded,
)
from connector.scoring.backtest_fit import fit_probability, pre_split_figures, shift_to_recent_level
from connector.scoring.calibration import probability_late
from connector.scoring.curves import propose_curves
from connector.scoring.features import Features
from connector.scoring.history import (
    DISPUTED,
    WRITTEN_OFF,
    History,
    HistoryFormat,
    read_history,
)
from connector.scoring.policy import ScoringPolicy, policy_fingerprint
from connector.scoring.rating import FACTORS
from connector.scoring.rating_columns import rate_columns
from connector.scoring.replay_worker import Worker
from connector.scoring.replayed import NAN, Rated, Replay, assemble
from connector.scoring.timeline import CustomerTimeline

# What moved to `backtest_figures`, `backtest_fit` and `replayed` is still importable from here
# (the report, the CLI and the bench scripts import it from this module).
__all__ = [
    "MIN_BAND",
    "MIN_CLASS",
    "THRESHOLDS",
    "BacktestReport",
    "Decision",
    "PeriodResult",
    "Replay",
    "decisions",
    "default_split",
    "evaluate",
    "fit_curves",
    "fit_probability",
    "known_at_split",
    "outcome",
    "pre_split_figures",
    "rate_decisions",
    "replay",
    "run_backtest",
    "shift_to_recent_level",
]

BOOTSTRAP_REPLICATES = 1000
# Without an explicit count, large files get fewer replicates (at least 100): each one costs a few
# passes over the out-of-time invoices, and their intervals are narrow anyway.
BOOTSTRAP_WORK = 30_000_000
IBM_NOTE = (
    "IBM Watson Analytics 'Accounts Receivable' sample: simulated data, a plumbing test of the "
    "model, not evidence of real-world accuracy"
)
# Factors whose raw value rises with risk are ranked by value; the others by their points.
_RANKED_BY_VALUE = frozenset(
    {"DBT_HIGH", "LATE_SHARE", "PAST_DUE_NOW", "TREND_WORSE", "DISPUTES", "OVER_LIMIT"}
)
# From this many rows on, `replay` shares the work with a worker process (on a second core).
PARALLEL_ROWS = 100_000
# The worker's share of the rows: a little under half, as it first starts and imports (~0.5 s).
_WORKER_SHARE = 0.45
# How much longer than this process a worker may take before its part is rated here instead.
_WORKER_GRACE_SECONDS = 30.0
# Decisions rated together as numpy columns (their features are held until then).
_CHUNK = 1024

log = logging.getLogger("crm_risk.backtest")


Decision = tuple[list[int], Features]


def decisions(history: History, policy: ScoringPolicy) -> Iterator[Decision]:
    """The features of every (customer, issue day): one per distinct decision, with its rows.

    Features depend on the policy's windows, aging, hard-rule and limit settings only, so a
    search over weights, curves, bands or the probability table can extract them once and rate
    them many times (`rate_decisions`). Decisions are produced one customer at a time, each
    customer's days in order, by a `CustomerTimeline`: the features equal `extract` on the
    invoices issued before the day (the account created on its first invoice, no portfolio),
    without re-reading the whole history for every day.

    Args:
        history: the invoices.
        policy: the scoring policy.

    Yields:
        (rows decided that day, features) per customer and issue day.
    """
    for rows in _by_customer(history):
        at = np.asarray(rows, dtype=np.intp)
        flags = np.frombuffer(history.flags, dtype=np.uint8)[at]
        written_off = (flags & WRITTEN_OFF) != 0
        paid, due = np.asarray(history.paid)[at], np.asarray(history.due)[at]
        # A write-off without a date counts from the due date.
        settled = np.where(written_off, np.where(paid != 0, paid, due), paid)
        issued: list[int] = np.asarray(history.issue)[at].tolist()
        timeline = CustomerTimeline(
            np.asarray(history.amount)[at].tolist(),
            issued,
            due.tolist(),
            settled.tolist(),
            written_off.tolist(),
            ((flags & DISPUTED) != 0).tolist(),
            issued[0],
            policy,
        )
        start = 0
        while start < len(rows):
            when = issued[start]
            end = start + 1
            while end < len(rows) and issued[end] == when:
                end += 1
            yield rows[start:end], timeline.at(when)
            start = end


def _by_customer(history: History) -> Iterator[list[int]]:
    """Each customer's rows by issue day (file order within a day), customers by first row.

    Sorted with numpy (a stable sort on the customer's first row, then the issue day) rather
    than in per-customer Python lists, which cost more memory than the history itself.
    """
    if not len(history):
        return
    _, first, label = np.unique(
        np.asarray(history.customer), return_index=True, return_inverse=True
    )
    order = np.lexsort((np.asarray(history.issue), first[label]))
    key = first[label][order]
    del first, label
    edges = [0, *(np.flatnonzero(key[1:] != key[:-1]) + 1).tolist(), len(order)]
    del key
    for start, end in itertools.pairwise(edges):
        yield order[start:end].tolist()


def rate_decisions(decided: Iterable[Decision], policy: ScoringPolicy, rows: int) -> Replay:
    """Rate extracted decisions under a policy.

    Each decision is rated once and its figures kept per decision; they are spread onto the rows
    at the end with one numpy gather per column (the same floats, copied), rather than written
    row by row for every factor.

    Args:
        decided: from `decisions`.
        policy: the scoring policy (its windows must match the one the features came from).
        rows: the number of history rows.

    Returns:
        The replay.
    """
    rated = _rate(decided, policy, rows)
    everything = np.arange(rows, dtype=np.int64)
    return assemble(rows, [(everything, rated.owner, iter(rated.columns()))])


def _rate(decided: Iterable[Decision], policy: ScoringPolicy, rows: int) -> Rated:
    """Rate each decision once (`rate_decisions` before the figures are spread onto rows).

    Decisions are rated `_CHUNK` at a time, as numpy columns (`rating_columns`: the figures of
    `score_features`, bit for bit), so only a chunk's features are held at once.
    """
    owner = array("q", bytes(8 * rows))
    rated = Rated(
        owner, array("d", [0.0]), bytearray(1), array("d", [NAN]), bytearray(1),
        [array("d", [NAN]) for _ in FACTORS],
    )  # fmt: skip
    # A score has two decimals and the thin-file flag two values: few distinct probabilities.
    known: dict[tuple[float, bool], float] = {}
    chunk: list[Features] = []
    for members, features in decided:
        decision = len(rated.scores) + len(chunk)
        for i in members:
            owner[i] = decision
        chunk.append(features)
        if len(chunk) == _CHUNK:
            _rate_chunk(chunk, policy, rated, known)
            chunk = []
    _rate_chunk(chunk, policy, rated, known)
    return rated


def _rate_chunk(
    chunk: list[Features],
    policy: ScoringPolicy,
    rated: Rated,
    known: dict[tuple[float, bool], float],
) -> None:
    """Append the figures of a chunk of decisions to `rated` (`known`: probabilities so far)."""
    if not chunk:
        return
    rating = rate_columns(chunk, policy)
    probability = np.empty(len(chunk), dtype=np.float64)
    for thin in (False, True):
        where = rating.thin_file == thin
        scores, inverse = np.unique(rating.score[where], return_inverse=True)
        found = []
        for score in scores.tolist():
            p = known.get((score, thin))
            if p is None:
                late = probability_late(score, thin, policy.probability)
                p = known[(score, thin)] = NAN if late is None else late
            found.append(p)
        probability[where] = np.array(found, dtype=np.float64)[inverse]
    rated.scores.frombytes(rating.score.tobytes())
    rated.bands.extend(rating.band.astype(np.uint8).tobytes())
    rated.thin_file.extend(rating.thin_file.astype(np.uint8).tobytes())
    rated.probabilities.frombytes(probability.tobytes())
    for column, factor, (_, code) in zip(rated.factors, rating.factors, FACTORS, strict=True):
        ranked = code in _RANKED_BY_VALUE
        shown = factor.value if ranked else factor.points
        kept = factor.available & factor.value_known & (factor.points_known | ranked)
        column.frombytes(np.where(kept, shown, NAN).tobytes())


def replay(history: History, policy: ScoringPolicy, parallel: bool | None = None) -> Replay:
    """Score every invoice's customer as of the invoice's issue date (point in time).

    Customers are independent, so a large history is shared with one worker process (the
    replay is most of a large backtest's time): it rates about half of the customers while this
    process rates the rest. The figures are the same either way, to the last bit.

    Args:
        history: the invoices.
        policy: the scoring policy.
        parallel: share with a worker process; default: from `PARALLEL_ROWS` rows on, when
            this process may run on more than one core.

    Returns:
        One score, band, probability and set of factor inputs per history row.
    """
    rows = len(history)
    if parallel is None:
        parallel = rows >= PARALLEL_ROWS and _cores() > 1
    customer = np.asarray(history.customer, dtype=np.int64)
    per_customer = np.bincount(customer, minlength=1)
    # The worker takes the first customers up to its share; a customer is never split.
    theirs = np.cumsum(per_customer) <= _WORKER_SHARE * rows
    if not parallel or not theirs.any() or theirs.all():
        return rate_decisions(decisions(history, policy), policy, rows)
    mine_at = np.flatnonzero(~theirs[customer])
    theirs_at = np.flatnonzero(theirs[customer])
    del customer, per_customer, theirs
    worker = Worker.start(_part(history, theirs_at), policy, _WORKER_CODE)
    started = time.monotonic()
    try:
        mine = _rate(decisions(_part(history, mine_at), policy), policy, len(mine_at))
    except BaseException:
        if worker is not None:
            worker.process.kill()
            worker.process.wait()
        raise
    # A worker far slower than this process (stuck, or starved of CPU) is stopped, and its
    # part rated here: the same figures, later.
    patience = _WORKER_GRACE_SECONDS + 2 * (time.monotonic() - started)
    rated = worker.result(len(theirs_at), patience) if worker is not None else None
    if rated is None:
        # No worker (it could not start, or failed: logged): rate its part here.
        rated = _rate(decisions(_part(history, theirs_at), policy), policy, len(theirs_at))
    return assemble(
        rows,
        [
            (mine_at, mine.owner, mine.columns()),
            (theirs_at, rated.owner, rated.columns()),
        ],
    )


def _part(history: History, at: npt.NDArray[np.int64]) -> History:
    """The rows `at` of a history (in their order), with what `decisions` reads."""
    part = History(source=history.source, fmt=history.fmt, encoding=history.encoding)
    for name in ("customer", "issue", "due", "paid", "amount"):
        column: array[Any] = getattr(history, name)
        setattr(part, name, array(column.typecode, np.asarray(column)[at].tobytes()))
    part.flags = bytearray(np.frombuffer(history.flags, dtype=np.uint8)[at].tobytes())
    return part


_WORKER_CODE = (
    "import signal, sys\n"
    # Ctrl-C reaches the whole process group: the parent stops the worker itself.
    "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
    "if sys.argv[1] not in sys.path:\n"
    "    sys.path.insert(0, sys.argv[1])\n"
    "from connector.scoring.backtest import _serve_replay\n"
    "_serve_replay()\n"
)


def _cores() -> int:
    """How many cores this process may run on."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else os.cpu_count() or 1


def _serve_replay() -> None:
    """The worker process: rate the decisions of the history part on stdin, answer on stdout.

    The answer is the number of decisions, then the rows' decisions and every per-decision
    column as raw machine values (`Rated.buffers` order): no copy on either side.
    """
    policy, columns = pickle.load(sys.stdin.buffer)  # noqa: S301 - from the parent process
    part = History(source="", fmt="", encoding="", **columns)
    rows = len(part)
    del columns
    rated = _rate(decisions(part, policy), policy, rows)
    # The part is no longer needed: freed before answering, when the parent's memory peaks.
    del part
    out = sys.stdout.buffer
    out.write(array("q", [len(rated.scores)]).tobytes())
    for column in rated.buffers():
        out.write(memoryview(column))
    out.flush()


def fit_curves(
    history: History, run: Replay, split: date, policy: ScoringPolicy
) -> tuple[ScoringPolicy, Replay, dict[str, Any]]:
    """Propose points curves from the in-sample invoices known before the split (`--fit-curves`).

    Args:
        history: the invoices.
        run: the replay of the policy as it is.
        split: the split date.
        policy: the scoring policy.

    Returns:
        (the policy with the proposed curves, its replay, what was fitted with the pre-split
        figures of the score before and after).

    Raises:
        ValueError: no in-sample invoice has a known outcome.
    """
    rows, labels = known_at_split(history, range(len(history)), 0, split)
    if not rows:
        raise ValueError("no invoice before the split date has a known outcome to fit on")
    curves, proposals = propose_curves(run.factors, rows, labels, policy.curves)
    proposed = policy.model_copy(update={"curves": curves})
    proposed_run = replay(history, proposed)

    def figures(of: Replay) -> dict[str, Any]:
        found = pre_split_figures(history, of, split)
        return {
            "auc": {k: rounded(v) for k, v in found["auc"].items()},
            "band_auc": rounded(found["band_auc"]),
            "bands_monotone": found["bands_monotone"],
        }

    return (
        proposed,
        proposed_run,
        {
            "invoices": len(rows),
            "positives": sum(labels),
            "curves": [p.to_dict() for p in proposals],
            "pre_split": {"current": figures(run), "proposed": figures(proposed_run)},
        },
    )


def default_split(history: History) -> date:
    """The first day of the month of the median issue date (used without --split-date)."""
    dates = sorted(history.issue)
    middle = dates[len(dates) // 2]
    return date.fromordinal(middle).replace(day=1)


def _fit_table(
    history: History, run: Replay, split: date, policy: ScoringPolicy
) -> tuple[ScoringPolicy, Replay, dict[str, Any]]:
    """`run_backtest --fit`: the policy with a refitted table, its replay, what was fitted."""
    probability, used, late = fit_probability(history, run, split, policy.probability)
    fitted_policy = policy.model_copy(update={"probability": probability})
    return (
        fitted_policy,
        run.with_probability(probability),
        {
            "method": "score bins, then pool-adjacent-violators (monotone); in-sample invoices "
            "with outcomes known before the split",
            "window_days": probability.fit_window_days,
            "by_file": probability.fit_by_file,
            "level_window_days": probability.level_window_days,
            "level_shift": probability.level_shift,
            "invoices": used,
            "positives": late,
            "table": [list(row) for row in probability.table],
            "thin_file_table": [list(row) for row in probability.thin_file_table],
            "fitted_on": probability.fitted_on,
        },
    )


def _periods(
    history: History,
    run: Replay,
    split: date,
    thresholds: Sequence[int],
    bootstrap: int | None,
    reference: Replay | None,
) -> tuple[PeriodResult, PeriodResult]:
    """The out-of-time figures (with intervals and the reference) and the in-sample ones."""
    cut = split.toordinal()
    known_before = history.last_date() + 1
    before = [i for i in range(len(history)) if history.issue[i] < cut]
    after = [i for i in range(len(history)) if history.issue[i] >= cut]
    if bootstrap is None:
        bootstrap = min(BOOTSTRAP_REPLICATES, max(100, BOOTSTRAP_WORK // max(1, len(after))))
    out_of_time = evaluate(history, run, after, known_before, thresholds, bootstrap, reference)
    in_sample = evaluate(history, run, before, known_before, thresholds, details=False)
    return out_of_time, in_sample


def _input_figures(history: History) -> dict[str, Any]:
    """What the report says of the file: rows read, used and rejected, the first problems."""
    return {
        "rows_read": history.rows_read,
        "rows_used": len(history),
        "rows_rejected": history.rows_rejected,
        "problems": history.problems_total,
        "first_problems": [str(p) for p in history.problems],
        "errors_file": history.errors_file,
    }


def _notes(
    history: History,
    fmt: HistoryFormat,
    thresholds: Sequence[int],
    out_of_time: PeriodResult,
    in_sample: PeriodResult,
) -> list[str]:
    """The report's notes: the data's nature, undecided invoices, hidden figures, rejects."""
    notes: list[str] = []
    if fmt == "ibm-ar":
        notes.append(IBM_NOTE)
    undecided = len(history) - out_of_time.invoices - in_sample.invoices
    if undecided:
        notes.append(
            f"{undecided} invoices are still open and not yet past due when the file ends: "
            "history only, no outcome"
        )
    hidden = [str(n) for n in thresholds if out_of_time.auc.get(str(n)) is None]
    if hidden:
        notes.append(
            f"out of time, figures at > {', > '.join(hidden)} days are hidden: fewer than "
            f"{MIN_CLASS} late or on-time invoices"
        )
    if history.rows_rejected:
        notes.append(
            f"{history.rows_rejected} of {history.rows_read} rows were left out for data problems"
        )
    return notes


def run_backtest(
    path: Path | str,
    fmt: HistoryFormat = "ibm-ar",
    split_date: date | None = None,
    policy: ScoringPolicy | None = None,
    thresholds: Sequence[int] = THRESHOLDS,
    fit: bool = False,
    compare: ScoringPolicy | None = None,
    compare_name: str = "",
    errors_file: Path | str | None = None,
    bootstrap: int | None = None,
    curves: bool = False,
) -> BacktestReport:
    """Replay a payment history point in time and report out-of-time and in-sample figures.

    Args:
        path: the invoice CSV.
        fmt: its layout ("ibm-ar" or "canonical").
        split_date: invoices issued before it are in-sample, from it on out-of-time; default:
            the first of the month of the median issue date.
        policy: the scoring policy (default: the built-in model).
        thresholds: "paid more than N days late" outcomes to report.
        fit: refit the probability table on in-sample invoices known before the split, and
            report with it.
        compare: a reference policy: its AUCs, the gain and its customer-clustered interval.
        compare_name: how to name the reference in the report.
        errors_file: write every data problem there.
        bootstrap: bootstrap replicates for the intervals (0 = none; None = 1000, fewer for
            files with more than 30,000 out-of-time invoices, at least 100).
        curves: propose points curves from the in-sample invoices known before the split
            (`fit_curves`), refit the probability table for the new score (implies `fit`), and
            report with both.

    Returns:
        The report.

    Raises:
        DataError: the file is unusable (exit 65).
        ValueError: `fit` with no in-sample outcome known before the split.
    """
    policy = policy or ScoringPolicy()
    history = read_history(path, fmt, errors_file)
    split = split_date or default_split(history)
    run = replay(history, policy)
    fit_result: dict[str, Any] | None = None
    fitted_policy: ScoringPolicy | None = None
    curves_result: dict[str, Any] | None = None
    if curves:
        policy, run, curves_result = fit_curves(history, run, split, policy)
        fit = True  # the old table maps the old score: it is refitted for the new one
    if fit:
        fitted_policy, run, fit_result = _fit_table(history, run, split, policy)
    reference = replay(history, compare) if compare is not None else None
    out_of_time, in_sample = _periods(history, run, split, thresholds, bootstrap, reference)
    if out_of_time.compare is not None:
        out_of_time.compare["reference"] = compare_name or "reference policy"
        out_of_time.compare["reference_fingerprint"] = policy_fingerprint(compare or policy)
    return BacktestReport(
        source=str(path),
        fmt=fmt,
        encoding=history.encoding,
        split_date=split,
        known_until=date.fromordinal(history.last_date()),
        policy_fingerprint=policy_fingerprint(fitted_policy or policy),
        model_version=policy.model_version,
        thresholds=tuple(thresholds),
        invoices_total=len(history),
        customers=len(history.customers),
        out_of_time=out_of_time,
        in_sample=in_sample,
        input=_input_figures(history),
        notes=_notes(history, fmt, thresholds, out_of_time, in_sample),
        fit=fit_result,
        fitted_policy=fitted_policy,
        curves=curves_result,
    )
