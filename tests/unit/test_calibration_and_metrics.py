"""probability_late's monotone table and the backtest's metrics, on cases worked by hand."""

from __future__ import annotations

import math
import random

import pytest

from connector.scoring.calibration import (
    MAX_SHIFT,
    MIN_GROUP_INVOICES,
    MIN_SHIFT_CLASS,
    fit_probability_table,
    fit_probability_tables,
    level_shift,
    probability_for,
    probability_late,
    shift_table,
)
from connector.scoring.metrics import (
    ClusteredBootstrap,
    _weighted_auc,
    auc,
    brier,
    ks,
    reliability,
)
from connector.scoring.policy import ProbabilityPolicy


def test_table_interpolates_between_rows_and_is_flat_beyond_them() -> None:
    table = ((10.0, 0.1), (30.0, 0.5))
    assert probability_for(0, table) == 0.1
    assert probability_for(10, table) == 0.1
    assert probability_for(20, table) == pytest.approx(0.3)
    assert probability_for(95, table) == 0.5
    assert probability_for(50, ()) is None


def test_fit_pools_violators_into_a_monotone_table() -> None:
    # Bin rates by score: 20 %, 60 %, 40 % (a dip), 90 %: the dip is pooled with its neighbour.
    scores: list[float] = []
    late: list[bool] = []
    for score, rate in ((10, 0.2), (20, 0.6), (30, 0.4), (40, 0.9)):
        scores += [score] * 100
        late += [i < rate * 100 for i in range(100)]
    table = fit_probability_table(scores, late, bins=4)
    assert [x for x, _ in table] == [10.0, 25.0, 40.0]
    rates = [p for _, p in table]
    assert rates == sorted(rates)
    assert rates[1] == pytest.approx((100 + 0.5) / 201, abs=1e-4)  # 60 + 40 late of 200
    assert rates[0] == pytest.approx(20.5 / 101, abs=1e-4)


def test_fit_never_splits_a_tie_and_never_says_never() -> None:
    scores = [5.0] * 50 + [50.0] * 50
    late = [False] * 50 + [True] * 50
    table = fit_probability_table(scores, late, bins=10)
    assert table == ((5.0, round(0.5 / 51, 4)), (50.0, round(50.5 / 51, 4)))
    assert table[0][1] > 0 and table[-1][1] < 1


@pytest.mark.parametrize("seed", range(5))
def test_fitted_tables_are_monotone_whatever_the_data(seed: int) -> None:
    rng = random.Random(seed)
    scores = [rng.uniform(0, 100) for _ in range(500)]
    late = [rng.random() < 0.3 for _ in scores]
    table = fit_probability_table(scores, late)
    xs = [x for x, _ in table]
    ps = [p for _, p in table]
    assert xs == sorted(set(xs))
    assert ps == sorted(ps)


def _group(
    score: float, rate: float, n: int, thin: bool
) -> tuple[list[float], list[bool], list[bool]]:
    return [score] * n, [i < rate * n for i in range(n)], [thin] * n


def test_thin_file_and_established_accounts_get_tables_of_their_own() -> None:
    # At score 30 thin-file accounts pay late 20 % of the time, established ones 80 %.
    scores, late, thin = [], [], []
    for part in (_group(30, 0.2, 200, True), _group(30, 0.8, 200, False)):
        scores += part[0]
        late += part[1]
        thin += part[2]
    table, thin_table = fit_probability_tables(scores, late, thin, by_file=True)
    assert probability_for(30, table) == pytest.approx(160.5 / 201, abs=1e-4)
    assert probability_for(30, thin_table) == pytest.approx(40.5 / 201, abs=1e-4)
    pooled, none = fit_probability_tables(scores, late, thin, by_file=False)
    assert none == ()
    assert probability_for(30, pooled) == pytest.approx(200.5 / 401, abs=1e-4)


def test_a_group_too_small_for_a_table_of_its_own_gets_the_pooled_one() -> None:
    small = MIN_GROUP_INVOICES - 1
    scores, late, thin = [], [], []
    for part in (_group(30, 0.5, small, True), _group(30, 0.8, 300, False)):
        scores += part[0]
        late += part[1]
        thin += part[2]
    table, thin_table = fit_probability_tables(scores, late, thin, by_file=True)
    assert thin_table == fit_probability_table(scores, late)
    assert probability_for(30, table) == pytest.approx(240.5 / 301, abs=1e-4)
    # Too few late invoices in a large group: pooled as well.
    scores, late, thin = _group(30, 0.05, 400, True)
    more = _group(30, 0.5, 400, False)
    table, thin_table = fit_probability_tables(
        scores + more[0], late + more[1], thin + more[2], True
    )
    assert thin_table == fit_probability_table(scores + more[0], late + more[1])


