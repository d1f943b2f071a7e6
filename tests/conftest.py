"""Markers by folder, so `pytest -m unit` picks the cheap tests (as singer-sdk does)."""

from __future__ import annotations

from pathlib import Path

import pytest

TESTS = Path(__file__).parent
MARKERS = {
    "unit": "unit",
    "adapters": "adapters",
    "conformance": "conformance",
    "integration": "integration",
    "sandbox": "sandbox",
    "chaos": "chaos",
    "clients": "clients",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        try:
            relative = Path(str(item.fspath)).relative_to(TESTS)
        except ValueError:
            continue
        marker = MARKERS.get(relative.parts[0]) if len(relative.parts) > 1 else None
        if marker:
            item.add_marker(getattr(pytest.mark, marker))
