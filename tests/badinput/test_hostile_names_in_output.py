"""Review point 3 (issue 22): account names and values holding Rich console markup are shown as
typed by every human-readable command, never parsed (a `[/]` crashed `quarantine` and `portfolio`
with MarkupError; `[bold]` or `[link=…]` changed what was shown)."""

from __future__ import annotations

import pytest
from rich.console import Console

from connector.cli.main import main
from connector.cli.render import render_report
from tests.badinput.conftest import Env, seed, valid_invoice
from tests.fakes import FakeAdapter, FakeCrm

HOSTILE = {
    "A001": "[bold]Bold Corp[/bold] [link=https://evil.example]click[/link]",
    "A002": "Acme :warning: [red] Ltd",
    "A003": "[/]",
}


def _hostile_book(env: Env) -> None:
    crm = FakeCrm()
    seed(crm)
    for account_id, name in HOSTILE.items():
        crm.put("Account", account_id, Name=name)
    # Quarantined records whose name and value carry markup too.
    crm.put("Account", "A004", Name="[/] held", PaymentTerms=-300)
    crm.put("Invoice", "A000-BAD", **valid_invoice("A000", 40, Number="[/]", Amount="[/bold]"))
    report = env.sync(FakeAdapter(crm))
    assert report.scored and report.held_count == 2
    # The run report itself renders (the `sync` command prints it).
    console = Console(record=True, width=200)
    console.print(render_report(report.to_dict()))
    assert "[/bold]" in console.export_text()


def _out(capsys: pytest.CaptureFixture[str]) -> str:
    return capsys.readouterr().out.replace("\n", "")


def test_point3_markup_in_crm_names_and_values_is_printed_as_typed(
    env: Env, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _hostile_book(env)
    config = str(env.tmp_path / "crm-risk.toml")
    capsys.readouterr()
    monkeypatch.setenv("COLUMNS", "400")  # wide enough that no name is folded across lines

    assert main(["quarantine", "--config", config]) == 0
    text = _out(capsys)
    assert "[/] held" in text and "'[/bold]'" in text and "A000-BAD" in text
    assert "[validation]" in text, "the footer's own brackets are text too"

    assert main(["portfolio", "--config", config, "--connection", "fake"]) == 0
    text = _out(capsys)
    for name in HOSTILE.values():
        assert name in text, name

    assert main(["explain", "--config", config, "--connection", "fake", "A001"]) == 0
    assert HOSTILE["A001"] in _out(capsys)

    for command in (["status"], ["audit", "--connection", "fake"]):
        assert main([*command, "--config", config]) == 0, command
        capsys.readouterr()