def test_probability_late_reads_the_thin_file_table_only_for_thin_file_accounts() -> None:
    tables = ProbabilityPolicy(table=((10, 0.1), (50, 0.9)), thin_file_table=((10, 0.3), (50, 0.4)))
    assert probability_late(50, False, tables) == 0.9
    assert probability_late(50, True, tables) == 0.4
    one = ProbabilityPolicy(table=((10, 0.1), (50, 0.9)))
    assert probability_late(50, True, one) == 0.9
    assert probability_late(50, True, ProbabilityPolicy(table=())) is None


def test_auc_and_ks_on_known_cases() -> None:
    assert auc([1, 2, 3, 4], [False, False, True, True]) == 1.0
    assert auc([1, 2, 3, 4], [True, True, False, False]) == 0.0
    assert auc([1, 1, 1, 1], [True, False, True, False]) == 0.5
    assert auc([1, 2, 2, 3], [False, True, False, True]) == pytest.approx(0.875)
    assert auc([1, 2], [True, True]) is None
    assert ks([1, 2, 3, 4], [False, False, True, True]) == 1.0
    assert ks([1, 1, 1, 1], [True, False, True, False]) == 0.0


def test_brier_and_reliability() -> None:
    assert brier([0.0, 1.0], [False, True]) == 0.0
    assert brier([0.5, 0.5], [False, True]) == 0.25
    probabilities = [0.1] * 10 + [0.8] * 10
    labels = [i < 1 for i in range(10)] + [i < 6 for i in range(10)]
    rows = reliability(probabilities, labels, groups=2)
    assert [(r["invoices"], r["predicted"], r["observed"]) for r in rows] == [
        (10, 0.1, 0.1),
        (10, 0.8, 0.6),
    ]
    assert rows[1]["gap"] == pytest.approx(0.2)


def _customers(
    n_customers: int, per_customer: int, seed: int
) -> tuple[list[int], list[float], list[bool]]:
    """Customers whose invoices share one score and (mostly) one outcome: strongly clustered."""
    rng = random.Random(seed)
    clusters, scores, labels = [], [], []
    for c in range(n_customers):
        score = rng.uniform(0, 100)
        p_late = min(0.95, max(0.05, score / 100 + rng.gauss(0, 0.25)))
        for _ in range(per_customer):
            clusters.append(c)
            scores.append(score)
            labels.append(rng.random() < p_late)
    return clusters, scores, labels


def test_clustered_interval_contains_the_estimate_and_is_wider_than_invoice_level() -> None:
    clusters, scores, labels = _customers(60, 20, seed=3)
    point = auc(scores, labels)
    assert point is not None
    clustered = ClusteredBootstrap(clusters, replicates=400).auc_interval(clusters, scores, labels)
    invoice_level = ClusteredBootstrap(list(range(len(scores))), replicates=400).auc_interval(
        list(range(len(scores))), scores, labels
    )
    assert clustered is not None and invoice_level is not None
    assert clustered.low < point < clustered.high
    # 60 customers, not 1,200 independent invoices: the honest interval is much wider.
    assert (clustered.high - clustered.low) > 2 * (invoice_level.high - invoice_level.low)


def test_gain_interval_is_paired_and_reproducible() -> None:
    clusters, scores, labels = _customers(50, 10, seed=4)
    noisy = [s + random.Random(i).gauss(0, 30) for i, s in enumerate(scores)]
    sampler = ClusteredBootstrap(clusters, replicates=300, seed=1)
    same = sampler.gain_interval(clusters, scores, scores, labels)
    assert same is not None and same.low == same.high == 0.0
    gain = sampler.gain_interval(clusters, scores, noisy, labels)
    again = ClusteredBootstrap(clusters, replicates=300, seed=1).gain_interval(
        clusters, scores, noisy, labels
    )
    assert gain == again
    assert gain is not None and gain.low > 0  # the clean score beats its noisy copy


def _pairwise_auc_twice(
    scores: list[float], labels: list[bool], weight: list[int]
) -> tuple[int, int, int]:
    """By the definition: 2 x the weighted count of (late, on-time) pairs the score orders right
    (ties count half), and the weighted counts of late and of on-time invoices."""
    twice = 0
    for p, (sp, yp) in enumerate(zip(scores, labels, strict=True)):
        if not yp:
            continue
        for n, (sn, yn) in enumerate(zip(scores, labels, strict=True)):
            if yn:
                continue
            twice += weight[p] * weight[n] * (2 if sn < sp else 1 if sn == sp else 0)
    late = sum(w for w, y in zip(weight, labels, strict=True) if y)
    return twice, late, sum(weight) - late


