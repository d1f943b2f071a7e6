"""Issue 21, points 6, 7 and 11: `audit`, `sync --dry-run` and `status` are read by people.

Against both sandbox CRMs, at the 80 columns of a default terminal: the newest audit entries
first with a hint of how many more, `--since` in the forms people type; a dry run as a summary
naming accounts, every change with `--detail`, one account with `--account`; `status` with
readable times, the reason of a failed run, and no "next run" unless a service is running.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from connector.cli.main import main
from connector.errors import EXIT_USAGE
from tests.crm_user import crm_user
from tests.integration.conftest import AS_OF, Org

ROOT = Path(__file__).resolve().parents[2]
WIDTH = 80


@pytest.fixture(autouse=True)
def terminal_width(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", str(WIDTH))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, " ".join(err.split())


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def assert_fits(out: str, width: int = WIDTH) -> None:
    long = [line for line in out.splitlines() if len(line) > width]
    assert not long, long


# -- point 6: audit answers "what happened lately" ----------------------------------------------


def test_point6_audit_shows_the_newest_entries_first_and_how_many_more(
    org: Org, capsys: pytest.CaptureFixture[str]
) -> None:
    org.sync(capsys)
    every = run_json(capsys, "audit", "--limit", "100000")
    assert len(every) > 20
    ids = [row["id"] for row in every]
    assert ids == sorted(ids, reverse=True), "--json lists the newest first"

    code, out, _ = run(capsys, "audit", "--limit", "5")

    assert code == 0
    assert f"newest 5 of {len(every)}" in out
    assert f"{len(every) - 5} more (older): --since 2h|yesterday" in out
    assert_fits(out)
    names = {account["id"]: account["name"] for account in crm_user(org.sandbox).accounts()}
    shown = every[:5]
    lines = out.splitlines()
    for row, line in zip(shown, lines[2:7], strict=True):
        # Each entry on one line, its account by name (cut to the column), not by id; a
        # digest task (record "@approvals", "@<owner>") says it is a digest.
        assert row["record_id"] not in line
        if row["record_id"].startswith("@"):
            assert "(approvals digest)" in line or "(digest " in line, line
        else:
            assert names[row["record_id"]][:10] in line, (row, line)


def test_point6_audit_renders_task_entries_as_text_not_json(
    org: Org, capsys: pytest.CaptureFixture[str]
) -> None:
    org.sync(capsys)
    every = run_json(capsys, "audit", "--limit", "100000")
    created = [row for row in every if row["action"] == "task_create"]
    assert created, "the seeded book opens tasks"

    code, out, _ = run(capsys, "audit", "--limit", str(len(every)))

    assert code == 0
    task_lines = [line for line in out.splitlines() if " task " in f" {line} "]
    assert len(task_lines) >= len(created)
    assert not any("{" in line or '"' in line for line in task_lines), task_lines[:3]
    subject = str(created[0]["new_value"]["subject"])
    rule = created[0]["field"]
    assert any(f"task {rule} created: " in line for line in task_lines), task_lines[:3]
    assert subject
    assert_fits(out)


@pytest.mark.parametrize("since", ["2h", "30m", "1d", "today", "yesterday", "{today}", "{now}"])
def test_point6_audit_since_accepts_dates_datetimes_and_relative_forms(
    org: Org, capsys: pytest.CaptureFixture[str], since: str
) -> None:
    org.sync(capsys)
    every = run_json(capsys, "audit", "--limit", "100000")
    start = time.localtime(time.time() - 600)
    since = since.format(
        today=time.strftime("%Y-%m-%d", start), now=time.strftime("%Y-%m-%dT%H:%M", start)
    )

    code, out, err = run(capsys, "audit", "--since", since, "--json", "--limit", "100000")

    assert code == 0, err
    assert len(json.loads(out)) == len(every), "the sync just now is inside every window"


def test_point6_audit_since_in_the_future_shows_nothing_and_a_bad_time_is_a_usage_error(
    org: Org, capsys: pytest.CaptureFixture[str]
) -> None:
    org.sync(capsys)

    code, out, _ = run(capsys, "audit", "--since", "2999-01-01")
    assert code == 0 and "no audit entries since 2999-01-01" in out

    code, _, err = run(capsys, "audit", "--since", "last tuesday")
    assert code == EXIT_USAGE
    assert "--since 'last tuesday': not a time" in err and "2h" in err
    assert "Traceback" not in err


def test_point6_audit_of_one_account_by_name(org: Org, capsys: pytest.CaptureFixture[str]) -> None:
    org.sync(capsys)
    every = run_json(capsys, "audit", "--limit", "100000")
    account_id = next(row["record_id"] for row in every if not row["record_id"].startswith("@"))
    name = next(a["name"] for a in crm_user(org.sandbox).accounts() if a["id"] == account_id)

    mine = run_json(capsys, "audit", "--account", name, "--limit", "100000")
    code, out, _ = run(capsys, "audit", "--account", name)

    assert {row["record_id"] for row in mine} == {account_id}
    assert len(mine) == sum(1 for row in every if row["record_id"] == account_id)
    assert code == 0 and f"Audit log of {name} ({account_id})" in " ".join(out.split())


# -- point 7: a dry run people can read ---------------------------------------------------------


def test_point7_dry_run_prints_a_summary_naming_accounts(
    org: Org, capsys: pytest.CaptureFixture[str]
) -> None:
    report = run_json(capsys, "sync", "--dry-run", "--as-of", AS_OF)
    named = {entry["account_id"]: entry["account_name"] for entry in report["planned"]}
    assert all(named.values()), "every planned entry names its account"

    code, out, _ = run(capsys, "sync", "--dry-run", "--as-of", AS_OF)

    assert code == 0
    assert_fits(out)
    assert len(out.splitlines()) < 60, "a summary, not one line per field"
    assert f"First 10 of {len(named)} accounts with changes" in out
    assert "field changes on" in out and "tasks to create:" in out
    assert "None" not in out
    listed = [name for name in named.values() if name[:20] in out]
    assert len(listed) >= 10
    assert not any(account_id in out for account_id in named)


def test_point7_dry_run_detail_gives_each_cause_once_and_old_values_as_empty(
    org: Org, capsys: pytest.CaptureFixture[str]
) -> None:
    report = run_json(capsys, "sync", "--dry-run", "--as-of", AS_OF)
    with_fields = {entry["account_id"] for entry in report["planned"] if "fields" in entry}

    code, out, _ = run(capsys, "sync", "--dry-run", "--detail", "--as-of", AS_OF)

    assert code == 0
    assert_fits(out)
    assert out.count("  why: ") == len(with_fields)
    assert "None" not in out and "(empty) → " in out
    for account_id in with_fields:
        assert account_id in out


def test_point7_dry_run_of_one_account_by_id_or_name_lists_a_kept_manual_edit(
    org: Org, capsys: pytest.CaptureFixture[str]
) -> None:
    first = org.sync(capsys)
    assert first["writes"]["account"]["written"] > 0
    user = crm_user(org.sandbox)
    audit = run_json(capsys, "audit", "--limit", "100000")
    wrote_limit = next(
        row["record_id"]
        for row in audit
        if row["action"] == "update" and row["field"] == "current_credit_limit"
    )
    account = next(a for a in user.accounts() if a["id"] == wrote_limit)
    # A person changes the limit we wrote: the next run keeps it, and the plan says so.
    edited = float(user.get("account", wrote_limit)["credit_limit"]) + 1000
    time.sleep(1.1)
    user.update("account", wrote_limit, {"credit_limit": edited})

    by_name = run(capsys, "sync", "--dry-run", "--account", account["name"], "--as-of", AS_OF)
    by_id = run(capsys, "sync", "--dry-run", "--account", account["id"], "--as-of", AS_OF)

    for code, out, err in (by_name, by_id):
        assert code == 0, err
        assert_fits(out)
        assert f"{account['name']} ({account['id']})" in out
        assert "current_credit_limit" in out and f"kept CRM value: CRM {edited:.2f}" in out
    other = next(a for a in user.accounts() if a["id"] != account["id"])
    assert other["name"] not in by_name[1]


def test_point7_detail_and_account_need_dry_run(
    org: Org, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "sync", "--detail")

    assert code == EXIT_USAGE and "add --dry-run" in err


# -- point 11: status says what is going on ------------------------------------------------------


def test_point11_status_without_a_service_shows_no_next_run_and_readable_times(
    org: Org, capsys: pytest.CaptureFixture[str]
) -> None:
    org.sync(capsys)

    status = run_json(capsys, "status")
    code, out, _ = run(capsys, "status")

    assert status["service_running"] is False
    connection = status["connections"][f"sandbox_{org.crm}"]
    assert connection["next_run"] is None and connection["due_at"]
    # The same boolean at run level as inside the report (was 0 and false).
    assert [run["dry_run"] for run in status["runs"]] == [False]
    assert status["runs"][0]["report"]["dry_run"] is False
    assert code == 0
    assert_fits(out)
    text = " ".join(out.split())
    assert "no run scheduled: no `crm-risk run` service is running" in text
    assert "T" not in out.split("Recent runs")[1].splitlines()[2][:16], "no raw ISO time"
    assert "UTC" in out


def test_point11_status_names_a_run_status_in_words_and_gives_a_failed_runs_reason(
    org: Org, capsys: pytest.CaptureFixture[str]
) -> None:
    org.sync(capsys)
    # Two runs as the service records them: one with rejections, one that could not log in.
    from connector.store import open_store

    store = open_store(str(org.store))
    reason = "credentials refused by the CRM: invalid_grant (connection sandbox_x)"
    for run_id, outcome, message in (
        ("20261201T080000-aaaaaa", "succeeded_with_rejections", ""),
        ("20261201T090000-bbbbbb", "failed", reason),
    ):
        store.start_run(run_id, f"sandbox_{org.crm}", "schedule")
        store.finish_run(run_id, outcome, {"run_id": run_id, "status": outcome, "message": message})
    store.close()
    status = run_json(capsys, "status")
    code, out, _ = run(capsys, "status")

    failed = [run for run in status["runs"] if run["status"] == "failed"]
    assert failed, status["runs"]
    assert code == 0
    text = " ".join(out.split())
    assert "Why:" in text and f"failed: {reason}" in text
    assert "succeeded with rejections" in text
    assert "rejections" not in text.replace("succeeded with rejections", "")
    assert_fits(out)


def test_point11_status_shows_the_next_run_while_a_service_runs(
    org: Org, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.update(org.sandbox.env_vars())
    service = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "connector",
            "run",
            "-c",
            str(org.config),
            "--interval-seconds",
            "3600",
        ],
        cwd=org.folder,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            time.sleep(0.5)
            if org.store.exists():
                status = run_json(capsys, "status")
                if status["service_running"] and status["runs"]:
                    break
        assert status.get("service_running"), status
        code, out, _ = run(capsys, "status")
        assert code == 0
        text = " ".join(out.split())
        assert "next run 20" in text and " UTC (in " in text, out
        assert "no run scheduled" not in out
    finally:
        service.send_signal(signal.SIGTERM)
        # communicate() reads the pipe to its end and closes it (a bare wait() leaves it open).
        service.communicate(timeout=60)
    status = run_json(capsys, "status")
    assert status["service_running"] is False


# -- point 8: explain finds the account people mean and says what it keeps -------------------------


def test_point8_explain_of_an_unknown_account_exits_64_saying_what_to_give(
    org: Org, capsys: pytest.CaptureFixture[str]
) -> None:
    org.sync(capsys)

    code, out, err = run(capsys, "explain", "Nobody Ltd")

    assert code == EXIT_USAGE, err
    assert "invalid configuration" not in err
    assert "no account with the id or name 'Nobody Ltd'" in err
    assert "give the CRM record id or the account name" in err

    code, out, _ = run(capsys, "explain", "Nobody Ltd", "--json")
    assert code == EXIT_USAGE and json.loads(out)["error"]["exit_code"] == EXIT_USAGE


def test_point8_explain_finds_an_account_by_name_or_part_of_it(
    org: Org, capsys: pytest.CaptureFixture[str]
) -> None:
    org.sync(capsys)
    accounts = crm_user(org.sandbox).accounts()
    target = accounts[3]

    by_name = run_json(capsys, "explain", target["name"])
    by_case = run_json(capsys, "explain", target["name"].upper())

    assert by_name["account"]["crm_id"] == by_case["account"]["crm_id"] == target["id"]
    # A part shared by several names lists them with their ids.
    word = target["name"].split()[0]
    sharing = [a for a in accounts if word.casefold() in a["name"].casefold()]
    code, _, err = run(capsys, "explain", word)
    if len(sharing) > 1:
        assert code == EXIT_USAGE and f"matches {len(sharing)} accounts" in err
        assert all(a["id"] in err for a in sharing[:8])
    else:
        assert code == 0


@pytest.mark.parametrize("org", ["salesforce"], indirect=True)
def test_point8_explain_accepts_the_15_character_salesforce_id(
    org: Org, capsys: pytest.CaptureFixture[str]
) -> None:
    org.sync(capsys)
    account = crm_user(org.sandbox).accounts()[5]
    assert len(account["id"]) == 18

    shown = run_json(capsys, "explain", account["id"][:15])

    assert shown["account"]["crm_id"] == account["id"]


def test_point8_explain_json_gives_limit_figures_with_currencies_and_numbered_steps(
    org: Org, capsys: pytest.CaptureFixture[str]
) -> None:
    org.sync(capsys)
    account = crm_user(org.sandbox).accounts()[0]

    shown = run_json(capsys, "explain", account["id"])
    code, out, _ = run(capsys, "explain", account["id"])

    limit = shown["limit"]
    assert limit["currency"] and limit["current_currency"] and limit["home_currency"]
    steps = shown["limit_derivation"]
    assert steps and [step["step"] for step in steps] == list(range(1, len(steps) + 1))
    assert all(isinstance(step["text"], str) for step in steps)
    assert code == 0
    current = shown["account"]["current_credit_limit"]
    if current is not None:
        assert f"current limit {float(current):,.0f} {limit['current_currency']}" in out


def test_point8_explain_says_when_a_manual_value_in_the_crm_is_kept(
    org: Org, capsys: pytest.CaptureFixture[str]
) -> None:
    org.sync(capsys)
    audit = run_json(capsys, "audit", "--limit", "100000")
    account_id = next(
        row["record_id"]
        for row in audit
        if row["action"] == "update" and row["field"] == "current_credit_limit"
    )
    user = crm_user(org.sandbox)
    edited = float(user.get("account", account_id)["credit_limit"]) + 1000
    time.sleep(1.1)
    user.update("account", account_id, {"credit_limit": edited})
    org.sync(capsys)

    shown = run_json(capsys, "explain", account_id)
    code, out, _ = run(capsys, "explain", account_id)

    assert code == 0
    kept = {entry["field"]: entry for entry in shown["kept_in_crm"]}
    assert kept["current_credit_limit"]["action"] == "conflict"
    assert float(kept["current_credit_limit"]["crm_value"]) == edited
    text = " ".join(out.split())
    assert f"current_credit_limit {edited:.2f} kept: a person changed it in the CRM" in text
