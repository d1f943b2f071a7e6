"""Docs are checked like code: every CLI command is in the README and has help; examples load."""

from __future__ import annotations

import argparse
import ast
import re
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


def _readme_exit_codes() -> dict[int, str]:
    section = README.split("### Exit codes", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return {int(row.split("`")[1]): row for row in rows}


def test_readme_exit_code_table_matches_the_codes_constants() -> None:
    from connector.errors import EXIT_CODES

    documented = _readme_exit_codes()
    # The same codes, no more and no fewer: a code the CLI can exit with is in the table.
    assert sorted(documented) == sorted(EXIT_CODES)
    assert 2 not in documented, "argparse's 2 is no longer an exit code: usage errors exit 64"


def test_cli_help_lists_the_same_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    from connector.errors import EXIT_CODES

    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out.split("exit codes:", 1)[1]
    listed = sorted(
        int(line.split()[0]) for line in text.strip().splitlines() if line[:3].strip().isdigit()
    )
    assert listed == sorted(EXIT_CODES)


def test_readme_names_the_two_setup_commands_and_ci_runs_the_tests() -> None:
    assert "make demo" in README and "make test" in README
    # What CI runs: the commands of .ci/run (its comments are not asserted on).
    commands = [
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    ran = {word for line in commands if line.startswith("make ") for word in line.split()[1:]}
    check_rule = next(
        line for line in (ROOT / "Makefile").read_text().splitlines() if line.startswith("check:")
    )
    # `make check` (what landing runs) and CI run the same targets.
    assert ran == set(check_rule.split()[1:]) == {"lint", "typecheck", "test"}


def test_every_test_folder_carries_its_tier_marker() -> None:
    from tests.conftest import MARKERS

    tests = ROOT / "tests"
    folders = {
        path.relative_to(tests).parts[0]
        for path in tests.rglob("test_*.py")
        if path.parent != tests
    }
    assert folders <= set(MARKERS), f"folders without a marker: {sorted(folders - set(MARKERS))}"


def test_the_version_has_one_source() -> None:
    import tomllib

    from connector import __version__

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "connector.__version__"}
    assert f"## {__version__}" in (ROOT / "CHANGELOG.md").read_text()


def test_contributing_walks_through_adding_a_crm() -> None:
    text = (ROOT / "CONTRIBUTING.md").read_text()
    section = text.split("## Adding a CRM", 1)[1]
    for step in (
        "settings.py",
        "settings_model",
        "ApiClient",
        "create_once",
        "sandboxes/",
        "mappings/",
        "tests/crm_user.py",
    ):
        assert step in section, step
    assert "crm_risk_connector.adapters" in section and "crm_risk_connector.sandboxes" in section


# --- docs/layout.md: the tree and where each v1 piece went -------------------------------------

LAYOUT = ROOT / "docs" / "layout.md"
_REPO_PATH = re.compile(r"`((?:connector|adapters|sandboxes|mappings|tests|bench)/[^`\s]*)`")
_V1_SECTION = "## Where each v1 piece went"


def layout_paths(text: str) -> list[str]:
    """Backticked repository paths the page names as existing now.

    In the v1 section the first cell of a table row is the v1 path (gone by design), so only the
    other cells there are read; everywhere else every backticked path counts.
    """
    paths: list[str] = []
    in_v1 = False
    for line in text.splitlines():
        if line.startswith("## "):
            in_v1 = line.startswith(_V1_SECTION)
        if in_v1 and line.startswith("|"):
            line = "|".join(line.split("|")[2:])
        paths.extend(_REPO_PATH.findall(line))
    return paths


def missing_layout_paths(text: str, root: Path) -> list[str]:
    """The paths (and `path::Name` symbols) of `text` that do not exist under `root`."""
    missing = []
    for named in layout_paths(text):
        path, _, symbol = named.partition("::")
        target = root / path
        exists = target.is_dir() if path.endswith("/") else target.is_file()
        if not exists or (symbol and symbol not in _top_level_names(target)):
            missing.append(named)
    return missing


def _top_level_names(module: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.parse(module.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def test_every_path_the_layout_page_names_exists() -> None:
    text = LAYOUT.read_text()
    assert len(layout_paths(text)) > 200, "the layout page lost its tree"
    assert missing_layout_paths(text, ROOT) == []


def test_the_layout_check_fails_on_a_module_or_symbol_that_is_gone(tmp_path: Path) -> None:
    (tmp_path / "adapters").mkdir()
    (tmp_path / "adapters" / "_http.py").write_text("class ApiClient: ...\n")
    page = (
        "| `adapters/_http.py` | kept |\n"
        "| `adapters/_gone.py` | removed |\n"
        f"{_V1_SECTION}\n"
        "| v1 | v2 |\n"
        "| `connector/cli.py` | `adapters/_http.py::ApiClient`, `adapters/_http.py::Retired` |\n"
    )
    assert missing_layout_paths(page, tmp_path) == [
        "adapters/_gone.py",
        "adapters/_http.py::Retired",
    ]
