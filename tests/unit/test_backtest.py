"""Backtest: point-in-time replay, outcome hygiene, the pre-split gate and the report's figures."""

from __future__ import annotations

import copy
import importlib.util
import json
import tomllib
from datetime import date
from pathlib import Path

import pytest
from rich.console import Console

from connector.cli.backtest_view import render_backtest
from connector.cli.main import main
from connector.scoring.backtest import (
    decisions,
    fit_probability,
    known_at_split,
    outcome,
    pre_split_figures,
    rate_decisions,
    replay,
    run_backtest,
)
from connector.scoring.calibration import probability_for
from connector.scoring.history import DISPUTED, censor, read_history
from connector.scoring.policy import ProbabilityPolicy, ScoringPolicy, policy_to_toml

ROOT = Path(__file__).resolve().parents[2]
IBM = ROOT / "tests" / "data" / "ar-late-payments.csv"
SELECTION = ROOT / "bench" / "results" / "model-selection.json"
CALIBRATION = ROOT / "bench" / "results" / "calibration-selection.json"
SPLIT = date(2013, 1, 1)


@pytest.fixture(scope="module")
def ibm_report():
    return run_backtest(IBM, "ibm-ar", SPLIT, ScoringPolicy(), bootstrap=200)


@pytest.fixture(scope="module")
def pre_split():
    """The IBM sample as known the day before the split, and figures on it."""
    history = censor(read_history(IBM, "ibm-ar"), SPLIT)
    return history


def test_shipped_defaults_are_the_model_the_pre_split_selection_chose() -> None:
    chosen = json.loads(SELECTION.read_text())
    policy = ScoringPolicy()
    pick = chosen["chosen"]
    assert policy.windows.early_payment == pick["early_payment"]
    assert [list(p) for p in policy.curves.dbt] == pick["dbt_curve"]
    assert policy.thin_file.no_history_score == pick["no_history_score"]
    for key, weight in pick["weights"].items():
        assert getattr(policy.weights, key) == weight, key
    assert [list(row) for row in policy.probability.table] == chosen["probability_table"]
    assert chosen["split_date"] == SPLIT.isoformat()


def test_shipped_probability_method_is_the_one_the_pre_split_calibration_rule_chose() -> None:
    selection = json.loads(CALIBRATION.read_text())
    probability = ScoringPolicy().probability
    assert selection["split_date"] == SPLIT.isoformat()
    assert probability.fit_window_days == selection["chosen"]["fit_window_days"]
    assert probability.fit_by_file == selection["chosen"]["fit_by_file"]
    shipped = selection["shipped"]
    assert [list(row) for row in probability.table] == shipped["table"]
    assert [list(row) for row in probability.thin_file_table] == shipped["thin_file_table"]
    # Every candidate was validated only on invoices issued before the split.
    assert all(o < SPLIT.isoformat() for o in selection["origins"])
    # The drift correction (rules 7-10) ships only if the rule adopted it.
    drift = selection["drift_correction"]
    assert probability.level_window_days == drift["adopted_level_window_days"]
    assert shipped["level_window_days"] == drift["adopted_level_window_days"]


def test_the_drift_correction_verdict_follows_from_its_pre_split_figures_by_the_written_rule() -> (
    None
):
    # Rule 9 of bench/select_calibration.py applied by hand to the recorded validation figures.
    drift = json.loads(CALIBRATION.read_text())["drift_correction"]
    base = drift["incumbent"]["validation"]
    b0, g0 = base["brier"], abs(base["predicted"] - base["observed"])
    eligible = [
        row
        for row in drift["candidates"]
        if row["validation"]["brier"] <= b0 - 0.001
        and abs(row["validation"]["predicted"] - row["validation"]["observed"]) < g0
    ]
    assert [row["method"] for row in eligible] == drift["eligible"]
    assert drift["verdict"] == ("adopted" if eligible else "rejected")
    assert {row["level_window_days"] for row in drift["candidates"]} == {90, 180}
    # Validated before the split only: every origin, hence every validation invoice, is 2012.
    for row in [drift["incumbent"], *drift["candidates"]]:
        assert all(o["origin"] < SPLIT.isoformat() for o in row["origins"])


