"""Review point 4 (issue 22): a lone UTF-16 surrogate in a CRM string ("\\ud800", which JSON allows
and Python decodes, but UTF-8 cannot encode) quarantines that one record with a message saying
which field and where; the run goes on, and the store, the logs and every output stay valid."""

from __future__ import annotations

import io
import json
import logging

import pytest

from connector.cli.main import main
from connector.engine.sync import classify_exit
from connector.logs import setup_logging
from tests.badinput.conftest import Env, crm_state, seed, valid_invoice
from tests.fakes import FakeAdapter, FakeCrm


def test_point4_a_lone_surrogate_quarantines_one_record_and_the_run_goes_on(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    reference = FakeCrm()
    seed(reference)
    expected, _ = env.reference(reference)

    crm = FakeCrm()
    seed(crm)
    crm.put("Account", "A002", Name="Broken \ud800 name")
    crm.put("Invoice", "A003-X", **valid_invoice("A003", 41, Number="INV-\udc00"))
    # A person typed a cut emoji into a field the connector writes: it is overwritten, not fatal.
    crm.put("Account", "A004", RiskReasons="\ud83d")
    stream = io.StringIO()
    setup_logging("json", "INFO", stream=stream)
    try:
        report = env.sync(FakeAdapter(crm))
    finally:
        logging.getLogger().handlers.clear()

    assert report.status == "succeeded_with_rejections" and classify_exit(report) == 1
    found = {q["record_id"]: q for q in report.quarantined}
    assert set(found) == {"A002", "A003-X"}
    assert {q["rule"] for q in found.values()} == {"INVALID_TEXT"}
    reason = found["A002"]["reason"]
    assert reason.startswith("record A002: name (Name): text is not valid Unicode")
    assert "\\ud800 at character 8" in reason and "correct the value in the CRM" in reason
    assert found["A003-X"]["account_id"] == "A003"
    # Every other account is scored and written as in a clean run; A004's field is overwritten.
    accounts, _ = crm_state(crm)
    for account_id in ("A000", "A001", "A004"):
        assert accounts[account_id] == expected[account_id], account_id
    assert {item["account_id"] for item in report.held} == {"A002", "A003"}
    # The run report, the store and the log lines are valid UTF-8 and parse.
    json.dumps(report.to_dict()).encode()
    for line in stream.getvalue().splitlines():
        json.loads(line)
    [run] = env.store.recent_runs("fake", limit=1)
    assert run["status"] == "succeeded_with_rejections"

    config = str(env.tmp_path / "crm-risk.toml")
    capsys.readouterr()
    assert main(["quarantine", "--config", config, "--json"]) == 0
    out = capsys.readouterr().out
    out.encode("utf-8")
    assert {row["rule"] for row in json.loads(out)["quarantined"]} == {"INVALID_TEXT"}
    assert main(["quarantine", "--config", config]) == 0
    capsys.readouterr().out.encode("utf-8")
