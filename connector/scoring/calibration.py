"""`probability_late`: monotone score-to-probability tables, their fit (binned isotonic) and use.

A fitted table can be moved to the latest known level (`level_shift`): every row's log-odds moved
by one common amount so that the table's mean on the most recent invoices with a known outcome
equals their late share. The shape (which scores are riskier) still comes from every known
outcome; only the level follows the recent past, for a late share that drifts over time. It is
off by default: proposed after the shipped table's out-of-time miss had been seen (disclosed in
bench/select_calibration.py, rules 7-10), it was rejected by a rule committed before any of its
figures, which decides on validation before the split only (README, "How the v2 defaults were
chosen").

There may be two tables: one for accounts under the thin-file rule (fewer than
`thin_file.cap_below_invoices` settled invoices in the trailing year and no external score,
including accounts with no history) and one for the rest. The thin-file cap and the no-history
score put such accounts at band B or worse whatever their behaviour, so the same score does not
mean the same chance of paying late in both groups; each table is still monotone in the score.
"""

from __future__ import annotations

import bisect
import math
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
# A level shift is estimated only on a window with at least this many late and this many on-time
# invoices; otherwise the fitted table is kept as it is.
MIN_SHIFT_CLASS = 30
# The shift never moves a row's log-odds further than this (a factor of about 20 on the odds):
# beyond it the window says more about the window than about the book.
MAX_SHIFT = 3.0


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


def shift_table(table: ProbabilityTable, shift: float) -> ProbabilityTable:
    """The table with every row's log-odds moved by `shift` (the scores and the order are kept).

    Args:
        table: (score, probability) rows; probabilities strictly between 0 and 1 move, 0 and 1 stay.
        shift: the log-odds added to every row (positive = more likely late).

    Returns:
        The shifted table, probabilities rounded to 4 places (still non-decreasing).
    """
    return tuple((x, round(_shifted(p, shift), 4)) for x, p in table)


def _shifted(p: float, shift: float) -> float:
    if p <= 0.0 or p >= 1.0:
        return p
    z = math.log(p / (1.0 - p)) + shift
    return 1.0 / (1.0 + math.exp(-z))


def level_shift(
    scores: Sequence[float],
    outcomes: Sequence[bool],
    thin_file: Sequence[bool],
    probability: ProbabilityPolicy,
) -> float | None:
    """The log-odds shift that makes the tables' mean on these invoices equal their late share.

    The mean probability after a shift rises with the shift, so the solution is unique; it is
    found by bisection to 1e-6 and bounded by `MAX_SHIFT` either way.

    Args:
        scores: the scores the recent invoices' customers had when each was issued.
        outcomes: True where the invoice was paid late (known at the split).
        thin_file: per invoice, whether the thin-file rule applied (selects the table).
        probability: the fitted tables.

    Returns:
        The shift, or None when the invoices have fewer than `MIN_SHIFT_CLASS` late or on time
        (too few to say where the level is) or the policy has no table.
    """
    late = sum(1 for y in outcomes if y)
    if late < MIN_SHIFT_CLASS or len(outcomes) - late < MIN_SHIFT_CLASS or not probability.table:
        return None
    target = late / len(outcomes)
    rows = list(zip(scores, thin_file, strict=True))

    def mean_at(shift: float) -> float:
        # Through the shifted rows, as `shift_table` stores them (interpolation after the shift).
        moved = probability.model_copy(
            update={
                "table": tuple((x, _shifted(q, shift)) for x, q in probability.table),
                "thin_file_table": tuple(
                    (x, _shifted(q, shift)) for x, q in probability.thin_file_table
                ),
            }
        )
        total = 0.0
        for s, t in rows:
            total += probability_late(s, t, moved) or 0.0
        return total / len(rows)

    low, high = -MAX_SHIFT, MAX_SHIFT
    if mean_at(high) <= target:
        return high
    if mean_at(low) >= target:
        return low
    while high - low > 1e-6:
        middle = (low + high) / 2
        if mean_at(middle) < target:
            low = middle
        else:
            high = middle
    return round((low + high) / 2, 4)
