"""The core never imports an adapter, and the sandboxes import neither the core nor the adapters."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def is_module(name: str) -> bool:
    """Whether `name` is one of the project's modules or packages (not a name inside one)."""
    where = ROOT.joinpath(*name.split("."))
    return where.with_suffix(".py").is_file() or (where / "__init__.py").is_file()


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            # `from connector import cli` imports the module connector.cli, not just the
            # package; `from connector import __version__` imports only the package.
            for alias in node.names:
                name = f"{node.module}.{alias.name}"
                if is_module(name):
                    names.add(name)
    return names


def python_files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def test_imported_modules_sees_both_import_forms(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import adapters.zoho\nfrom adapters.salesforce import SalesforceAdapter\n")
    assert imported_modules(sample) == {"adapters.zoho", "adapters.salesforce"}


def test_imported_modules_sees_a_module_imported_from_its_package(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("from connector import cli, __version__\nfrom connector import registry\n")
    assert imported_modules(sample) == {"connector", "connector.cli", "connector.registry"}
    core = {name for name in imported_modules(sample) if name.split(".")[0] == "connector"}
    # An adapter doing this would import more than the contract.
    assert not core <= ALLOWED_CORE_FOR_ADAPTERS


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


# What naming a CRM looks like in code: the kinds the registry knows, their API dialects and
# hosts. Docstrings may mention CRMs as examples; identifiers and other strings may not.
CRM_WORDS = {"salesforce", "zoho", "fxiaoke", "sfdc", "sforce", "soql", "coql", "zohoapis"}


def crm_names_in_code(path: Path, words: set[str]) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = "" if id(node) in docstrings else node.value
        elif isinstance(node, ast.Name):
            text = node.id
        elif isinstance(node, ast.Attribute):
            text = node.attr
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            text = node.name
        elif isinstance(node, ast.arg):
            text = node.arg
        elif isinstance(node, ast.alias):
            text = node.name
        elif isinstance(node, ast.keyword):
            text = node.arg or ""
        else:
            continue
        if any(word in text.lower() for word in words):
            found.append(f"{getattr(node, 'lineno', 0)}: {text[:60]!r}")
    return sorted(found, key=lambda hit: int(hit.split(":")[0]))


def test_crm_name_check_sees_identifiers_and_strings_but_not_docstrings(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        '"""Works with Salesforce and Zoho."""\n'
        "def f(zoho_id):\n    '''Zoho example.'''\n    return 'x'\n"
        "URL = 'https://soap.sforce.com'\ncase = mapping.crm == 'salesforce'\n"
    )
    assert [hit.split(":")[0] for hit in crm_names_in_code(sample, CRM_WORDS)] == ["2", "5", "6"]


@pytest.mark.parametrize("path", python_files("connector"), ids=lambda p: str(p.relative_to(ROOT)))
def test_core_names_no_crm_in_code(path: Path) -> None:
    from connector.registry import available_adapters, available_sandboxes

    builtin = {"salesforce", "zoho"}
    assert builtin <= set(available_adapters()), "a built-in adapter is not registered"
    words = CRM_WORDS | {kind for kind in available_adapters() + available_sandboxes()}
    words -= {"fake"}  # the test-only in-memory CRM
    hits = crm_names_in_code(path, words)
    assert not hits, f"{path.relative_to(ROOT)} names a CRM: {hits}"


# The import rule, read left to right: a module imports its own package, the contract, and
# layers to its left. Domain packages do not import each other.
CONTRACT = {
    "connector",
    "connector.errors",
    "connector.redaction",
    "connector.models",
    "connector.protocol",
    "connector.logs",
}
DOMAIN = {"mapping", "scoring", "planning", "store"}
LAYERS = ["contract", "domain", "registry", "config", "engine", "service", "cli"]
# Packages that sit on a layer without being named after it.
PLACED = {"report": "engine", "__main__": "cli"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> tuple[str, str]:
    """(layer, package) of a connector module."""
    if module in CONTRACT:
        return "contract", ""
    package = module.split(".")[1]
    if package in DOMAIN:
        return "domain", package
    return PLACED.get(package, package), package


def test_layer_table_places_every_core_module() -> None:
    for path in python_files("connector"):
        layer, _package = layer_of(module_name(path))
        assert layer in LAYERS, f"{module_name(path)} is on no layer of the table"


@pytest.mark.parametrize("path", python_files("connector"), ids=lambda p: str(p.relative_to(ROOT)))
def test_core_imports_follow_the_layer_table(path: Path) -> None:
    layer, package = layer_of(module_name(path))
    wrong = []
    for name in imported_modules(path):
        if not name.startswith("connector.") or name.split(".")[1] == package:
            continue
        their_layer, _ = layer_of(name)
        if their_layer == "domain" == layer:
            wrong.append(f"{name} (domain packages do not import each other)")
        elif LAYERS.index(their_layer) > LAYERS.index(layer):
            wrong.append(f"{name} ({their_layer} is right of {layer})")
    assert not wrong, f"{module_name(path)} imports {wrong}"


@pytest.mark.parametrize("path", python_files("adapters"), ids=lambda p: str(p.relative_to(ROOT)))
def test_an_adapter_imports_only_the_kit_and_itself(path: Path) -> None:
    parts = path.relative_to(ROOT).parts
    own = f"adapters.{parts[1]}" if len(parts) > 2 else None
    others = {
        name
        for name in imported_modules(path)
        if name.startswith("adapters.")
        and not name.split(".")[1].startswith("_")
        and not (own and (name == own or name.startswith(own + ".")))
    }
    assert not others, f"{path.relative_to(ROOT)} imports another adapter: {sorted(others)}"
