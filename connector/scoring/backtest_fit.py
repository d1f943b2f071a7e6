"""Fitting on a backtest's in-sample invoices known before the split: probability tables, levels."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

from connector.scoring.backtest_figures import band_figures, known_at_split
from connector.scoring.calibration import (
    MIN_SHIFT_CLASS,
    fit_probability_tables,
    level_shift,
    shift_table,
)
from connector.scoring.history import History
from connector.scoring.metrics import auc
from connector.scoring.policy import ProbabilityPolicy
from connector.scoring.replayed import Replay


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
    out["bands"], out["bands_monotone"] = band_figures(history, run, rows, labels, late_15)
    out["band_auc"] = auc([float(run.band[i]) for i in rows], labels)
    return out
