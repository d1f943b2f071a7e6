"""Validation metrics for the backtest: AUC, KS, Brier, reliability and a customer-clustered bootstrap."""

from __future__ import annotations

import itertools
import operator
import random
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass


def _groups(scores: Sequence[float], labels: Sequence[bool]) -> list[tuple[int, int]]:
    """(positives, negatives) per distinct score, lowest score first."""
    order = sorted(range(len(scores)), key=scores.__getitem__)
    out: list[tuple[int, int]] = []
    i = 0
    n = len(order)
    while i < n:
        value = scores[order[i]]
        pos = neg = 0
        while i < n and scores[order[i]] == value:
            if labels[order[i]]:
                pos += 1
            else:
                neg += 1
            i += 1
        out.append((pos, neg))
    return out


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
        order = sorted(range(len(scores)), key=scores.__getitem__)
        self.neg_clusters: list[int] = []
        self.pos_clusters: list[int] = []
        # For each late invoice: how many on-time invoices score strictly lower (lo) and lower or
        # equal (hi); ties count half, as in the Mann-Whitney AUC.
        self.pos_lo: list[int] = []
        self.pos_hi: list[int] = []
        i = 0
        n = len(order)
        while i < n:
            value = scores[order[i]]
            j = i
            while j < n and scores[order[j]] == value:
                j += 1
            group = order[i:j]
            lo = len(self.neg_clusters)
            self.neg_clusters.extend(clusters[k] for k in group if not labels[k])
            hi = len(self.neg_clusters)
            for k in group:
                if labels[k]:
                    self.pos_clusters.append(clusters[k])
                    self.pos_lo.append(lo)
                    self.pos_hi.append(hi)
            i = j


def _weighted_auc(prepared: _Prepared, weights: Sequence[int]) -> float | None:
    """The AUC when each invoice counts as often as its customer was drawn (C-level loops)."""
    cumulative = [0, *itertools.accumulate(map(weights.__getitem__, prepared.neg_clusters))]
    positive = list(map(weights.__getitem__, prepared.pos_clusters))
    total_pos = sum(positive)
    total_neg = cumulative[-1]
    if total_pos == 0 or total_neg == 0:
        return None
    below_twice: Iterator[int] = map(
        operator.add,
        map(cumulative.__getitem__, prepared.pos_lo),
        map(cumulative.__getitem__, prepared.pos_hi),
    )
    wins: int = sum(map(operator.mul, positive, below_twice))
    return wins / (2 * total_pos * total_neg)


class ClusteredBootstrap:
    """Resample whole customers with replacement: invoices of one customer are not independent.

    Each replicate draws as many customers as there are, with replacement, and weights every
    invoice by how often its customer was drawn. A replicate's draws come from its own seed, so
    every statistic (and both policies of a gain) sees the same draws: differences are paired.
    A weighted AUC costs a few C-level passes over the invoices, sorted once per statistic.
    """

    def __init__(self, customers: Sequence[int], replicates: int = 1000, seed: int = 17) -> None:
        self.customers = sorted(set(customers))
        self.index = {customer: i for i, customer in enumerate(self.customers)}
        self.replicates = replicates
        self.seed = seed

    def _weights(self) -> Iterator[list[int]]:
        size = len(self.customers)
        for r in range(self.replicates):
            drawn = Counter(random.Random(self.seed * 100_003 + r).choices(range(size), k=size))
            yield list(map(drawn.get, range(size), itertools.repeat(0)))

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
