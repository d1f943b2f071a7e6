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

import contextlib
import itertools
import logging
import math
import os
import pickle
import subprocess
import sys
import threading
import time
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from connector.scoring.calibration import (
    MIN_SHIFT_CLASS,
    fit_probability_tables,
    level_shift,
    probability_late,
    shift_table,
    under_thin_file_rule,
)
from connector.scoring.curves import propose_curves
from connector.scoring.features import Features
from connector.scoring.history import (
    DISPUTED,
    WRITTEN_OFF,
    History,
    HistoryFormat,
    read_history,
)
from connector.scoring.metrics import ClusteredBootstrap, auc, brier, ks, reliability
from connector.scoring.policy import BANDS, ProbabilityPolicy, ScoringPolicy, policy_fingerprint
from connector.scoring.rating import FACTORS, score_features
from connector.scoring.timeline import CustomerTimeline

THRESHOLDS: tuple[int, ...] = (0, 15, 30)
# Smallest number of late and of on-time invoices behind a shown AUC, KS or interval.
MIN_CLASS = 30
# Bands with fewer invoices are listed but left out of the monotonicity check.
MIN_BAND = 30
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
_NAN = float("nan")
# From this many rows on, `replay` shares the work with a worker process (on a second core).
PARALLEL_ROWS = 100_000
# The worker's share of the rows: a little under half, as it first starts and imports (~0.5 s).
_WORKER_SHARE = 0.45
# How much longer than this process a worker may take before its part is rated here instead.
_WORKER_GRACE_SECONDS = 30.0

log = logging.getLogger("crm_risk.backtest")


