"""Review point 4 (issue 22): a lone UTF-16 surrogate in a CRM string ("\\ud800", which JSON allows
and Python decodes, but UTF-8 cannot encode) quarantines that one record with a message saying
which field and where; the run goes on, and the store, the logs and every output stay valid."""

from __future__ import annotations

import io
import json
import logging

import pytest

from connector.cli.main import main
from connector.logs import setup_logging
from tests.badinput.conftest import Env, assert_bad_text_held, with_bad_text
from tests.fakes import FakeAdapter


def test_point4_a_lone_surrogate_quarantines_one_record_and_the_run_goes_on(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    crm, expected = with_bad_text(env, "Broken \ud800 name", "INV-\udc00", "\ud83d")
    stream = io.StringIO()
    setup_logging("json", "INFO", stream=stream)
    try:
        report = env.sync(FakeAdapter(crm))
    finally:
        logging.getLogger().handlers.clear()

    found = assert_bad_text_held(report, crm, expected)
    reason = found["A002"]["reason"]
    assert reason.startswith("record A002: name (Name): text is not valid Unicode")
    assert "\\ud800 at character 8" in reason and "correct the value in the CRM" in reason
    assert found["A003-X"]["account_id"] == "A003"
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
