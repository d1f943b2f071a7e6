"""Issue 21, points 12 and 13: `check` and the demo say what matters once, and leave nothing behind.

Against both sandbox CRMs: Zoho's built-in `-None-` picklist option is no warning, `check`
prints its `ok` line with warnings and warns about unset task owners; refused or missing task
owners are logged once per run, saying where the tasks went (tests/integration/test_engine.py); the demo prints its as-of date,
removes its temporary folder, and a kept folder still answers `check` with a documented code.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from connector.cli.main import main
from connector.errors import EXIT_TEMPFAIL
from tests.integration.conftest import Org


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, " ".join(out.split()), " ".join(err.split())


# -- point 12 -----------------------------------------------------------------------------------


def test_point12_check_passes_the_stock_preset_without_picklist_noise_and_says_ok(
    org: Org, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "check")

    assert code == 0, err
    assert out.startswith(f"ok sandbox_{org.crm}: config, credentials and mapping")
    assert "-None-" not in out and "picklist" not in out


def test_point12_check_warns_that_task_owners_are_left_to_the_crm(
    org: Org, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "check")
    document = json.loads(run(capsys, "check", "--json")[1])

    assert code == 0
    assert "2 warnings:" in out
    assert "[tasks] credit_manager_id (in crm-risk.toml) is empty" in out
    assert "go to the account owner" in out
    assert "[tasks] fallback_owner_id (not set): tasks of an account without an active owner" in out
    keys = {p["key"] for p in document["connections"][f"sandbox_{org.crm}"]["problems"]}
    assert {"tasks.credit_manager_id", "tasks.fallback_owner_id"} <= keys
    assert document["ok"] is True


def test_point12_setting_the_owners_silences_the_warnings(
    org: Org, capsys: pytest.CaptureFixture[str]
) -> None:
    text = org.config.read_text().replace(
        'credit_manager_id = ""', 'credit_manager_id = "credit-manager"\nfallback_owner_id = "x"'
    )
    org.config.write_text(text)

    code, out, _ = run(capsys, "check")

    assert code == 0 and "warning" not in out


# -- point 13 -----------------------------------------------------------------------------------


@pytest.fixture
def demo_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private temp folder, to see what the demo leaves behind."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def test_point13_the_demo_prints_its_as_of_date_and_leaves_no_folder_behind(
    demo_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "demo", "--crm", "zoho", "--accounts", "12")

    assert code == 0
    assert "scored as of 2026-11-01" in out and "`crm-risk sync` scores as of today" in out
    left = [path for path in demo_tmp.rglob("*") if path.is_file()]
    # Only the portfolio report a person may still open; no state database or secrets file.
    assert all(path.name == "report.html" for path in left), left


def test_point13_a_kept_demo_folder_answers_check_with_a_documented_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kept = tmp_path / "demo"
    code, out, _ = run(
        capsys, "demo", "--crm", "salesforce", "--accounts", "12", "--keep", str(kept)
    )
    assert code == 0 and f"Demo state and config kept in {kept}" in out
    config = kept / "salesforce" / "crm-risk.toml"

    code, _, err = run(capsys, "check", "--config", str(config))

    # The sandbox stopped with the demo: unreachable (75), not a crash or a vanished CA file.
    assert code == EXIT_TEMPFAIL, err
    assert "ca_bundle" not in err and "crash" not in err
    code, out, _ = run(capsys, "status", "--config", str(config))
    assert code == 0 and "succeeded" in out


# -- point 15 -----------------------------------------------------------------------------------


def test_point15_sandbox_serve_help_describes_every_option_with_its_default(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["sandbox", "serve", "--help"])
    out = capsys.readouterr().out
    options = out.split("options:")[1]

    for option, default in (
        ("--port", "(default: 0)"),
        ("--accounts", "(default: 60)"),
        ("--seed", "(default: 7)"),
        ("--latency-ms", "(default: 0)"),
        ("--faults", "(default: none)"),
        ("--state-file", "(default: in memory)"),
    ):
        entry = " ".join(options.split(option, 1)[1].split("--", 1)[0].split())
        assert default in entry, (option, entry)
    assert "Serve a local sandbox CRM" in out


def test_point15_debug_logs_every_crm_call(org: Org, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    code = main(["check", "--log-level", "DEBUG", "--log-format", "json"])
    err = capsys.readouterr().err

    assert code == 0, err
    calls = [
        json.loads(line)
        for line in err.splitlines()
        if line.startswith("{") and json.loads(line)["level"] == "debug"
    ]
    described = [line for line in calls if org.sandbox.base_url.split("//")[1] in json.dumps(line)]
    assert described, calls[:5]


def test_point15_chinese_reasons_and_tasks_as_the_readme_says(
    org: Org, capsys: pytest.CaptureFixture[str]
) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert '`[policy] language = "zh"`' in readme and '`[tasks] language = "zh"`' in readme
    text = org.config.read_text().replace("[tasks]\n", '[tasks]\nlanguage = "zh"\n', 1)
    org.config.write_text('[policy]\nlanguage = "zh"\n\n' + text)

    org.sync(capsys)

    from tests.crm_user import crm_user, open_marked_tasks

    user = crm_user(org.sandbox)
    reasons = [values["risk_reasons"] for values in user.account_values().values()]
    # Our tasks (with the connector's marker), not the ones people made in the sandbox.
    subjects = [task["subject"] for task in open_marked_tasks(user)]
    assert reasons and subjects

    def chinese(text: str | None) -> bool:
        return any("\u4e00" <= ch <= "\u9fff" for ch in text or "")

    assert all(chinese(text) for text in reasons if text)
    assert all(chinese(text) for text in subjects)


# -- point 14 -----------------------------------------------------------------------------------


def _map_a_new_field(org: Org) -> None:
    """The admin's mapping adds a field the CRM does not have yet."""
    import re

    text = org.config.read_text()
    preset = re.search(r'^mapping = "([^"]+)"', text, flags=re.MULTILINE)
    assert preset
    suffix = "__c" if org.crm == "salesforce" else ""
    mapping = org.folder / "with-new-fields.toml"
    mapping.write_text(
        f'extends = "{preset.group(1)}"\nname = "with-new-fields"\n[objects.account.fields]\n'
        f'probability_late = {{ crm = "Probability_Late{suffix}", type = "percent", '
        'direction = "write" }\n'
    )
    org.config.write_text(text.replace(preset.group(0), f'mapping = "{mapping.name}"'))


