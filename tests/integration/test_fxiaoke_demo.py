"""`crm-risk demo --crm fxiaoke`: ratings, Chinese reasons and follow-ups, then a second sync that writes nothing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from adapters.fxiaoke.auth import forget_all
from connector.cli.main import main


def test_the_fxiaoke_demo_scores_in_chinese_and_its_second_sync_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    forget_all()
    assert main(["demo", "--crm", "fxiaoke", "--accounts", "30", "--keep", str(tmp_path)]) == 0
    out = re.sub(r"\s+", " ", capsys.readouterr().out)
    first = re.search(
        r"First sync: read 30 accounts and (\d+) invoices, scored 30, wrote 30 accounts, created (\d+) tasks",
        out,
    )
    assert first and int(first.group(1)) > 200 and int(first.group(2)) > 0, out[:600]
    assert "exposure in CNY" in out
    assert re.search(r"[逾期评级额度敞口]", out)  # Chinese reasons and task texts
    assert "Second sync: wrote 0 accounts, created 0 tasks" in out
    config = (tmp_path / "fxiaoke" / "crm-risk.toml").read_text()
    assert 'language = "zh"' in config and 'mapping = "fxiaoke.payment-plan"' in config
