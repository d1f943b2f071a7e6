"""tests/unit stays pure and fast: no PostgreSQL, no sandbox CRM, no running scheduler (issue 15).

Those belong to tests/integration (or the sandbox, conformance and chaos tiers), which CI runs too;
the README's table says what runs where.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

UNIT = Path(__file__).parent
# What only a slower tier may use: the session's PostgreSQL cluster, a sandbox CRM over HTTPS,
# the scheduler service started on its threads.
SLOW_PARTS = re.compile(
    r"\b(pg_url|pg_cluster|pg_server|throwaway_cluster|sandbox_starter|start_sandbox"
    r"|start_(?:salesforce|zoho|fxiaoke))\b|\bservice\.start\(\)"
)


@pytest.mark.parametrize(
    "path",
    sorted(set(UNIT.glob("test_*.py")) - {Path(__file__)}),
    ids=lambda p: p.name,
)
def test_unit_tests_use_no_database_server_sandbox_or_running_scheduler(path: Path) -> None:
    hits = [
        f"{number}: {line.strip()}"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if SLOW_PARTS.search(line)
    ]
    assert not hits, f"{path.name} belongs in tests/integration: {hits}"
