"""`probability_late`: monotone score-to-probability tables, their fit (binned isotonic) and use.

There may be two tables: one for accounts under the thin-file rule (fewer than
`thin_file.cap_below_invoices` settled invoices in the trailing year and no external score,
including accounts with no history) and one for the rest. The thin-file cap and the no-history
score put such accounts at band B or worse whatever their behaviour, so the same score does not
mean the same chance of paying late in both groups; each table is still monotone in the score.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

from connector.scoring.features import Features
from connector.scoring.policy import ProbabilityPolicy, ProbabilityTable, ScoringPolicy

# Rows of the fitted table: about ten score bins, so the table stays readable and each row rests
# on enough invoices (about a hundred on the IBM sample) to be more than noise.
DEFAULT_BINS = 10
# A group gets its own table only when it has this many fitting invoices, and this many late and
# this many on time (the backtest's smallest class behind a shown figure); else the pooled table.
MIN_GROUP_INVOICES = 100
MIN_GROUP_CLASS = 30


def under_thin_file_rule(features: Features, policy: ScoringPolicy) -> bool:
    """Whether the thin-file rule applies to the account: too few settled invoices, no agency score.

    Args:
        features: the account's features.
        policy: the scoring policy (`thin_file.cap_below_invoices`).

    Returns:
        True when the account's `probability_late` comes from the thin-file table (if there is one).
    """
    return (
        features.settled_count < policy.thin_file.cap_below_invoices
        and features.external_risk is None
    )


def probability_late(score: float, thin_file: bool, probability: ProbabilityPolicy) -> float | None:
    """The probability of paying late for a score, from the account's group table.

    Args:
        score: the 0-100 risk score.
        thin_file: whether the thin-file rule applies (`under_thin_file_rule`).
        probability: the policy's tables.

    Returns:
        The probability (0-1), or None when the policy has no table.
    """
    if thin_file and probability.thin_file_table:
        return probability_for(score, probability.thin_file_table)
    return probability_for(score, probability.table)


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


def fit_probability_tables(
    scores: Sequence[float],
    outcomes: Sequence[bool],
    thin_file: Sequence[bool],
    by_file: bool,
    bins: int = DEFAULT_BINS,
) -> tuple[ProbabilityTable, ProbabilityTable]:
    """Fit the table, or the thin-file and established tables, on the same invoices.

    Args:
        scores: the scores the invoices' customers had when each invoice was issued.
        outcomes: True where the invoice was paid late.
        thin_file: per invoice, whether the thin-file rule applied to its customer then.
        by_file: fit one table per group; False = one table for everyone.
        bins: score bins before pooling.

    Returns:
        (table, thin-file table). With `by_file`, a group with too few invoices (see
        `MIN_GROUP_INVOICES`, `MIN_GROUP_CLASS`) gets the table fitted on all the invoices;
        without it, the thin-file table is empty (the one table serves everyone).
    """
    pooled = fit_probability_table(scores, outcomes, bins)
    if not by_file:
        return pooled, ()

    def group(thin: bool) -> ProbabilityTable:
        members = [j for j, flag in enumerate(thin_file) if flag == thin]
        late = sum(1 for j in members if outcomes[j])
        if (
            len(members) < MIN_GROUP_INVOICES
            or late < MIN_GROUP_CLASS
            or len(members) - late < MIN_GROUP_CLASS
        ):
            return pooled
        return fit_probability_table(
            [scores[j] for j in members], [outcomes[j] for j in members], bins
        )

    return group(False), group(True)


def _rate(block: Sequence[float]) -> float:
    return (block[1] + 0.5) / (block[2] + 1)
