"""Validation metrics for the backtest: AUC, KS, Brier, reliability and a customer-clustered bootstrap.

Sorting and the bootstrap's weighted AUCs run in numpy (a 50 MB history has some 260,000
out-of-time invoices, each AUC needing a sort and each of ~100 replicates several passes), but
every AUC is still a count of pairs in whole numbers divided once, so the figures are the same
floats as those of the pure-Python code they replaced (`tests/unit/test_calibration_and_metrics.py`
checks them against the pairwise definition).
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


def _groups(scores: Sequence[float], labels: Sequence[bool]) -> list[tuple[int, int]]:
    """(positives, negatives) per distinct score, lowest score first."""
    values = np.asarray(scores, dtype=np.float64)
    if not len(values):
        return []
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    late = np.asarray(labels, dtype=np.int64)[order]
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    sizes = np.diff(np.append(starts, len(ordered)))
    pos = np.add.reduceat(late, starts)
    return list(zip(pos.tolist(), (sizes - pos).tolist(), strict=True))


def _auc_from_groups(groups: Sequence[tuple[float, float]]) -> float | None:
    total_pos = sum(p for p, _ in groups)
    total_neg = sum(q for _, q in groups)
    if total_pos <= 0 or total_neg <= 0:
        return None
    below = 0.0
    wins = 0.0
    for pos, neg in groups:
        wins += pos * (below + neg / 2)
        below += neg
    return wins / (total_pos * total_neg)


def auc(scores: Sequence[float], labels: Sequence[bool]) -> float | None:
    """Area under the ROC curve (Mann-Whitney, ties count half); None without both classes."""
    return _auc_from_groups(_groups(scores, labels))


def ks(scores: Sequence[float], labels: Sequence[bool]) -> float | None:
    """Kolmogorov-Smirnov: the largest gap between the bad and good score distributions."""
    groups = _groups(scores, labels)
    total_pos = sum(p for p, _ in groups)
    total_neg = sum(q for _, q in groups)
    if total_pos == 0 or total_neg == 0:
        return None
    best = bad = good = 0.0
    for pos, neg in groups:
        bad += pos
        good += neg
        best = max(best, abs(bad / total_pos - good / total_neg))
    return best


def brier(probabilities: Sequence[float], labels: Sequence[bool]) -> float | None:
    """Mean squared error of the predicted probabilities (0 = perfect)."""
    if not probabilities:
        return None
    return sum(
        (p - (1.0 if y else 0.0)) ** 2 for p, y in zip(probabilities, labels, strict=True)
    ) / len(probabilities)


def reliability(
    probabilities: Sequence[float], labels: Sequence[bool], groups: int = 10
) -> list[dict[str, float | int]]:
    """Predicted against observed late share in equal-count groups of the prediction (deciles).

    Args:
        probabilities: predicted probabilities.
        labels: outcomes.
        groups: number of groups.

    Returns:
        One dict per group: group (1 = lowest), invoices, predicted, observed, gap.
    """
    order = sorted(range(len(probabilities)), key=probabilities.__getitem__)
    n = len(order)
    out: list[dict[str, float | int]] = []
    start = 0
    for k in range(1, groups + 1):
        end = round(k * n / groups)
        members = order[start:end]
        start = end
        if not members:
            continue
        predicted = sum(probabilities[i] for i in members) / len(members)
        observed = sum(1 for i in members if labels[i]) / len(members)
        out.append(
            {
                "decile": k,
                "invoices": len(members),
                "predicted": round(predicted, 4),
                "observed": round(observed, 4),
                "gap": round(predicted - observed, 4),
            }
        )
    return out


@dataclass(frozen=True, slots=True)
class Interval:
    """A percentile bootstrap interval."""

    low: float
    high: float
    replicates: int

    def to_list(self) -> list[float]:
        """[low, high], rounded for JSON."""
        return [round(self.low, 4), round(self.high, 4)]


class _Prepared:
    """One statistic's invoices sorted by score, for fast weighted AUCs (see `_weighted_auc`)."""

    __slots__ = ("neg_clusters", "pos_clusters", "pos_hi", "pos_lo")

    def __init__(
        self, clusters: Sequence[int], scores: Sequence[float], labels: Sequence[bool]
    ) -> None:
        values = np.asarray(scores, dtype=np.float64)
        order = np.argsort(values, kind="stable")
        ordered = values[order]
        late = np.asarray(labels, dtype=bool)[order]
        owner = np.asarray(clusters, dtype=np.intp)[order]
        # Customers of the on-time and of the late invoices, in score order; for each late
        # invoice, how many on-time invoices score strictly lower (lo) and lower or equal (hi):
        # ties count half, as in the Mann-Whitney AUC.
        self.neg_clusters = owner[~late]
        self.pos_clusters = owner[late]
        on_time_scores = ordered[~late]
        late_scores = ordered[late]
        self.pos_lo = np.searchsorted(on_time_scores, late_scores, side="left")
        self.pos_hi = np.searchsorted(on_time_scores, late_scores, side="right")


