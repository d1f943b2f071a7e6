"""The core never imports an adapter, and the sandboxes import neither the core nor the adapters."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def python_files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def test_imported_modules_sees_both_import_forms(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import adapters.zoho\nfrom adapters.salesforce import SalesforceAdapter\n")
    assert imported_modules(sample) == {"adapters.zoho", "adapters.salesforce"}


@pytest.mark.parametrize("path", python_files("connector"), ids=lambda p: str(p.relative_to(ROOT)))
def test_core_never_imports_adapters(path: Path) -> None:
    offending = {
        name for name in imported_modules(path) if name.split(".")[0] in {"adapters", "sandboxes"}
    }
    assert not offending, f"{path.relative_to(ROOT)} imports {sorted(offending)}"


@pytest.mark.parametrize("path", python_files("sandboxes"), ids=lambda p: str(p.relative_to(ROOT)))
def test_sandboxes_import_nothing_from_core_or_adapters(path: Path) -> None:
    offending = {
        name for name in imported_modules(path) if name.split(".")[0] in {"connector", "adapters"}
    }
    assert not offending, f"{path.relative_to(ROOT)} imports {sorted(offending)}"


ALLOWED_CORE_FOR_ADAPTERS = {
    "connector",
    "connector.errors",
    "connector.models",
    "connector.protocol",
    "connector.redaction",
}


@pytest.mark.parametrize(
    "path",
    [p for p in python_files("adapters") if "sandbox" not in p.parts],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_adapters_import_only_the_core_contract(path: Path) -> None:
    core = {name for name in imported_modules(path) if name.split(".")[0] == "connector"}
    assert core <= ALLOWED_CORE_FOR_ADAPTERS, (
        f"{path.relative_to(ROOT)} imports {sorted(core - ALLOWED_CORE_FOR_ADAPTERS)}"
    )