@pytest.mark.parametrize("org", ["zoho"], indirect=True)
def test_point14_zoho_apply_speaks_zohos_types_and_counts_in_words(
    org: Org, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _map_a_new_field(org)
    prompts: list[str] = []
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt: prompts.append(prompt) or "n")

    code, out, _ = run(capsys, "fields", "plan", "--apply")

    assert code == 0
    # Zoho's words: the label, the API name and Zoho's field type (was "Percent(5,4)").
    assert "Probability Late (API name Probability_Late): Percent;" in out
    assert "LongTextArea" not in out and "field-level security" not in out
    assert prompts == ["Create this field in sandbox_zoho (zoho)? [y/N] "]
    assert "nothing created" in out


@pytest.mark.parametrize("org", ["salesforce"], indirect=True)
def test_point14_salesforce_metadata_counts_fields_and_permission_sets_and_says_how_to_deploy(
    org: Org, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "fields", "plan", "--format", "files")
    assert code == 0 and "every mapped custom field exists: no metadata to write" in out

    _map_a_new_field(org)
    output = org.folder / "metadata"
    code, out, _ = run(capsys, "fields", "plan", "--format", "files", "--output", str(output))

    assert code == 0
    assert f"wrote 1 field file and 1 permission set under {output}" in out
    assert "sfdx-project.json" in out and "sf project generate" in out
    assert (output / "objects/Account/fields/Probability_Late__c.field-meta.xml").is_file()

    project = org.folder / "dx"
    (project / "force-app/main/default").mkdir(parents=True)
    (project / "sfdx-project.json").write_text('{"packageDirectories": [{"path": "force-app"}]}')
    target = project / "force-app/main/default"
    code, out, _ = run(capsys, "fields", "plan", "--format", "files", "--output", str(target))
    assert code == 0
    assert (
        f"deploy from {project}: sf project deploy start --source-dir force-app/main/default" in out
    )