@dataclass(slots=True)
class Replay:
    """Per history row: the customer's score, band, probability and factor inputs on its issue day."""

    score: array[float]
    band: bytearray
    probability: array[float]
    # factor code -> input per row (NaN where the factor had no data).
    factors: dict[str, array[float]]
    # 1 where the thin-file rule applied to the customer (`calibration.under_thin_file_rule`).
    thin_file: bytearray

    def with_probability(self, probability: ProbabilityPolicy) -> Replay:
        """The same replay with probabilities from other tables."""
        values = array(
            "d",
            (
                _NAN if (p := probability_late(s, bool(t), probability)) is None else p
                for s, t in zip(self.score, self.thin_file, strict=True)
            ),
        )
        return Replay(self.score, self.band, values, self.factors, self.thin_file)


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
    by_customer: dict[int, list[int]] = {}
    for i, customer in enumerate(history.customer):
        by_customer.setdefault(customer, []).append(i)
    issue, due, paid, flags = history.issue, history.due, history.paid, history.flags
    for rows in by_customer.values():
        rows.sort(key=issue.__getitem__)
        settled = [
            (paid[i] or due[i]) if flags[i] & WRITTEN_OFF else paid[i] for i in rows
        ]  # fmt: skip
        issued = [issue[i] for i in rows]
        timeline = CustomerTimeline(
            [history.amount[i] for i in rows],
            issued,
            [due[i] for i in rows],
            settled,
            [bool(flags[i] & WRITTEN_OFF) for i in rows],
            [bool(flags[i] & DISPUTED) for i in rows],
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
    return _assemble(rows, [(everything, rated.owner, iter(rated.columns()))])


@dataclass(slots=True)
class _Rated:
    """Rated decisions: their figures, one entry per decision, and the decision of every row."""

    # Per row of the history rated: the index of its decision (0 = none: score 0, band A, NaN).
    owner: array[int]
    scores: array[float]
    bands: bytearray
    probabilities: array[float]
    thin_file: bytearray
    # Per factor in FACTORS order: the input `Replay.factors` shows (NaN = no data).
    factors: list[array[float]]

    def buffers(self) -> list[array[Any] | bytearray]:
        """The owner column, then the figures in `Replay` order (what a worker sends)."""
        return [
            self.owner,
            self.scores,
            self.bands,
            self.probabilities,
            self.thin_file,
            *self.factors,
        ]

    def columns(self) -> Iterator[array[float] | bytearray]:
        """The figures in `Replay` order, each dropped from here once handed out."""
        for name in ("scores", "bands", "probabilities", "thin_file"):
            column = getattr(self, name)
            setattr(self, name, None)
            yield column
        while self.factors:
            yield self.factors.pop(0)


def _rate(decided: Iterable[Decision], policy: ScoringPolicy, rows: int) -> _Rated:
    """Rate each decision once (`rate_decisions` before the figures are spread onto rows)."""
    tables = policy.probability
    codes = [code for _, code in FACTORS]
    by_value = [code in _RANKED_BY_VALUE for code in codes]
    owner = array("q", bytes(8 * rows))
    scores = array("d", [0.0])
    bands = bytearray(1)
    thin_file = bytearray(1)
    probabilities = array("d", [_NAN])
    columns = [array("d", [_NAN]) for _ in codes]
    appends = [column.append for column in columns]
    # A score has two decimals and the thin-file flag two values: few distinct probabilities.
    known: dict[tuple[float, bool], float] = {}
    for members, features in decided:
        score, band, raw = score_features(features, policy)
        thin = under_thin_file_rule(features, policy)
        probability = known.get((score, thin))
        if probability is None:
            found = probability_late(score, thin, tables)
            probability = known[(score, thin)] = _NAN if found is None else found
        decision = len(scores)
        for i in members:
            owner[i] = decision
        scores.append(score)
        bands.append(band)
        thin_file.append(thin)
        probabilities.append(probability)
        for append, ranked, (value, points, available) in zip(appends, by_value, raw, strict=True):
            shown = value if ranked else points
            append(_NAN if not available or value is None or shown is None else float(shown))
    return _Rated(owner, scores, bands, probabilities, thin_file, columns)


def _assemble(
    rows: int,
    parts: list[tuple[npt.NDArray[np.int64], array[int], Iterator[array[float] | bytearray]]],
) -> Replay:
    """The per-row replay from rated parts of the history.

    Each part is (its rows in the history, the decision of each of them, its figures in
    `Replay` order); the figures are spread one column at a time (each part's copy is dropped
    as soon as it is spread, so the per-decision and per-row forms never all coexist).
    """
    owners = [np.frombuffer(owner, dtype=np.int64) for _, owner, _ in parts]

    def spread(out: array[float] | bytearray, dtype: type[np.generic]) -> None:
        target = np.frombuffer(out, dtype=dtype)
        for (at, _, columns), owner in zip(parts, owners, strict=True):
            column = np.frombuffer(next(columns), dtype=dtype)
            if len(at) == rows:
                # The whole history (the rows in order): gathered straight into the result
                # (all indices are valid; "clip" keeps numpy from buffering the output).
                np.take(column, owner, out=target, mode="clip")
            else:
                target[at] = column[owner]

    numbers: list[array[float]] = []
    flags: list[bytearray] = []
    # `_Rated.columns` order: score, band, probability, thin-file flag, the factors.
    for kind in ("d", "b", "d", "b", *("d" for _ in FACTORS)):
        if kind == "b":
            flags.append(bytearray(rows))
            spread(flags[-1], np.uint8)
        else:
            numbers.append(array("d", bytes(8 * rows)))
            spread(numbers[-1], np.float64)
    codes = [code for _, code in FACTORS]
    return Replay(
        numbers[0], flags[0], numbers[1], dict(zip(codes, numbers[2:], strict=True)), flags[1]
    )


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
    worker = _Worker.start(_part(history, theirs_at), policy)
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
    return _assemble(
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


class _Worker:
    """A Python process rating part of a history's decisions (`_serve_replay`) over pipes."""

    def __init__(self, process: subprocess.Popen[bytes], feeding: threading.Thread) -> None:
        self.process = process
        self.feeding = feeding

    @classmethod
    def start(cls, part: History, policy: ScoringPolicy) -> _Worker | None:
        """Start a worker on `part`; None (logged) when no process can be started."""
        request = pickle.dumps(
            (policy, {name: getattr(part, name) for name in _PART_COLUMNS}),
            protocol=pickle.HIGHEST_PROTOCOL,
        )
        # The worker runs this very copy of the package (installed or a checkout): its folder
        # goes first on the worker's path unless the path has it already.
        top = str(Path(__file__).resolve().parents[2])
        try:
            process = subprocess.Popen(  # noqa: S603 - this interpreter, fixed code
                [sys.executable, "-c", _WORKER_CODE, top],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
        except OSError as exc:
            log.warning("backtest: no worker process (%s); replaying on one core", exc)
            return None
        stdin = process.stdin
        assert stdin is not None

        def feed() -> None:
            # From a thread: the worker reads only once it has imported, and this process
            # has its own part to rate meanwhile.
            with contextlib.suppress(OSError), stdin:
                stdin.write(request)

        feeding = threading.Thread(target=feed, name="backtest-worker-feed", daemon=True)
        feeding.start()
        return cls(process, feeding)

    def result(self, rows: int, patience: float) -> _Rated | None:
        """The worker's rated decisions for its `rows` rows, or None (logged) if it failed.

        A worker that has not answered within `patience` seconds is stopped (and has failed).
        """
        stdout = self.process.stdout
        assert stdout is not None
        rated: _Rated | None = None
        failure = ""
        deadline = threading.Timer(patience, self.process.kill)
        deadline.start()
        try:
            with stdout:
                count = array("q", bytes(8))
                _read_into(stdout, count)
                decided = count[0]
                rated = _Rated(
                    array("q", bytes(8 * rows)),
                    array("d", bytes(8 * decided)),
                    bytearray(decided),
                    array("d", bytes(8 * decided)),
                    bytearray(decided),
                    [array("d", bytes(8 * decided)) for _ in FACTORS],
                )
                for column in rated.buffers():
                    _read_into(stdout, column)
        except (EOFError, OSError, MemoryError, ValueError) as exc:
            rated, failure = None, f"{type(exc).__name__}: {exc}"
        finally:
            deadline.cancel()
        self.feeding.join()
        code = self.process.wait()
        if code == 0 and rated is not None:
            return rated
        log.warning(
            "backtest: the worker process failed (exit %s%s); replaying its part here",
            code,
            f", {failure}" if failure else "",
        )
        return None


def _read_into(stream: IO[bytes], buffer: array[Any] | bytearray) -> None:
    """Fill `buffer` from `stream` (EOFError if the stream ends first)."""
    view = memoryview(buffer).cast("B")
    while view:
        got = stream.readinto(view)  # type: ignore[attr-defined]
        if not got:
            raise EOFError("the worker's answer ended early")
        view = view[got:]


_PART_COLUMNS = ("customer", "issue", "due", "paid", "amount", "flags")
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
    column as raw machine values (`_Rated.buffers` order): no copy on either side.
    """
    policy, columns = pickle.load(sys.stdin.buffer)  # noqa: S301 - from the parent process
    part = History(source="", fmt="", encoding="", **columns)
    rated = _rate(decisions(part, policy), policy, len(part))
    out = sys.stdout.buffer
    out.write(array("q", [len(rated.scores)]).tobytes())
    for column in rated.buffers():
        out.write(memoryview(column))
    out.flush()


# -- outcomes -------------------------------------------------------------------------------------


def outcome(history: History, i: int, threshold: int, known_before: int) -> bool | None:
    """Whether invoice i was late by more than `threshold` days, as known before day `known_before`.

    Args:
        history: the invoices.
        i: the row.
        threshold: N in "more than N days late".
        known_before: the first day (ordinal) not yet known.

    Returns:
        True (late), False (paid within N days of the due date) or None (not yet known).
    """
    paid = history.paid[i]
    due = history.due[i]
    if history.flags[i] & WRITTEN_OFF:
        written = paid or due
        if written < known_before:
            return True
    elif 0 < paid < known_before:
        return paid - due > threshold
    # Unpaid on the last known day, so paid on `known_before` at the earliest: late by more than
    # N days once that day is more than N days after the due date.
    return True if known_before - due > threshold else None


def known_at_split(
    history: History, rows: Sequence[int], threshold: int, split: date
) -> tuple[list[int], list[bool]]:
    """In-sample rows whose outcome at `threshold` was known the day before the split, with it.

    Only invoices due more than `threshold` days before the split are kept, so every kept outcome
    is decided (paid by then, or already late): keeping those paid early but dropping those still
    open would bias the late share downwards.
    """
    cut = split.toordinal()
    at = np.asarray(rows, dtype=np.int64)
    at = at[
        (np.asarray(history.issue, dtype=np.int64)[at] < cut)
        & (np.asarray(history.due, dtype=np.int64)[at] + threshold < cut)
    ]
    return _decided(history, at, threshold, cut)


def _decided(
    history: History, rows: Sequence[int] | npt.NDArray[np.int64], threshold: int, known_before: int
) -> tuple[list[int], list[bool]]:
    """The rows with a known `outcome` and their labels: `outcome` on all rows at once."""
    at = np.asarray(rows, dtype=np.int64)
    paid = np.asarray(history.paid, dtype=np.int64)[at]
    due = np.asarray(history.due, dtype=np.int64)[at]
    written_off = (np.frombuffer(history.flags, dtype=np.uint8)[at] & WRITTEN_OFF) != 0
    # The branches of `outcome`: written off by then; paid by then; otherwise still unpaid.
    off_known = written_off & (np.where(paid != 0, paid, due) < known_before)
    paid_known = ~written_off & (paid > 0) & (paid < known_before)
    late_unpaid = known_before - due > threshold
    labels = np.where(off_known, True, np.where(paid_known, paid - due > threshold, late_unpaid))
    known = off_known | paid_known | late_unpaid
    return at[known].tolist(), labels[known].tolist()


# -- period figures -------------------------------------------------------------------------------


def _r(value: float | None, places: int = 4) -> float | None:
    return None if value is None or math.isnan(value) else round(value, places)


def _shown(labels: Sequence[bool]) -> bool:
    positives = sum(labels)
    return positives >= MIN_CLASS and len(labels) - positives >= MIN_CLASS


@dataclass(slots=True)
class PeriodResult:
    """Figures over one period (out-of-time or in-sample)."""

    invoices: int
    late_share: float | None
    # Per threshold: invoices with a known outcome, and how many of them were late.
    decided: dict[str, int]
    positives: dict[str, int]
    auc: dict[str, float | None]
    ks: dict[str, float | None]
    auc_ci: dict[str, list[float] | None]
    band_auc: float | None
    bands: list[dict[str, Any]]
    bands_monotone: bool
    factors: list[dict[str, Any]]
    brier: float | None
    calibration: list[dict[str, float | int]]
    calibration_overall: dict[str, float | None]
    segments: list[dict[str, Any]]
    compare: dict[str, Any] | None = None
    bootstrap_replicates: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        out: dict[str, Any] = {
            "invoices": self.invoices,
            "late_share": _r(self.late_share),
            "decided": dict(self.decided),
            "positives": dict(self.positives),
            "auc": {k: _r(v) for k, v in self.auc.items()},
            "auc_ci": dict(self.auc_ci),
            "ks": {k: _r(v) for k, v in self.ks.items()},
            "band_auc": _r(self.band_auc),
            "bands": self.bands,
            "bands_monotone": self.bands_monotone,
            "factors": self.factors,
            "brier": _r(self.brier),
            "calibration": self.calibration,
            "calibration_overall": self.calibration_overall,
            "segments": self.segments,
            "bootstrap_replicates": self.bootstrap_replicates,
        }
        if self.compare is not None:
            out["compare"] = self.compare
        return out


def _bands(
    history: History, run: Replay, rows: Sequence[int], labels: Sequence[bool], rows_15: set[int]
) -> tuple[list[dict[str, Any]], bool]:
    late_15 = rows_15
    entries: list[dict[str, Any]] = []
    checked: list[float] = []
    for k, band in enumerate(BANDS):
        members = [j for j, i in enumerate(rows) if run.band[i] == k]
        if not members:
            continue
        count = len(members)
        late = sum(1 for j in members if labels[j]) / count
        probabilities = [run.probability[rows[j]] for j in members]
        known = [p for p in probabilities if not math.isnan(p)]
        entry: dict[str, Any] = {
            "band": band,
            "count": count,
            "late_share": round(late, 4),
            "late_share_15": round(sum(1 for j in members if rows[j] in late_15) / count, 4),
            "mean_score": round(sum(run.score[rows[j]] for j in members) / count, 2),
            "mean_probability_late": round(sum(known) / len(known), 4) if known else None,
            "checked": count >= MIN_BAND,
        }
        entries.append(entry)
        if count >= MIN_BAND:
            checked.append(late)
    monotone = all(b >= a for a, b in itertools.pairwise(checked))
    return entries, monotone


def _factor_rows(
    run: Replay, rows: Sequence[int], labels: Sequence[bool], overall: float | None
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for _, code in FACTORS:
        values = run.factors[code]
        kept = [j for j, i in enumerate(rows) if not math.isnan(values[i])]
        if not kept:
            continue
        sub_labels = [labels[j] for j in kept] if len(kept) < len(rows) else list(labels)
        shown = _shown(sub_labels)
        composite = (
            overall
            if len(kept) == len(rows)
            else auc([run.score[rows[j]] for j in kept], sub_labels)
        )
        out.append(
            {
                "factor": code,
                "invoices": len(kept),
                "positives": sum(sub_labels),
                "auc": _r(auc([values[rows[j]] for j in kept], sub_labels)) if shown else None,
                "composite_auc": _r(composite) if shown else None,
            }
        )
    return out


def _segments(
    history: History, run: Replay, rows: Sequence[int], labels: Sequence[bool]
) -> list[dict[str, Any]]:
    if not history.channels:
        return []
    out: list[dict[str, Any]] = []
    for k, value in enumerate(history.channels):
        members = [j for j, i in enumerate(rows) if history.channel[i] == k]
        if not members:
            continue
        sub_labels = [labels[j] for j in members]
        probabilities = [run.probability[rows[j]] for j in members]
        known = [p for p in probabilities if not math.isnan(p)]
        out.append(
            {
                "segment": "channel",
                "value": value,
                "invoices": len(members),
                "positives": sum(sub_labels),
                "late_share": round(sum(sub_labels) / len(members), 4),
                "mean_probability_late": round(sum(known) / len(known), 4) if known else None,
                "auc": _r(auc([run.score[rows[j]] for j in members], sub_labels))
                if _shown(sub_labels)
                else None,
            }
        )
    return out


def evaluate(
    history: History,
    run: Replay,
    rows: Sequence[int],
    known_before: int,
    thresholds: Sequence[int] = THRESHOLDS,
    bootstrap: int = 0,
    reference: Replay | None = None,
    details: bool = True,
) -> PeriodResult:
    """Every figure of one period.

    Args:
        history: the invoices.
        run: the replay of the policy under test.
        rows: the period's rows.
        known_before: outcomes as known before this day (ordinal).
        thresholds: the N of "more than N days late".
        bootstrap: customer-clustered bootstrap replicates for intervals (0 = none).
        reference: a reference policy's replay, for the gain and its interval.
        details: also each factor alone and the segments (out of time; in sample they are
            left out to save time on large files).

    Returns:
        The period's figures.
    """
    positives: dict[str, int] = {}
    decided: dict[str, int] = {}
    aucs: dict[str, float | None] = {}
    kss: dict[str, float | None] = {}
    cis: dict[str, list[float] | None] = {}
    compare: dict[str, Any] | None = {"auc": {}, "gain": {}, "gain_ci": {}} if reference else None
    base_rows, base_labels = _decided(history, rows, 0, known_before)
    sampler = (
        ClusteredBootstrap([history.customer[i] for i in base_rows], bootstrap)
        if bootstrap > 0 and base_rows
        else None
    )
    customer = history.customer
    late_15: set[int] = set()
    # (where the interval goes, ours, reference) per statistic, all bootstrapped in one pass.
    pending: list[tuple[dict[str, Any], str, Any, Any]] = []
    for n in thresholds:
        kept, labels = _decided(history, rows, n, known_before)
        if n == 15:
            late_15 = {i for i, y in zip(kept, labels, strict=True) if y}
        key = str(n)
        positives[key] = sum(labels)
        decided[key] = len(labels)
        scores = [run.score[i] for i in kept]
        shown = _shown(labels)
        aucs[key] = auc(scores, labels) if shown else None
        kss[key] = ks(scores, labels) if shown else None
        cis[key] = None
        clusters = [customer[i] for i in kept]
        ours = sampler.prepare(clusters, scores, labels) if shown and sampler else None
        if ours is not None:
            pending.append((cis, key, ours, None))
        if compare is not None and reference is not None:
            theirs = [reference.score[i] for i in kept]
            their_auc = auc(theirs, labels) if shown else None
            compare["auc"][key] = _r(their_auc)
            mine = aucs[key]
            compare["gain"][key] = (
                _r(mine - their_auc) if mine is not None and their_auc is not None else None
            )
            compare["gain_ci"][key] = None
            if ours is not None and sampler is not None:
                pending.append(
                    (compare["gain_ci"], key, ours, sampler.prepare(clusters, theirs, labels))
                )
    if sampler is not None and pending:
        found = sampler.intervals([(ours, theirs) for _, _, ours, theirs in pending])
        for (target, key, _, _), interval in zip(pending, found, strict=True):
            target[key] = interval.to_list() if interval else None
    bands, monotone = _bands(history, run, base_rows, base_labels, late_15)
    shown = _shown(base_labels)
    band_auc = auc([float(run.band[i]) for i in base_rows], base_labels) if shown else None
    with_p = [j for j, i in enumerate(base_rows) if not math.isnan(run.probability[i])]
    probabilities = [run.probability[base_rows[j]] for j in with_p]
    p_labels = [base_labels[j] for j in with_p]
    overall: dict[str, float | None] = {
        "predicted": _r(sum(probabilities) / len(probabilities)) if probabilities else None,
        "observed": _r(sum(p_labels) / len(p_labels)) if p_labels else None,
    }
    return PeriodResult(
        invoices=len(base_rows),
        late_share=(sum(base_labels) / len(base_labels)) if base_labels else None,
        decided=decided,
        positives=positives,
        auc=aucs,
        ks=kss,
        auc_ci=cis,
        band_auc=band_auc,
        bands=bands,
        bands_monotone=monotone,
        factors=_factor_rows(run, base_rows, base_labels, aucs.get("0")) if details else [],
        brier=brier(probabilities, p_labels) if probabilities else None,
        calibration=reliability(probabilities, p_labels) if probabilities else [],
        calibration_overall=overall,
        segments=_segments(history, run, base_rows, base_labels) if details else [],
        compare=compare,
        bootstrap_replicates=sampler.replicates if sampler is not None else 0,
    )


# -- fitting --------------------------------------------------------------------------------------


def fit_probability(
    history: History, run: Replay, split: date, method: ProbabilityPolicy | None = None
) -> tuple[ProbabilityPolicy, int, int]:
    """Fit the score-to-probability table(s) on in-sample invoices known before the split.

    The method is the policy's: invoices issued in the last `fit_window_days` before the split
    (0 = all) whose outcome was known the day before it; one table, or with `fit_by_file` a
    thin-file table and an established one (`calibration.fit_probability_tables`); then, with
    `level_window_days`, the tables' log-odds moved to the late share of the invoices issued in
    that last window (outcomes known the day before the split as well; `shift_to_recent_level`).

    Args:
        history: the invoices.
        run: the replay of the policy (scores and thin-file flags).
        split: the split date.
        method: the probability settings whose fitting method to use (default: the built-in).

    Returns:
        (the probability settings with the new tables, invoices used, of which late).

    Raises:
        ValueError: no in-sample invoice has a known outcome.
    """
    method = method or ProbabilityPolicy()
    rows, labels = known_at_split(history, range(len(history)), 0, split)
    known_rows, known_labels = rows, labels
    window = method.fit_window_days
    if window:
        since = split.toordinal() - window
        kept = [j for j, i in enumerate(rows) if history.issue[i] >= since]
        rows, labels = [rows[j] for j in kept], [labels[j] for j in kept]
    if not rows:
        raise ValueError("no invoice before the split date has a known outcome to fit on")
    thin = [bool(run.thin_file[i]) for i in rows]
    table, thin_table = fit_probability_tables(
        [run.score[i] for i in rows], labels, thin, method.fit_by_file
    )
    first = date.fromordinal(min(history.issue[i] for i in rows))
    last = date.fromordinal(max(history.issue[i] for i in rows))
    fitted_on = (
        f"{Path(history.source).name}: {len(rows)} invoices issued {first}..{last} "
        f"with outcomes known on {split}, {sum(labels)} paid late"
    )
    if method.fit_by_file:
        fitted_on += f" ({sum(thin)} of them under the thin-file rule, with their own table)"
    fitted = method.model_copy(
        update={"table": table, "thin_file_table": thin_table, "level_shift": 0.0}
    )
    if method.level_window_days:
        fitted, note = shift_to_recent_level(
            fitted,
            history,
            run,
            [(i, y) for i, y in zip(known_rows, known_labels, strict=True)],
            split.toordinal() - method.level_window_days,
        )
        fitted_on += note
    return fitted.model_copy(update={"fitted_on": fitted_on}), len(rows), sum(labels)


def shift_to_recent_level(
    fitted: ProbabilityPolicy,
    history: History,
    run: Replay,
    known: Sequence[tuple[int, bool]],
    since: int,
) -> tuple[ProbabilityPolicy, str]:
    """The fitted tables moved to the late share of the invoices issued on or after `since`.

    Args:
        fitted: the probability settings with freshly fitted tables.
        history: the invoices.
        run: the replay (scores and thin-file flags).
        known: (row, late) of the invoices whose outcome was known at the split.
        since: the first issue day (ordinal) of the recent window.

    Returns:
        (the settings with shifted tables and `level_shift` set, a note for `fitted_on`).
    """
    recent = [(i, y) for i, y in known if history.issue[i] >= since]
    shift = level_shift(
        [run.score[i] for i, _ in recent],
        [y for _, y in recent],
        [bool(run.thin_file[i]) for i, _ in recent],
        fitted,
    )
    first = date.fromordinal(since)
    if shift is None:
        return fitted, (
            f"; no level shift: the {len(recent)} invoices issued from {first} on hold fewer "
            f"than {MIN_SHIFT_CLASS} late or on time"
        )
    shifted = fitted.model_copy(
        update={
            "table": shift_table(fitted.table, shift),
            "thin_file_table": shift_table(fitted.thin_file_table, shift),
            "level_shift": shift,
        }
    )
    late = sum(1 for _, y in recent if y)
    return shifted, (
        f"; log-odds shifted {shift:+.4f} to the late share of the {len(recent)} invoices "
        f"issued from {first} on ({late} late)"
    )


def pre_split_figures(
    history: History, run: Replay, split: date, thresholds: Sequence[int] = (0, 15)
) -> dict[str, Any]:
    """AUC and bands on in-sample invoices known before the split: the figures tuning may use.

    Args:
        history: the invoices (the full file, or one already censored at the split).
        run: the replay.
        split: the split date.
        thresholds: the N of "more than N days late".

    Returns:
        {"auc": {N: ...}, "invoices": {N: ...}, "positives": {N: ...}, "bands": [...],
        "bands_monotone": bool, "band_auc": ...}.
    """
    out: dict[str, Any] = {"auc": {}, "invoices": {}, "positives": {}}
    everything = range(len(history))
    for n in thresholds:
        rows, labels = known_at_split(history, everything, n, split)
        out["auc"][str(n)] = auc([run.score[i] for i in rows], labels)
        out["invoices"][str(n)] = len(rows)
        out["positives"][str(n)] = sum(labels)
    rows, labels = known_at_split(history, everything, 0, split)
    late_15 = set(
        i for i, y in zip(*known_at_split(history, everything, 15, split), strict=True) if y
    )
    out["bands"], out["bands_monotone"] = _bands(history, run, rows, labels, late_15)
    out["band_auc"] = auc([float(run.band[i]) for i in rows], labels)
    return out


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
            "auc": {k: _r(v) for k, v in found["auc"].items()},
            "band_auc": _r(found["band_auc"]),
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


# -- the report -----------------------------------------------------------------------------------


@dataclass(slots=True)
class BacktestReport:
    """What `crm-risk backtest` prints: out-of-time figures first, in-sample beside them."""

    source: str
    fmt: str
    encoding: str
    split_date: date
    known_until: date
    policy_fingerprint: str
    model_version: str
    thresholds: tuple[int, ...]
    invoices_total: int
    customers: int
    out_of_time: PeriodResult
    in_sample: PeriodResult
    input: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    fit: dict[str, Any] | None = None
    fitted_policy: ScoringPolicy | None = None
    curves: dict[str, Any] | None = None

    @property
    def invoices_scored(self) -> int:
        """Out-of-time invoices with a known outcome."""
        return self.out_of_time.invoices

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form: the out-of-time figures at the top level, in-sample nested."""
        oot = self.out_of_time.to_dict()
        out: dict[str, Any] = {
            "source": self.source,
            "format": self.fmt,
            "encoding": self.encoding,
            "input": self.input,
            "split_date": self.split_date.isoformat(),
            "known_until": self.known_until.isoformat(),
            "policy_fingerprint": self.policy_fingerprint,
            "model_version": self.model_version,
            "invoices_total": self.invoices_total,
            "customers": self.customers,
            "invoices_scored": self.invoices_scored,
            "min_class_shown": MIN_CLASS,
        }
        out.update({key: value for key, value in oot.items() if key != "invoices"})
        out["in_sample"] = self.in_sample.to_dict()
        out["fit"] = self.fit
        out["curves"] = self.curves
        out["notes"] = list(self.notes)
        return out


def default_split(history: History) -> date:
    """The first day of the month of the median issue date (used without --split-date)."""
    dates = sorted(history.issue)
    middle = dates[len(dates) // 2]
    return date.fromordinal(middle).replace(day=1)


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
        probability, used, late = fit_probability(history, run, split, policy.probability)
        fitted_policy = policy.model_copy(update={"probability": probability})
        run = run.with_probability(probability)
        fit_result = {
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
        }
    reference = replay(history, compare) if compare is not None else None
    cut = split.toordinal()
    known_before = history.last_date() + 1
    before = [i for i in range(len(history)) if history.issue[i] < cut]
    after = [i for i in range(len(history)) if history.issue[i] >= cut]
    if bootstrap is None:
        bootstrap = min(BOOTSTRAP_REPLICATES, max(100, BOOTSTRAP_WORK // max(1, len(after))))
    out_of_time = evaluate(history, run, after, known_before, thresholds, bootstrap, reference)
    if out_of_time.compare is not None:
        out_of_time.compare["reference"] = compare_name or "reference policy"
        out_of_time.compare["reference_fingerprint"] = policy_fingerprint(compare or policy)
    in_sample = evaluate(history, run, before, known_before, thresholds, details=False)
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
    return BacktestReport(
        source=str(path),
        fmt=fmt,
        encoding=history.encoding,
        split_date=split,
        known_until=date.fromordinal(known_before - 1),
        policy_fingerprint=policy_fingerprint(fitted_policy or policy),
        model_version=policy.model_version,
        thresholds=tuple(thresholds),
        invoices_total=len(history),
        customers=len(history.customers),
        out_of_time=out_of_time,
        in_sample=in_sample,
        input={
            "rows_read": history.rows_read,
            "rows_used": len(history),
            "rows_rejected": history.rows_rejected,
            "problems": history.problems_total,
            "first_problems": [str(p) for p in history.problems],
            "errors_file": history.errors_file,
        },
        notes=notes,
        fit=fit_result,
        fitted_policy=fitted_policy,
        curves=curves_result,
    )
