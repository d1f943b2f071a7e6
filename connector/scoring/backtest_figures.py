"""The backtest's figures: outcomes, one period's ranking, bands and calibration, the report."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import numpy.typing as npt

from connector.scoring.history import WRITTEN_OFF, History
from connector.scoring.metrics import ClusteredBootstrap, auc, brier, ks, reliability
from connector.scoring.policy import BANDS, ScoringPolicy
from connector.scoring.rating import FACTORS
from connector.scoring.replayed import Replay

THRESHOLDS: tuple[int, ...] = (0, 15, 30)
# Smallest number of late and of on-time invoices behind a shown AUC, KS or interval.
MIN_CLASS = 30
# Bands with fewer invoices are listed but left out of the monotonicity check.
MIN_BAND = 30


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


def rounded(value: float | None, places: int = 4) -> float | None:
    """The value rounded for the report; None for none or NaN."""
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
            "late_share": rounded(self.late_share),
            "decided": dict(self.decided),
            "positives": dict(self.positives),
            "auc": {k: rounded(v) for k, v in self.auc.items()},
            "auc_ci": dict(self.auc_ci),
            "ks": {k: rounded(v) for k, v in self.ks.items()},
            "band_auc": rounded(self.band_auc),
            "bands": self.bands,
            "bands_monotone": self.bands_monotone,
            "factors": self.factors,
            "brier": rounded(self.brier),
            "calibration": self.calibration,
            "calibration_overall": self.calibration_overall,
            "segments": self.segments,
            "bootstrap_replicates": self.bootstrap_replicates,
        }
        if self.compare is not None:
            out["compare"] = self.compare
        return out


def band_figures(
    history: History, run: Replay, rows: Sequence[int], labels: Sequence[bool], rows_15: set[int]
) -> tuple[list[dict[str, Any]], bool]:
    """Per band: count, late shares, mean score and probability; whether late shares rise.

    Args:
        history: the invoices.
        run: the replay.
        rows: the rows with a known outcome.
        labels: their outcomes (late by more than 0 days).
        rows_15: the rows late by more than 15 days.

    Returns:
        (the band rows, whether the checked bands' late shares never fall).
    """
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
                "auc": rounded(auc([values[rows[j]] for j in kept], sub_labels)) if shown else None,
                "composite_auc": rounded(composite) if shown else None,
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
                "auc": rounded(auc([run.score[rows[j]] for j in members], sub_labels))
                if _shown(sub_labels)
                else None,
            }
        )
    return out


@dataclass(slots=True)
class _Ranking:
    """Per threshold of one period: decided and late invoices, AUC, KS and their intervals."""

    compare: dict[str, Any] | None
    positives: dict[str, int] = field(default_factory=dict)
    decided: dict[str, int] = field(default_factory=dict)
    auc: dict[str, float | None] = field(default_factory=dict)
    ks: dict[str, float | None] = field(default_factory=dict)
    auc_ci: dict[str, list[float] | None] = field(default_factory=dict)

    def add(
        self,
        history: History,
        run: Replay,
        rows: Sequence[int],
        known_before: int,
        thresholds: Sequence[int],
        sampler: ClusteredBootstrap | None,
        reference: Replay | None,
    ) -> set[int]:
        """Fill in every threshold's figures (intervals bootstrapped in one pass).

        Returns:
            The rows late by more than 15 days (empty without that threshold).
        """
        compare = self.compare
        customer = history.customer
        late_15: set[int] = set()
        # (where the interval goes, ours, reference) per statistic, all bootstrapped in one pass.
        pending: list[tuple[dict[str, Any], str, Any, Any]] = []
        for n in thresholds:
            kept, labels = _decided(history, rows, n, known_before)
            if n == 15:
                late_15 = {i for i, y in zip(kept, labels, strict=True) if y}
            key = str(n)
            self.positives[key] = sum(labels)
            self.decided[key] = len(labels)
            scores = [run.score[i] for i in kept]
            shown = _shown(labels)
            self.auc[key] = auc(scores, labels) if shown else None
            self.ks[key] = ks(scores, labels) if shown else None
            self.auc_ci[key] = None
            clusters = [customer[i] for i in kept]
            ours = sampler.prepare(clusters, scores, labels) if shown and sampler else None
            if ours is not None:
                pending.append((self.auc_ci, key, ours, None))
            if compare is not None and reference is not None:
                theirs = [reference.score[i] for i in kept]
                their_auc = auc(theirs, labels) if shown else None
                compare["auc"][key] = rounded(their_auc)
                mine = self.auc[key]
                compare["gain"][key] = (
                    rounded(mine - their_auc)
                    if mine is not None and their_auc is not None
                    else None
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
        return late_15


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
    base_rows, base_labels = _decided(history, rows, 0, known_before)
    sampler = (
        ClusteredBootstrap([history.customer[i] for i in base_rows], bootstrap)
        if bootstrap > 0 and base_rows
        else None
    )
    ranking = _Ranking(compare={"auc": {}, "gain": {}, "gain_ci": {}} if reference else None)
    late_15 = ranking.add(history, run, rows, known_before, thresholds, sampler, reference)
    bands, monotone = band_figures(history, run, base_rows, base_labels, late_15)
    shown = _shown(base_labels)
    band_auc = auc([float(run.band[i]) for i in base_rows], base_labels) if shown else None
    with_p = [j for j, i in enumerate(base_rows) if not math.isnan(run.probability[i])]
    probabilities = [run.probability[base_rows[j]] for j in with_p]
    p_labels = [base_labels[j] for j in with_p]
    overall: dict[str, float | None] = {
        "predicted": rounded(sum(probabilities) / len(probabilities)) if probabilities else None,
        "observed": rounded(sum(p_labels) / len(p_labels)) if p_labels else None,
    }
    return PeriodResult(
        invoices=len(base_rows),
        late_share=(sum(base_labels) / len(base_labels)) if base_labels else None,
        decided=ranking.decided,
        positives=ranking.positives,
        auc=ranking.auc,
        ks=ranking.ks,
        auc_ci=ranking.auc_ci,
        band_auc=band_auc,
        bands=bands,
        bands_monotone=monotone,
        factors=_factor_rows(run, base_rows, base_labels, ranking.auc.get("0")) if details else [],
        brier=brier(probabilities, p_labels) if probabilities else None,
        calibration=reliability(probabilities, p_labels) if probabilities else [],
        calibration_overall=overall,
        segments=_segments(history, run, base_rows, base_labels) if details else [],
        compare=ranking.compare,
        bootstrap_replicates=sampler.replicates if sampler is not None else 0,
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
