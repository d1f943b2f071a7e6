"""Docs are checked like code: every CLI command is in the README and has help; examples load."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from connector.cli.main import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def command_paths(
    parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
) -> list[tuple[str, ...]]:
    paths = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                paths.append((*prefix, name))
                paths.extend(command_paths(sub, (*prefix, name)))
    return paths


COMMANDS = command_paths(build_parser())


def test_there_are_commands() -> None:
    assert ("sync",) in COMMANDS
    assert ("sandbox", "serve") in COMMANDS


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_every_command_is_in_the_readme(path: tuple[str, ...]) -> None:
    assert f"crm-risk {' '.join(path)}" in README


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_every_command_has_help(path: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*path, "--help"])
    assert exited.value.code == 0
    assert "usage: crm-risk" in capsys.readouterr().out


def test_readme_documents_every_exit_code() -> None:
    for code in ("`0`", "`1`", "`2`", "`75`", "`77`", "`78`"):
        assert code in README


def test_readme_names_the_two_setup_commands_and_ci_runs_the_tests() -> None:
    assert "make demo" in README and "make test" in README
    assert "make check" in (ROOT / ".ci" / "run").read_text()
    check_rule = next(
        line for line in (ROOT / "Makefile").read_text().splitlines() if line.startswith("check:")
    )
    assert "test" in check_rule.split()
