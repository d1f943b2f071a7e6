"""`probability_late`: a monotone score-to-probability table, its fit (binned isotonic) and use."""

from __future__ import annotations

import bisect
from collections.abc import Sequence

from connector.scoring.policy import ProbabilityTable

# Rows of the fitted table: about ten score bins, so the table stays readable and each row rests
# on enough invoices (about a hundred on the IBM sample) to be more than noise.
DEFAULT_BINS = 10


def probability_for(score: float, table: ProbabilityTable) -> float | None:
    """The probability the table gives a score: linear between rows, flat beyond the ends.

    Args:
        score: the 0-100 risk score.
        table: (score, probability) rows with increasing scores and non-decreasing probabilities.

    Returns:
        The probability (0-1), or None for an empty table.
    """
    if not table:
        return None
    if score <= table[0][0]:
        return table[0][1]
    if score >= table[-1][0]:
        return table[-1][1]
    i = bisect.bisect_right([x for x, _ in table], score) - 1
    (x0, p0), (x1, p1) = table[i], table[i + 1]
    return p0 + (p1 - p0) * (score - x0) / (x1 - x0)


def _bins(scores: Sequence[float], order: Sequence[int], bins: int) -> list[list[int]]:
    """Indices cut into about `bins` groups of equal size by score, never splitting a tie."""
    groups: list[list[int]] = []
    n = len(order)
    start = 0
    for k in range(1, bins + 1):
        end = round(k * n / bins)
        if end <= start:
            continue
        # Extend the bin to the end of its tie group: equal scores must get equal probabilities.
        while end < n and scores[order[end]] == scores[order[end - 1]]:
            end += 1
        groups.append(list(order[start:end]))
        start = end
        if start >= n:
            break
    return groups


def fit_probability_table(
    scores: Sequence[float], outcomes: Sequence[bool], bins: int = DEFAULT_BINS
) -> ProbabilityTable:
    """Fit the monotone map: score bins, then pool-adjacent-violators over the bins' late rates.

    Each bin's rate is (late + 0.5) / (invoices + 1), so a bin without a late invoice says "rare",
    not "never". Each output row is (mean score of a pooled block, its rate).

    Args:
        scores: the scores the invoices' customers had when each invoice was issued.
        outcomes: True where the invoice was paid late.
        bins: score bins before pooling.

    Returns:
        The table (empty without invoices).
    """
    if not scores:
        return ()
    order = sorted(range(len(scores)), key=scores.__getitem__)
    # Blocks: [sum of scores, late count, invoices]; pooled while a block's rate is below the
    # previous one's (pool-adjacent-violators on weighted rates).
    blocks: list[list[float]] = []
    for group in _bins(scores, order, bins):
        blocks.append(
            [sum(scores[i] for i in group), float(sum(1 for i in group if outcomes[i])), len(group)]
        )
        while len(blocks) > 1 and _rate(blocks[-1]) <= _rate(blocks[-2]):
            last = blocks.pop()
            for j in range(3):
                blocks[-1][j] += last[j]
    table: list[tuple[float, float]] = []
    for total, late, count in blocks:
        row = (round(total / count, 2), round(_rate([total, late, count]), 4))
        if table and row[0] <= table[-1][0]:
            # Two blocks whose mean scores round alike: keep the later (higher) rate only.
            table[-1] = (table[-1][0], row[1])
            continue
        table.append(row)
    return tuple(table)


def _rate(block: Sequence[float]) -> float:
    return (block[1] + 0.5) / (block[2] + 1)
