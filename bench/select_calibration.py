"""How `probability_late` is fitted by default: chosen on the period before the split only.

Run: .venv/bin/python bench/select_calibration.py [--invoices tests/data/ar-late-payments.csv]
     [--split-date 2013-01-01] [--json bench/results/calibration-selection.json]

Why: the table fitted on every 2012 outcome (bench/select_model.py, rule 5) missed the issue-17
calibration targets out of time. The lead's brief listed legitimate remedies (recent-window or
recency-weighted fits, a table per file maturity, a censoring correction, the latest known
window); the choice among them must rest on the period before the split alone. The list of
candidates therefore comes from a diagnosis that had seen the out-of-time miss; the choice
among them, below, does not.

THE RULE (written and committed before any out-of-time figure of any candidate was computed):

0. Data and scores. The IBM sample censored at the split (2013-01-01) before anything else, as
   in bench/select_model.py; nothing after the split is read. Scores are the point-in-time
   replay of the shipped v2 score model, which is fixed: no weight, curve or default of the
   score is revisited here, only how its score is mapped to a probability.
1. Validation by rolling origin. Origins O = the first day of each month from 2012-07-01 to
   2012-11-01 (five). At each origin, a candidate is fitted exactly as `crm-risk backtest --fit`
   would with the split at O (`connector.scoring.backtest.fit_probability`): on invoices issued
   before O whose outcome "paid after the due date" was known the day before O, restricted to
   the candidate's window. It then predicts every invoice issued from O up to the split whose
   outcome was known the day before the split. The validation pairs of all five origins are
   pooled (an invoice issued in November is predicted from five origins, one to five months
   ahead).
2. Candidates: every combination of
   - window: the outcomes of all invoices, or of those issued in the last 180 or 90 days
     before the origin (the latest known-outcome window);
   - tables: one table for every account, or two: one for accounts under the thin-file rule
     (fewer than `thin_file.cap_below_invoices` = 3 settled invoices in the trailing year and
     no external score, including no history: the cap and the no-history score put them at
     band B or worse whatever their behaviour) and one for the rest. A group gets its own table
     only with at least 100 fitting invoices, 30 late and 30 on time; otherwise it uses the
     table fitted on all of the window's invoices.
   Six candidates; each table is the binned isotonic fit of rule 5 of select_model.py (ten
   score bins, pool-adjacent-violators), so every table is monotone in the score.
   Not candidates, and why: a label-censoring correction - at any origin every fitting label is
   already final (an invoice due before O and unpaid the day before O is late whatever happens
   later), and the only selection is on the issue date (all terms are 30 days in this sample),
   so there is nothing to correct; recency weights - a window says the same more simply and is
   one readable setting in the policy.
3. Objective: the Brier score over the pooled validation pairs (lower is better).
4. Choice. Best objective B. Among candidates with Brier <= B + 0.001: one table before two;
   then the longest window (all, 180, 90); then the lowest Brier.
5. Shipped: the chosen method fitted with the split at 2013-01-01 on the censored file; the
   policy's `fit_window_days` and `fit_by_file` are set to it, so `crm-risk backtest --fit`
   repeats the same method on a user's own history.
6. Report: per candidate and origin the Brier, the predicted and observed late share and the
   worst decile gap on the validation pairs; the shipped tables; printed and written as JSON.

ADDENDUM: A DRIFT CORRECTION (rules 7-10, written on 2026-12-02, AFTER the out-of-time miss of
the table chosen by rules 0-6 had been seen: Brier 0.1394 against the target 0.135, 24.4 %
predicted against 31.8 % observed in 2013, deciles 4-10 under-predicted by 7-17 points.
Disclosed as such: the candidate exists because of that miss, so it is not blind to the test
period in the way rules 0-6 are. What is kept blind is the decision: rules 7-10 were committed
before any figure of the candidate, before or after the split, was computed, and they decide on
the period before the split alone. The candidate is the textbook remedy for the cause seen
before the split (the rolling validation of rules 1-4 under-predicts later 2012 invoices,
32.5 % against 36.1 %: the late share drifts upwards), not one shaped on 2013 figures.)

7. Candidate: a level shift ("calibration in the large" on the latest known window). At each
   origin, the table of the incumbent method (rule 4's choice: every known outcome, one table)
   is fitted as before; then every row's log-odds is moved by one common amount d, chosen so
   that the mean probability the shifted table gives the invoices issued in the last W days
   before the origin, whose outcome was known the day before it, equals their observed late
   share (`calibration.level_shift`; bisection, |d| <= 3; no shift when that window holds fewer
   than 30 late or 30 on-time invoices). The table's shape (which scores are riskier) still
   rests on every known outcome; only its level follows the latest window. W = 180 or 90 days
   (the window lengths of rule 2): two candidates. Policy setting:
   `[policy.probability] level_window_days = W`, honoured by `crm-risk backtest --fit`.
8. Validation: exactly rules 0, 1 and 3 (the censored file, the five origins, the pooled
   validation pairs, the Brier score); the incumbent is recomputed by the same code.
9. Adoption. Let B0 and G0 be the incumbent's pooled Brier and |predicted - observed| late
   share. A candidate is eligible only if its Brier <= B0 - 0.001 (the tolerance of rule 4: a
   smaller gain is noise by that rule's own standard) AND its |predicted - observed| < G0.
   No eligible candidate: the candidate is REJECTED and the shipped table stays the one of
   rule 5. Otherwise the eligible candidate with the lowest Brier is ADOPTED; if both are
   eligible and within 0.001 of each other, the longer window (180 days).
10. Shipped and reported. An adopted method is fitted with the split at 2013-01-01 on the
   censored file and becomes the default (`level_window_days` and the tables); the out-of-time
   figures of whatever is shipped are then computed once with `crm-risk backtest --json` into
   bench/results/backtest-ibm-v2.json and reported whether or not they meet the targets. The
   candidate's own out-of-time figures are reported too, adopted or not. Nothing is tuned
   further on them: no other window, no other candidate, no second shift.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from connector.scoring.backtest import Replay, fit_probability, known_at_split, replay
from connector.scoring.history import History, censor, read_history
from connector.scoring.metrics import brier, reliability
from connector.scoring.policy import ProbabilityPolicy, ScoringPolicy

ROOT = Path(__file__).resolve().parents[1]
ORIGINS = tuple(date(2012, month, 1) for month in (7, 8, 9, 10, 11))
WINDOWS: tuple[int, ...] = (0, 180, 90)
TOLERANCE = 0.001
# Rule 7: the drift-correction candidates' windows, longest first (the rule 9 tie-break).
LEVEL_WINDOWS: tuple[int, ...] = (180, 90)


def candidates() -> list[ProbabilityPolicy]:
    """The fitting methods of rule 2, in grid order (the tables themselves come from the fit)."""
    return [
        ProbabilityPolicy(fit_window_days=window, fit_by_file=by_file)
        for by_file in (False, True)
        for window in WINDOWS
    ]


def name(method: ProbabilityPolicy) -> str:
    window = f"{method.fit_window_days}d" if method.fit_window_days else "all"
    tables = "thin-file + established tables" if method.fit_by_file else "one table"
    shift = (
        f", level shifted to the last {method.level_window_days}d"
        if method.level_window_days
        else ""
    )
    return f"window {window}, {tables}{shift}"


def summary(probabilities: list[float], labels: list[bool]) -> dict[str, Any]:
    deciles = reliability(probabilities, labels)
    return {
        "invoices": len(labels),
        "brier": brier(probabilities, labels),
        "predicted": sum(probabilities) / len(probabilities),
        "observed": sum(labels) / len(labels),
        "worst_decile_gap": max((row["gap"] for row in deciles), key=abs),
        "deciles": deciles,
    }


def validate(
    history: History, run: Replay, split: date, method: ProbabilityPolicy, order: int
) -> dict[str, Any]:
    """Rules 1 and 3 for one method: fitted at each origin, scored on later pre-split invoices."""
    everything = range(len(history))
    pooled_p: list[float] = []
    pooled_y: list[bool] = []
    per_origin: list[dict[str, Any]] = []
    for origin in ORIGINS:
        fitted, used, late = fit_probability(history, run, origin, method)
        predicted = run.with_probability(fitted)
        later = [i for i in everything if history.issue[i] >= origin.toordinal()]
        rows, labels = known_at_split(history, later, 0, split)
        probabilities = [predicted.probability[i] for i in rows]
        pooled_p += probabilities
        pooled_y += labels
        figures = summary(probabilities, labels)
        figures.pop("deciles")
        per_origin.append(
            {
                "origin": origin.isoformat(),
                "fitted_on": used,
                "fitted_late": late,
                "own_thin_file_table": bool(fitted.thin_file_table)
                and fitted.thin_file_table != fitted.table,
                "level_shift": fitted.level_shift,
                **figures,
            }
        )
    return {
        "order": order,
        "method": name(method),
        "fit_window_days": method.fit_window_days,
        "fit_by_file": method.fit_by_file,
        "level_window_days": method.level_window_days,
        "validation": summary(pooled_p, pooled_y),
        "origins": per_origin,
    }


def drift_correction(
    history: History, run: Replay, split: date, incumbent: ProbabilityPolicy
) -> dict[str, Any]:
    """Rules 7-9: the level-shift candidates against the incumbent, and the rule's verdict."""
    base = validate(history, run, split, incumbent, 0)
    rows = [
        validate(
            history, run, split, incumbent.model_copy(update={"level_window_days": window}), k + 1
        )
        for k, window in enumerate(LEVEL_WINDOWS)
    ]
    b0 = base["validation"]["brier"]
    g0 = abs(base["validation"]["predicted"] - base["validation"]["observed"])
    eligible = [
        r
        for r in rows
        if r["validation"]["brier"] <= b0 - TOLERANCE
        and abs(r["validation"]["predicted"] - r["validation"]["observed"]) < g0
    ]
    adopted: dict[str, Any] | None = None
    if eligible:
        lowest = min(r["validation"]["brier"] for r in eligible)
        near = [r for r in eligible if r["validation"]["brier"] <= lowest + TOLERANCE]
        adopted = min(near, key=lambda r: LEVEL_WINDOWS.index(r["level_window_days"]))
    return {
        "rule": "bench/select_calibration.py docstring, rules 7-10 (written after the first "
        "out-of-time miss was seen; committed before any figure of the candidate)",
        "incumbent": base,
        "candidates": rows,
        "incumbent_brier": b0,
        "incumbent_gap": g0,
        "eligible": [r["method"] for r in eligible],
        "verdict": "adopted" if adopted else "rejected",
        "adopted_level_window_days": adopted["level_window_days"] if adopted else 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invoices", default=str(ROOT / "tests" / "data" / "ar-late-payments.csv"))
    parser.add_argument("--format", default="ibm-ar", choices=["ibm-ar", "canonical"])
    parser.add_argument("--split-date", type=date.fromisoformat, default=date(2013, 1, 1))
    parser.add_argument(
        "--json", default=str(ROOT / "bench" / "results" / "calibration-selection.json")
    )
    args = parser.parse_args()
    started = time.perf_counter()
    split: date = args.split_date
    # Rule 0: censor first; only `history` is used from here on.
    history = censor(read_history(args.invoices, args.format), split)
    policy = ScoringPolicy()
    run = replay(history, policy)
    results: list[dict[str, Any]] = []
    for order, method in enumerate(candidates()):
        results.append(validate(history, run, split, method, order))
    best = min(r["validation"]["brier"] for r in results)
    near = [r for r in results if r["validation"]["brier"] <= best + TOLERANCE]
    longest = {window: k for k, window in enumerate(WINDOWS)}
    chosen = min(
        near,
        key=lambda r: (r["fit_by_file"], longest[r["fit_window_days"]], r["validation"]["brier"]),
    )
    method = ProbabilityPolicy(
        fit_window_days=chosen["fit_window_days"], fit_by_file=chosen["fit_by_file"]
    )
    drift = drift_correction(history, run, split, method)
    method = method.model_copy(update={"level_window_days": drift["adopted_level_window_days"]})
    shipped, used, late = fit_probability(history, run, split, method)
    report = {
        "rule": "bench/select_calibration.py docstring",
        "data": Path(args.invoices).name,
        "split_date": split.isoformat(),
        "origins": [o.isoformat() for o in ORIGINS],
        "best_brier": best,
        "within_tolerance": [r["method"] for r in near],
        "chosen": {key: chosen[key] for key in ("method", "fit_window_days", "fit_by_file")},
        "shipped": {
            "table": [list(row) for row in shipped.table],
            "thin_file_table": [list(row) for row in shipped.thin_file_table],
            "fit_window_days": shipped.fit_window_days,
            "fit_by_file": shipped.fit_by_file,
            "level_window_days": shipped.level_window_days,
            "level_shift": shipped.level_shift,
            "fitted_on": shipped.fitted_on,
            "invoices": used,
            "late": late,
        },
        "candidates": results,
        "drift_correction": drift,
        "seconds": round(time.perf_counter() - started, 1),
    }
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    for r in results:
        v = r["validation"]
        print(
            f"{r['method']:<48} Brier {v['brier']:.4f}  predicted {v['predicted']:.3f} vs "
            f"observed {v['observed']:.3f}  worst decile gap {v['worst_decile_gap']:+.3f}"
        )
    print(f"best Brier {best:.4f}; within {TOLERANCE}: {', '.join(r['method'] for r in near)}")
    print("chosen:", chosen["method"])
    print("drift correction (rules 7-10):")
    for r in [drift["incumbent"], *drift["candidates"]]:
        v = r["validation"]
        print(
            f"  {r['method']:<62} Brier {v['brier']:.4f}  predicted {v['predicted']:.3f} vs "
            f"observed {v['observed']:.3f}  worst decile gap {v['worst_decile_gap']:+.3f}"
        )
    print(f"  eligible: {drift['eligible'] or 'none'}; verdict: {drift['verdict']}")
    print("shipped table:", shipped.table)
    print("shipped thin-file table:", shipped.thin_file_table)
    print("fitted on:", shipped.fitted_on)
    print(f"written to {out} in {report['seconds']} s")


if __name__ == "__main__":
    main()