def _bench(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("script", "result"),
    [
        ("select_calibration", "calibration-selection.json"),
        ("calibration_out_of_time", "calibration-out-of-time.json"),
    ],
)
def test_the_calibration_figures_regenerate_from_the_committed_bench_results(
    script: str, result: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    # The figures the README quotes come from these files; rerunning the scripts on the committed
    # code and data gives them back exactly (only the run time differs).
    out = tmp_path / result
    monkeypatch.setattr("sys.argv", [script, "--json", str(out)])
    _bench(script).main()
    capsys.readouterr()
    fresh = json.loads(out.read_text())
    recorded = json.loads((ROOT / "bench" / "results" / result).read_text())
    fresh.pop("seconds", None)
    recorded.pop("seconds", None)
    assert fresh == recorded


def test_the_shipped_out_of_time_calibration_is_the_one_recorded_with_the_model() -> None:
    # bench/results/calibration-out-of-time.json (shipped table) and backtest-ibm-v2.json (the
    # model's recorded run) agree, so README figures from either describe the same table.
    recorded = json.loads((ROOT / "bench" / "results" / "calibration-out-of-time.json").read_text())
    model_run = json.loads((ROOT / "bench" / "results" / "backtest-ibm-v2.json").read_text())
    shipped = recorded["shipped"]
    assert shipped["brier"] == model_run["brier"]
    assert shipped["calibration"] == model_run["calibration"]
    assert shipped["predicted"] == model_run["calibration_overall"]["predicted"]
    assert shipped["observed"] == model_run["calibration_overall"]["observed"]
    assert [list(row) for row in ScoringPolicy().probability.table] == shipped["table"]


def test_pre_split_gate_the_shipped_model_on_invoices_known_before_the_split(pre_split) -> None:
    # The only gate on model quality: figures tuning was allowed to see (2012, known at the split).
    run = replay(pre_split, ScoringPolicy())
    figures = pre_split_figures(pre_split, run, SPLIT)
    recorded = json.loads(SELECTION.read_text())["pre_split"]["auc"]
    assert figures["auc"]["0"] == pytest.approx(recorded["0"], abs=1e-9)
    assert figures["auc"]["15"] == pytest.approx(recorded["15"], abs=1e-9)
    assert figures["auc"]["0"] >= 0.83
    assert figures["auc"]["15"] >= 0.80
    v1 = ScoringPolicy.model_validate(
        {"model_version": "v1", "windows": {"grace_days": 5, "early_payment": "floor"},
         "curves": {"dbt": [[0, 0], [15, 30], [30, 60], [60, 85], [90, 100]],
                    "late_share": [[0, 0], [0.5, 100]], "disputes": [[0, 0], [0.5, 100]]},
         "weights": {"dbt": 25, "late_share": 10, "trend": 10, "disputes": 5, "thin_file": 5},
         "thin_file": {"no_history_score": 50}}
    )  # fmt: skip
    v1_figures = pre_split_figures(pre_split, replay(pre_split, v1), SPLIT)
    assert figures["auc"]["0"] > v1_figures["auc"]["0"] + 0.05
    assert figures["bands_monotone"]


def test_censoring_keeps_only_what_was_known_before_the_split(pre_split) -> None:
    full = read_history(IBM, "ibm-ar")
    cut = SPLIT.toordinal()
    assert len(pre_split) == sum(1 for d in full.issue if d < cut)
    assert all(p == 0 or p < cut for p in pre_split.paid)
    # Invoices paid after the split are open in the censored copy, with no dispute known.
    open_rows = [i for i, p in enumerate(pre_split.paid) if p == 0]
    assert open_rows
    assert not any(pre_split.disputed(i) for i in open_rows)


def test_replay_scores_each_invoice_from_what_was_known_on_its_issue_day() -> None:
    history = read_history(IBM, "ibm-ar")
    policy = ScoringPolicy()
    decided = list(decisions(history, policy))
    first_of = {}
    for members, features in decided:
        for i in members:
            customer = history.customer[i]
            known = [
                j for j in range(len(history))
                if history.customer[j] == customer and history.issue[j] < history.issue[i]
            ]  # fmt: skip
            # A payment on the decision day itself is known that day.
            settled = [j for j in known if 0 < history.paid[j] <= history.issue[i]]
            # Every feature equals extract on the whole known history: tests/unit/test_timeline.py.
            assert features.invoice_count == len(known)
            assert features.settled_count == len(
                [j for j in settled if history.issue[i] - history.paid[j] < 365]
            )
            first_of.setdefault(customer, features.invoice_count)
        if len(first_of) > 5:
            break
    # Each customer's first invoice has no history at all: unrated at the no-history score.
    assert set(first_of.values()) == {0}
    run = rate_decisions(decided, policy, len(history))
    first_rows = [members[0] for members, f in decided if f.invoice_count == 0]
    assert {run.score[i] for i in first_rows} == {policy.thin_file.no_history_score}


def test_report_has_every_key_the_issue_lists(ibm_report) -> None:
    report = ibm_report.to_dict()
    for key in ("invoices_scored", "auc", "ks", "bands", "positives", "auc_ci", "factors",
                "band_auc", "brier", "calibration"):  # fmt: skip
        assert key in report, key
    assert report["invoices_scored"] == 1189  # invoices issued from 2013-01-01, all settled
    assert set(report["auc"]) == set(report["ks"]) == set(report["positives"]) == {"0", "15", "30"}
    assert report["encoding"] == "UTF-8"
    assert {row["factor"] for row in report["factors"]} >= {"DBT_HIGH", "LATE_SHARE", "THIN_FILE"}
    assert all(set(row) >= {"factor", "auc"} for row in report["factors"])
    assert len(report["calibration"]) == 10
    assert sum(row["invoices"] for row in report["calibration"]) == 1189
    assert {row["value"] for row in report["segments"]} == {"Paper", "Electronic"}
    assert sum(row["invoices"] for row in report["segments"]) == 1189
    assert json.loads(json.dumps(report)) == report


def test_figures_on_fewer_than_30_late_invoices_are_hidden_but_counted(ibm_report) -> None:
    report = ibm_report.to_dict()
    # Four 2013 invoices were paid more than 30 days late: no AUC, KS or interval on them.
    assert 0 < report["positives"]["30"] < 30
    assert report["auc"]["30"] is None
    assert report["ks"]["30"] is None
    assert report["auc_ci"]["30"] is None
    assert report["positives"]["0"] >= 30 and report["auc"]["0"] is not None
    low, high = report["auc_ci"]["0"]
    assert low < report["auc"]["0"] < high
    assert any("hidden" in note for note in report["notes"])


def test_monotonicity_is_checked_on_bands_of_at_least_30_invoices(ibm_report) -> None:
    for period in (ibm_report.to_dict(), ibm_report.to_dict()["in_sample"]):
        checked = [b["late_share"] for b in period["bands"] if b["checked"]]
        assert all(b["count"] >= 30 for b in period["bands"] if b["checked"])
        assert period["bands_monotone"] == (checked == sorted(checked))


def test_report_renders_with_counts_and_the_simulated_data_note(ibm_report) -> None:
    console = Console(record=True, width=160)
    console.print(render_backtest(ibm_report))
    output = console.export_text()
    assert "out of time" in output and "in sample" in output
    assert "hidden" in output
    assert "simulated" in output
    assert "by billing channel" in output
    assert "Brier" in output


CANONICAL = """customer_id,invoice_id,issue_date,due_date,amount,paid_date,disputed,written_off
good,g1,2024-01-01,2024-01-31,1000,2024-01-30,no,no
good,g2,2024-02-01,2024-03-02,1000,2024-03-01,no,no
good,g3,2024-03-01,2024-03-31,1000,2024-03-29,no,no
good,g4,2024-04-01,2024-05-01,1000,2024-04-30,no,no
good,g5,2024-05-01,2024-05-31,1000,2024-05-30,no,no
slow,s1,2024-01-01,2024-01-31,1000,2024-03-15,yes,no
slow,s2,2024-02-01,2024-03-02,1000,2024-04-20,no,no
slow,s3,2024-03-01,2024-03-31,1000,2024-05-25,no,no
slow,s4,2024-04-01,2024-05-01,1000,,no,yes
slow,s5,2024-05-01,2024-05-31,1000,,no,no
slow,s6,2024-07-01,2024-07-31,1000,,no,no
good,g6,2024-06-20,2024-07-20,1000,2024-07-01,no,no
"""


def test_written_off_and_still_open_past_due_invoices_count_as_late(tmp_path: Path) -> None:
    path = tmp_path / "history.csv"
    path.write_text(CANONICAL)
    history = read_history(path, "canonical")
    end = history.last_date() + 1  # the file is known up to 2024-07-01
    assert end == date(2024, 7, 2).toordinal()
    by_line = {history.line[i]: i for i in range(len(history))}
    s4, s5, s6 = by_line[10], by_line[11], by_line[12]
    assert outcome(history, s4, 30, end) is True  # written off
    # s5, due 2024-05-31 and unpaid on 2024-07-01, is paid 32 days late at the earliest.
    assert outcome(history, s5, 0, end) is True
    assert outcome(history, s5, 30, end) is True
    assert outcome(history, s5, 45, end) is None  # might still be paid within 45 days
    assert outcome(history, s6, 0, end) is None  # not yet due: no outcome, history only
    report = run_backtest(path, "canonical", date(2024, 4, 1), bootstrap=0).to_dict()
    # g4, g5, g6 paid; s4 written off; s5 open past due. s6 has no outcome yet.
    assert report["invoices_scored"] == 5
    assert report["positives"]["0"] == 2
    assert any("still open and not yet past due" in note for note in report["notes"])


def test_fit_uses_only_outcomes_known_the_day_before_the_split() -> None:
    history = read_history(IBM, "ibm-ar")
    rows, labels = known_at_split(history, range(len(history)), 0, SPLIT)
    cut = SPLIT.toordinal()
    assert all(history.issue[i] < cut and history.due[i] < cut for i in rows)
    for i, late in zip(rows, labels, strict=True):
        if history.paid[i] >= cut:
            assert late  # unpaid on the last known day, past due: late whatever came later
        else:
            assert late == (history.paid[i] > history.due[i])
    # The same population, hence the same table, from the file cut at the split.
    censored = censor(history, SPLIT)
    assert known_at_split(censored, range(len(censored)), 0, SPLIT)[1] == labels


def _rewrite_after(history, cut: int, before_too: bool = False):
    """A copy with every payment made on or after `cut` (and every later invoice) moved: those
    paid within 10 days of due made 40 days late and the others paid on the due date (never
    before `cut`). With `before_too`, payments known before `cut` are flipped as well."""
    changed = copy.deepcopy(history)
    moved = 0
    for i in range(len(changed)):
        paid, due = changed.paid[i], changed.due[i]
        if paid == 0 or (paid < cut and not before_too):
            continue
        floor = cut if paid >= cut else changed.issue[i]
        changed.paid[i] = max(floor, due + 40 if paid - due <= 10 else due)
        changed.flags[i] ^= DISPUTED
        moved += changed.paid[i] != paid
    assert moved > 100
    return changed


PROBABILITY_METHODS = [
    {},
    {"level_window_days": 90},
    {"level_window_days": 180},
    {"fit_window_days": 180, "fit_by_file": True},
    {"fit_by_file": True, "level_window_days": 90},
]


@pytest.mark.parametrize("split", [SPLIT, date(2012, 9, 1)], ids=str)
def test_probability_fit_never_reads_an_outcome_from_on_or_after_its_split(split: date) -> None:
    # Every fitting method, at the backtest's split and at a rolling origin of the calibration
    # rule: rewriting what happened from the split on (payments, disputes, later invoices) leaves
    # the fitted tables and the level shift exactly as they were. A label that leaked into the
    # fit would move them, as rewriting the payments known before the split does.
    full = read_history(IBM, "ibm-ar")
    cut = split.toordinal()
    future = _rewrite_after(full, cut)
    past = _rewrite_after(full, cut, before_too=True)
    runs = {id(h): replay(h, ScoringPolicy()) for h in (full, future, past)}
    for settings in PROBABILITY_METHODS:
        method = ProbabilityPolicy(**settings)
        fitted = fit_probability(full, runs[id(full)], split, method)
        assert fit_probability(future, runs[id(future)], split, method) == fitted, settings
        leaked = fit_probability(past, runs[id(past)], split, method)
        assert leaked[0].table != fitted[0].table, settings
    shifted = fit_probability(full, runs[id(full)], split, ProbabilityPolicy(level_window_days=90))
    assert shifted[0].level_shift != 0 and "log-odds shifted" in shifted[0].fitted_on


def test_fit_writes_a_policy_that_reproduces_its_probabilities(tmp_path: Path, capsys) -> None:
    written = tmp_path / "policy.toml"
    code = main(["backtest", "--invoices", str(IBM), "--split-date", "2013-01-01", "--fit",
                 "--write-policy", str(written), "--bootstrap", "0", "--json"])  # fmt: skip
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    policy = ScoringPolicy.model_validate(tomllib.loads(written.read_text()))
    assert [list(row) for row in policy.probability.table] == report["fit"]["table"]
    assert "known on 2013-01-01" in policy.probability.fitted_on
    # Refitting the shipped model on the data it was fitted on gives the shipped table back.
    assert policy.probability.table == ScoringPolicy().probability.table
    code = main(["backtest", "--invoices", str(IBM), "--split-date", "2013-01-01", "--policy",
                 str(written), "--bootstrap", "0", "--json"])  # fmt: skip
    again = json.loads(capsys.readouterr().out)
    assert again["calibration"] == report["calibration"]
    assert again["brier"] == report["brier"]


def test_fit_follows_the_policy_s_window_and_thin_file_table(tmp_path: Path, capsys) -> None:
    method = tmp_path / "method.toml"
    method.write_text("[probability]\nfit_window_days = 120\nfit_by_file = true\n")
    written = tmp_path / "fitted.toml"
    code = main(["backtest", "--invoices", str(IBM), "--split-date", "2013-01-01", "--policy",
                 str(method), "--fit", "--write-policy", str(written), "--bootstrap", "0",
                 "--json"])  # fmt: skip
    assert code == 0
    fit = json.loads(capsys.readouterr().out)["fit"]
    history = read_history(IBM, "ibm-ar")
    rows, _ = known_at_split(history, range(len(history)), 0, SPLIT)
    recent = [i for i in rows if history.issue[i] >= SPLIT.toordinal() - 120]
    assert fit["window_days"] == 120 and fit["by_file"] is True
    assert fit["invoices"] == len(recent) < len(rows)
    policy = ScoringPolicy.model_validate(tomllib.loads(written.read_text()))
    assert policy.probability.fit_window_days == 120 and policy.probability.fit_by_file
    assert [list(row) for row in policy.probability.thin_file_table] == fit["thin_file_table"]
    assert [list(row) for row in policy.probability.table] == fit["table"]
    assert "under the thin-file rule" in policy.probability.fitted_on
    # The file holds what the replay used: the same probabilities from the written policy.
    run = replay(history, policy)
    thin = {i for i in range(len(history)) if run.thin_file[i]}
    assert thin  # first invoices, at least
    for i in range(len(history)):
        table = policy.probability.thin_file_table if i in thin else policy.probability.table
        if table:
            assert run.probability[i] == pytest.approx(probability_for(run.score[i], table))


def test_compare_prints_the_gain_and_its_interval(tmp_path: Path, capsys) -> None:
    same = tmp_path / "same.toml"
    same.write_text("[policy]\n" + policy_to_toml(ScoringPolicy()))
    code = main(["backtest", "--invoices", str(IBM), "--split-date", "2013-01-01", "--compare",
                 str(same), "--bootstrap", "100", "--json"])  # fmt: skip
    assert code == 0
    compare = json.loads(capsys.readouterr().out)["compare"]
    assert compare["reference"] == "same.toml"
    assert compare["gain"]["0"] == 0.0
    assert compare["gain_ci"]["0"] == [0.0, 0.0]


def test_write_policy_without_fit_is_refused(tmp_path: Path, capsys) -> None:
    code = main(["backtest", "--invoices", str(IBM), "--write-policy", str(tmp_path / "p.toml")])
    assert code == 78
    assert "--write-policy: needs --fit" in capsys.readouterr().err


def test_invalid_policy_file_names_the_setting(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[weights]\ndbt = -5\n")
    code = main(["backtest", "--invoices", str(IBM), "--compare", str(bad)])
    assert code == 78
    assert "weights.dbt" in capsys.readouterr().err


# Out-of-time figures of the shipped model, recorded once the model was chosen (they played no part
# in choosing it: bench/select_model.py uses the period before the split only). A regression
# tolerance, not a target: a change that lowers them beyond it must say why.
SHIPPED = json.loads((ROOT / "bench" / "results" / "backtest-ibm-v2.json").read_text())
TOLERANCE = 0.005


def test_out_of_time_figures_do_not_regress_from_the_shipped_model(ibm_report) -> None:
    report = ibm_report.to_dict()
    for key in ("0", "15"):
        assert report["auc"][key] >= SHIPPED["auc"][key] - TOLERANCE, key
    assert report["band_auc"] >= SHIPPED["band_auc"] - TOLERANCE
    assert report["brier"] <= SHIPPED["brier"] + TOLERANCE
    assert report["positives"] == SHIPPED["positives"]
    # The composite is not beaten by any of its own factors (issue 17).
    best = max(row["auc"] for row in report["factors"] if row["auc"] is not None)
    assert report["auc"]["0"] >= best - 0.002
