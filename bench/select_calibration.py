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

from connector.scoring.backtest import fit_probability, known_at_split, replay
from connector.scoring.history import censor, read_history
from connector.scoring.metrics import brier, reliability
from connector.scoring.policy import ProbabilityPolicy, ScoringPolicy

ROOT = Path(__file__).resolve().parents[1]
ORIGINS = tuple(date(2012, month, 1) for month in (7, 8, 9, 10, 11))
WINDOWS: tuple[int, ...] = (0, 180, 90)
TOLERANCE = 0.001


def candidates() -> list[ProbabilityPolicy]:
    """The fitting methods of rule 2, in grid order (the tables themselves come from the fit)."""
    return [
        ProbabilityPolicy(fit_window_days=window, fit_by_file=by_file)
        for by_file in (False, True)
        for window in WINDOWS
    ]


def name(method: ProbabilityPolicy) -> str:
    window = f"{method.fit_window_days}d" if method.fit_window_days else "all"
    return f"window {window}, {'thin-file + established tables' if method.fit_by_file else 'one table'}"


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
    everything = range(len(history))
    results: list[dict[str, Any]] = []
    for order, method in enumerate(candidates()):
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
                    **figures,
                }
            )
        results.append(
            {
                "order": order,
                "method": name(method),
                "fit_window_days": method.fit_window_days,
                "fit_by_file": method.fit_by_file,
                "validation": summary(pooled_p, pooled_y),
                "origins": per_origin,
            }
        )
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
            "fitted_on": shipped.fitted_on,
            "invoices": used,
            "late": late,
        },
        "candidates": results,
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
    print("shipped table:", shipped.table)
    print("shipped thin-file table:", shipped.thin_file_table)
    print("fitted on:", shipped.fitted_on)
    print(f"written to {out} in {report['seconds']} s")


if __name__ == "__main__":
    main()