def _weighted_auc(prepared: _Prepared, weights: npt.NDArray[np.int64]) -> float | None:
    """The AUC when each invoice counts as often as its customer was drawn.

    Whole numbers throughout (int64 holds 2 x late x on-time weights of far larger files), one
    division at the end.
    """
    cumulative = np.zeros(len(prepared.neg_clusters) + 1, dtype=np.int64)
    np.cumsum(weights[prepared.neg_clusters], out=cumulative[1:])
    positive = weights[prepared.pos_clusters]
    total_pos = int(positive.sum())
    total_neg = int(cumulative[-1])
    if total_pos == 0 or total_neg == 0:
        return None
    wins = int(positive @ (cumulative[prepared.pos_lo] + cumulative[prepared.pos_hi]))
    return wins / (2 * total_pos * total_neg)


class ClusteredBootstrap:
    """Resample whole customers with replacement: invoices of one customer are not independent.

    Each replicate draws as many customers as there are, with replacement, and weights every
    invoice by how often its customer was drawn. A replicate's draws come from its own seed, so
    every statistic (and both policies of a gain) sees the same draws: differences are paired.
    A weighted AUC costs a few numpy passes over the invoices, sorted once per statistic. The
    draws are `random.Random(seed * 100_003 + replicate).choices`, as before numpy, so recorded
    intervals are reproduced.
    """

    def __init__(self, customers: Sequence[int], replicates: int = 1000, seed: int = 17) -> None:
        self.customers = sorted(set(customers))
        self.index = {customer: i for i, customer in enumerate(self.customers)}
        self.replicates = replicates
        self.seed = seed

    def _weights(self) -> Iterator[npt.NDArray[np.int64]]:
        size = len(self.customers)
        for r in range(self.replicates):
            drawn = random.Random(self.seed * 100_003 + r).choices(range(size), k=size)
            yield np.bincount(np.asarray(drawn, dtype=np.intp), minlength=size)

    def prepare(
        self, clusters: Sequence[int], scores: Sequence[float], labels: Sequence[bool]
    ) -> _Prepared:
        """One statistic's invoices (`clusters[i]` is invoice i's customer), sorted once."""
        return _Prepared([self.index[c] for c in clusters], scores, labels)

    def intervals(
        self, statistics: Sequence[tuple[_Prepared, _Prepared | None]], level: float = 0.95
    ) -> list[Interval | None]:
        """Percentile intervals of several statistics from one pass over the replicates.

        Args:
            statistics: (ours, None) for an AUC, (ours, reference) for AUC(ours) - AUC(reference).
            level: the interval's coverage.

        Returns:
            One interval per statistic (None when no replicate had both classes).
        """
        values: list[list[float]] = [[] for _ in statistics]
        for weights in self._weights():
            for k, (ours, reference) in enumerate(statistics):
                a = _weighted_auc(ours, weights)
                if a is None:
                    continue
                if reference is None:
                    values[k].append(a)
                    continue
                b = _weighted_auc(reference, weights)
                if b is not None:
                    values[k].append(a - b)
        return [_interval(v, level) for v in values]

    def auc_interval(
        self,
        clusters: Sequence[int],
        scores: Sequence[float],
        labels: Sequence[bool],
        level: float = 0.95,
    ) -> Interval | None:
        """Percentile interval of the AUC; `clusters[i]` is invoice i's customer."""
        return self.intervals([(self.prepare(clusters, scores, labels), None)], level)[0]

    def gain_interval(
        self,
        clusters: Sequence[int],
        scores: Sequence[float],
        reference: Sequence[float],
        labels: Sequence[bool],
        level: float = 0.95,
    ) -> Interval | None:
        """Percentile interval of AUC(scores) - AUC(reference), paired on the same draws."""
        ours = self.prepare(clusters, scores, labels)
        theirs = self.prepare(clusters, reference, labels)
        return self.intervals([(ours, theirs)], level)[0]


def _interval(values: list[float], level: float) -> Interval | None:
    if not values:
        return None
    values.sort()
    tail = (1 - level) / 2
    low = values[int(tail * (len(values) - 1))]
    high = values[round((1 - tail) * (len(values) - 1))]
    return Interval(low, high, len(values))
