"""Junk in any invoice field never crashes a run: each record is stored or quarantined, the others unharmed."""

from __future__ import annotations

import copy
import tempfile
import textwrap
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.config import load_config
from connector.store import open_store
from tests.badinput.conftest import MAPPING, Env, crm_state, seed, valid_invoice
from tests.fakes import FakeAdapter, FakeCrm

FIELDS = (
    "AccountId",
    "IssueDate",
    "DueDate",
    "Amount",
    "OpenAmount",
    "PaidDate",
    "Status",
    "Currency",
    "Number",
)

junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(
        [
            "2026-02-30",
            "2026-04-01T25:00:00Z",
            "0000-00-00",
            "9999-12-31",
            "-1",
            "1e400",
            "EUR",
            "Open",
            "Draft",
        ]
    ),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)
junk_invoice = st.dictionaries(st.sampled_from(FIELDS), junk, min_size=1, max_size=len(FIELDS))


def _env(folder: Path) -> Env:
    config_path = folder / "crm-risk.toml"
    config_path.write_text(
        textwrap.dedent(
            f"""
            [store]
            url = "{folder / "state.db"}"
            [connections.fake]
            kind = "fake"
            mapping = "{MAPPING}"
            auth = "client_credentials"
            """
        )
    )
    # Kept apart from the config, as a user would; the fake CRM never reads it.
    (folder / "crm-risk.secrets.toml").write_text('[connections.fake]\nclient_secret = "unused"\n')
    config = load_config(config_path)
    return Env(config, open_store(config.store.url), folder)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(invoices=st.lists(junk_invoice, min_size=1, max_size=4))
def test_junk_invoices_are_stored_or_quarantined_never_a_crash(
    invoices: list[dict[str, Any]],
) -> None:
    clean = FakeCrm()
    seed(clean, accounts=4)
    dirty = copy.deepcopy(clean)
    for n, overrides in enumerate(invoices):
        # Junk goes to A003 unless its own AccountId is junk: the other accounts must not notice.
        dirty.put("Invoice", f"JUNK-{n}", **valid_invoice("A003", n, **overrides))
    with tempfile.TemporaryDirectory() as folder:
        env = _env(Path(folder))
        try:
            expected_accounts, _ = env.reference(clean)
            report = env.sync(FakeAdapter(dirty))
            # A run that quarantines exits 1 (records need attention), else 0.
            expected_status = "succeeded_with_rejections" if report.quarantined else "succeeded"
            assert report.status == expected_status, report.message
            quarantined = {q["record_id"] for q in report.quarantined}
            assert all(q["reason"].strip() for q in report.quarantined)
            counts = report.objects["invoice"]
            assert counts["invalid"] == len(quarantined)
            assert counts["read"] == 4 * 6 + 1 + len(invoices)
            stored = {
                inv.crm_id
                for account in ("A000", "A001", "A002", "A003")
                for inv in env.store.invoices_for("fake", account)
            }
            for n in range(len(invoices)):
                rid = f"JUNK-{n}"
                # Exactly one fate: quarantined, stored, excluded (Draft) or kept for an unknown account.
                assert not (rid in quarantined and rid in stored)
            accounts, _ = crm_state(dirty)
            touched = {str(o.get("AccountId")) for o in invoices} | {"A003"}
            for account_id, values in expected_accounts.items():
                if account_id not in touched:
                    assert accounts[account_id] == values, account_id
        finally:
            env.store.close()