@pytest.mark.parametrize("seed", range(40))
def test_auc_ks_and_bootstrap_aucs_equal_the_pairwise_definition_exactly(seed: int) -> None:
    # Vectorised AUCs must be the same float as the pairwise count divided once: ties (few
    # distinct scores), negative zero, large and small values, customers drawn 0..n times.
    rng = random.Random(seed)
    size = rng.randint(1, 60)
    palette = [rng.choice([-0.0, 0.0, 1e-300, 3.5, 1e12, -7.25]) for _ in range(4)]
    scores = [rng.choice(palette) if rng.random() < 0.5 else rng.uniform(-5, 5)
              for _ in range(size)]  # fmt: skip
    labels = [rng.random() < 0.4 for _ in range(size)]
    clusters = [rng.randrange(max(1, size // 3)) for _ in range(size)]
    twice, late, on_time = _pairwise_auc_twice(scores, labels, [1] * size)
    expected = twice / (2 * late * on_time) if late and on_time else None
    assert auc(scores, labels) == expected
    if expected is not None:
        # KS by the definition: the largest gap between the two cumulative distributions.
        gaps = [abs(sum(1 for s, y in zip(scores, labels, strict=True) if y and s <= t) / late
                    - sum(1 for s, y in zip(scores, labels, strict=True) if not y and s <= t)
                    / on_time) for t in scores]  # fmt: skip
        assert ks(scores, labels) == pytest.approx(max(gaps), abs=1e-12)
    sampler = ClusteredBootstrap(clusters, replicates=5, seed=seed)
    prepared = sampler.prepare(clusters, scores, labels)
    for drawn in sampler._weights():
        weight = [int(drawn[sampler.index[c]]) for c in clusters]
        twice, late, on_time = _pairwise_auc_twice(scores, labels, weight)
        want = twice / (2 * late * on_time) if late and on_time else None
        assert _weighted_auc(prepared, drawn) == want


def test_bootstrap_draws_every_customer_as_often_as_random_choices_says() -> None:
    # The draws are the standard library's (seeded per replicate), so intervals recorded before
    # the metrics were vectorised (bench/results/backtest-ibm-v2.json) are reproduced exactly.
    sampler = ClusteredBootstrap([5, 9, 9, 11, 40], replicates=3, seed=17)
    for r, drawn in enumerate(sampler._weights()):
        picks = random.Random(17 * 100_003 + r).choices(range(4), k=4)
        assert [int(x) for x in drawn] == [picks.count(k) for k in range(4)]


def test_a_level_shift_moves_the_table_s_mean_onto_the_recent_late_share() -> None:
    table = ((10.0, 0.1), (30.0, 0.3), (60.0, 0.8))
    tables = ProbabilityPolicy(table=table)
    # Recent invoices: scores spread over the table, 45 % late where the table says about 33 %.
    scores = [10.0 + (50.0 * k) / 199 for k in range(200)]
    late = [k % 20 < 9 for k in range(200)]
    shift = level_shift(scores, late, [False] * 200, tables)
    assert shift is not None and shift > 0
    moved = ProbabilityPolicy(table=shift_table(table, shift))
    mean = sum(probability_late(s, False, moved) or 0.0 for s in scores) / len(scores)
    assert mean == pytest.approx(0.45, abs=1e-3)
    # The shape is kept: same scores, still rising, every row moved the same way in log-odds.
    assert [x for x, _ in moved.table] == [10.0, 30.0, 60.0]
    probabilities = [p for _, p in moved.table]
    assert probabilities == sorted(probabilities)
    logits = [math.log(p / (1 - p)) - math.log(q / (1 - q))
              for (_, p), (_, q) in zip(moved.table, table, strict=True)]  # fmt: skip
    assert max(logits) - min(logits) < 1e-3


def test_no_level_shift_from_a_window_too_small_to_say_where_the_level_is() -> None:
    tables = ProbabilityPolicy(table=((10.0, 0.1), (60.0, 0.8)))
    few_late = [k < MIN_SHIFT_CLASS - 1 for k in range(500)]
    assert level_shift([30.0] * 500, few_late, [False] * 500, tables) is None
    few_on_time = [k >= MIN_SHIFT_CLASS - 1 for k in range(500)]
    assert level_shift([30.0] * 500, few_on_time, [False] * 500, tables) is None
    # Already at the level: no shift to speak of.
    table = ((0.0, 0.5), (100.0, 0.5))
    half = [k % 2 == 0 for k in range(100)]
    assert level_shift([50.0] * 100, half, [False] * 100, ProbabilityPolicy(table=table)) == (
        pytest.approx(0.0, abs=1e-4)
    )


def test_a_level_shift_is_bounded_and_moves_both_tables() -> None:
    tables = ProbabilityPolicy(table=((10.0, 0.01), (60.0, 0.02)), thin_file_table=((10.0, 0.3),))
    # Every recent invoice late but 30: no finite shift of a 1-2 % table reaches that; bounded.
    late = [k >= 30 for k in range(5000)]
    assert level_shift([30.0] * 5000, late, [False] * 5000, tables) == MAX_SHIFT
    thin = [True] * 100 + [False] * 100
    mixed = [k % 2 == 0 for k in range(200)]
    shift = level_shift([30.0] * 200, mixed, thin, tables)
    assert shift is not None
    moved = tables.model_copy(
        update={
            "table": shift_table(tables.table, shift),
            "thin_file_table": shift_table(tables.thin_file_table, shift),
        }
    )
    mean = sum(probability_late(30.0, t, moved) or 0.0 for t in thin) / 200
    assert mean == pytest.approx(0.5, abs=1e-3)
