"""Validation metrics for the backtest: AUC, KS, Brier, reliability and a customer-clustered bootstrap."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
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


class ClusteredBootstrap:
    """Resample whole customers with replacement: invoices of one customer are not independent.

    Each replicate draws as many customers as there are, with replacement, and weights every
    invoice by how often its customer was drawn. AUCs are computed from per-customer counts at
    each distinct score, so a replicate costs one pass over the (customer, score) pairs.
    """

    def __init__(self, customers: Sequence[int], replicates: int = 1000, seed: int = 17) -> None:
        ids = sorted(set(customers))
        rng = random.Random(seed)
        # The same draws for every statistic, so differences between policies are paired.
        self.draws = [Counter(rng.choices(ids, k=len(ids))) for _ in range(replicates)]

    @staticmethod
    def _table(
        clusters: Sequence[int], scores: Sequence[float], labels: Sequence[bool]
    ) -> tuple[int, dict[int, list[tuple[int, int, int]]]]:
        levels = {value: i for i, value in enumerate(sorted(set(scores)))}
        merged: dict[int, dict[int, list[int]]] = {}
        for cluster, score, label in zip(clusters, scores, labels, strict=True):
            cell = merged.setdefault(cluster, {}).setdefault(levels[score], [0, 0])
            cell[0 if label else 1] += 1
        table = {
            cluster: [(level, pos, neg) for level, (pos, neg) in cells.items()]
            for cluster, cells in merged.items()
        }
        return len(levels), table

    def _replicates(
        self, clusters: Sequence[int], scores: Sequence[float], labels: Sequence[bool]
    ) -> list[float | None]:
        size, table = self._table(clusters, scores, labels)
        out: list[float | None] = []
        for draw in self.draws:
            pos = [0.0] * size
            neg = [0.0] * size
            for cluster, weight in draw.items():
                for level, p, q in table.get(cluster, ()):
                    pos[level] += weight * p
                    neg[level] += weight * q
            out.append(_auc_from_groups(list(zip(pos, neg, strict=True))))
        return out

    def auc_interval(
        self,
        clusters: Sequence[int],
        scores: Sequence[float],
        labels: Sequence[bool],
        level: float = 0.95,
    ) -> Interval | None:
        """Percentile interval of the AUC; `clusters[i]` is invoice i's customer."""
        values = [v for v in self._replicates(clusters, scores, labels) if v is not None]
        return _interval(values, level)

    def gain_interval(
        self,
        clusters: Sequence[int],
        scores: Sequence[float],
        reference: Sequence[float],
        labels: Sequence[bool],
        level: float = 0.95,
    ) -> Interval | None:
        """Percentile interval of AUC(scores) - AUC(reference), paired on the same draws."""
        ours = self._replicates(clusters, scores, labels)
        theirs = self._replicates(clusters, reference, labels)
        gains = [
            a - b for a, b in zip(ours, theirs, strict=True) if a is not None and b is not None
        ]
        return _interval(gains, level)


def _interval(values: list[float], level: float) -> Interval | None:
    if not values:
        return None
    values.sort()
    tail = (1 - level) / 2
    low = values[int(tail * (len(values) - 1))]
    high = values[round((1 - tail) * (len(values) - 1))]
    return Interval(low, high, len(values))
