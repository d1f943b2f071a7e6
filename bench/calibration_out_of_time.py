"""Out-of-time calibration of the shipped `probability_late` table and of the drift candidates.

Run: .venv/bin/python bench/calibration_out_of_time.py
     [--json bench/results/calibration-out-of-time.json]

Rule 10 of bench/select_calibration.py: once the pre-split rule has given its verdict (read here
from bench/results/calibration-selection.json, never recomputed from what this script finds),
the out-of-time figures of what ships and of every drift-correction candidate, adopted or not,
are reported. Each is `crm-risk backtest --fit` with the split at 2013-01-01: fitted on the
invoices whose outcome was known the day before the split, then scored on 2013. Nothing here
feeds back into any setting; it reads the period after the split, which the selection may not.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from connector.scoring.backtest import run_backtest
from connector.scoring.policy import ScoringPolicy

ROOT = Path(__file__).resolve().parents[1]
IBM = ROOT / "tests" / "data" / "ar-late-payments.csv"
SELECTION = ROOT / "bench" / "results" / "calibration-selection.json"
SPLIT = date(2013, 1, 1)
# Issue 17's targets for probability_late out of time.
TARGET_BRIER = 0.135
TARGET_DECILE_GAP = 0.07
TARGET_OVERALL_GAP = 0.02


def figures(level_window_days: int) -> dict[str, Any]:
    """`backtest --fit` with the shipped method, shifted to the last `level_window_days` or not."""
    method = ScoringPolicy().probability.model_copy(update={"level_window_days": level_window_days})
    policy = ScoringPolicy().model_copy(update={"probability": method})
    report = run_backtest(IBM, "ibm-ar", SPLIT, policy, fit=True, bootstrap=0).to_dict()
    overall = report["calibration_overall"]
    gaps = [float(row["gap"]) for row in report["calibration"]]
    return {
        "level_window_days": level_window_days,
        "level_shift": report["fit"]["level_shift"],
        "table": report["fit"]["table"],
        "fitted_on": report["fit"]["fitted_on"],
        "invoices": report["invoices_scored"],
        "brier": report["brier"],
        "predicted": overall["predicted"],
        "observed": overall["observed"],
        "calibration": report["calibration"],
        "worst_decile_gap": max(gaps, key=abs),
        "meets": {
            "brier": report["brier"] <= TARGET_BRIER,
            "every_decile": all(abs(g) <= TARGET_DECILE_GAP for g in gaps),
            "overall": abs(overall["predicted"] - overall["observed"]) <= TARGET_OVERALL_GAP,
        },
        "auc_0": report["auc"]["0"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--json", default=str(ROOT / "bench" / "results" / "calibration-out-of-time.json")
    )
    args = parser.parse_args()
    drift = json.loads(SELECTION.read_text())["drift_correction"]
    windows = [row["level_window_days"] for row in drift["candidates"]]
    report = {
        "what": "out-of-time probability_late figures, computed after the pre-split verdict "
        "(bench/select_calibration.py rule 10); reported, never used to choose",
        "split_date": SPLIT.isoformat(),
        "verdict": drift["verdict"],
        "adopted_level_window_days": drift["adopted_level_window_days"],
        "targets": {
            "brier": TARGET_BRIER,
            "decile_gap": TARGET_DECILE_GAP,
            "overall_gap": TARGET_OVERALL_GAP,
        },
        "shipped": figures(drift["adopted_level_window_days"]),
        "candidates": [figures(window) for window in windows],
    }
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"pre-split verdict on the drift correction: {drift['verdict']}")
    for label, row in [("shipped", report["shipped"])] + [
        (f"candidate {row['level_window_days']}d", row) for row in report["candidates"]
    ]:
        print(
            f"{label:<16} shift {row['level_shift']:+.4f}  Brier {row['brier']:.4f}  predicted "
            f"{row['predicted']:.3f} vs observed {row['observed']:.3f}  worst decile gap "
            f"{row['worst_decile_gap']:+.3f}  meets {row['meets']}"
        )
    print(f"written to {out}")


if __name__ == "__main__":
    main()
