"""probability_late lands in an optional CRM field: created through the CRM's API, mapped, written by sync."""

from __future__ import annotations

import textwrap
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from connector.config import load_config
from connector.engine.sync import SyncOptions, run_sync
from connector.mapping import load_mapping
from connector.mapping.check import check_mapping, plan_fields
from connector.protocol import FieldCreator, FieldSpec
from connector.registry import available_sandboxes, create_adapter, sandbox_starter
from connector.store import open_store

AS_OF = date(2026, 11, 1)


def test_probability_late_is_written_to_a_mapped_percent_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if "zoho" not in available_sandboxes():
        pytest.skip("zoho sandbox not installed")
    mapping_file = tmp_path / "with-probability.toml"
    mapping_file.write_text(
        'extends = "zoho.inventory"\nname = "with-probability"\n[objects.account.fields]\n'
        'probability_late = { crm = "Probability_Late", type = "percent", direction = "write" }\n'
    )
    with sandbox_starter("zoho")(accounts=12, seed=3) as sandbox:
        for key, value in sandbox.env_vars().items():
            monkeypatch.setenv(key, value)
        snippet = sandbox.config_snippet().replace(
            'mapping = "zoho.inventory"', f'mapping = "{mapping_file.as_posix()}"'
        )
        config_path = tmp_path / "crm-risk.toml"
        config_path.write_text(
            textwrap.dedent(f'[store]\nurl = "{(tmp_path / "state.db").as_posix()}"\n') + snippet
        )
        config = load_config(config_path)
        connection = config.connection(sandbox.connection_name)
        mapping = load_mapping(connection.mapping)
        store = open_store(config.store.url)
        adapter = create_adapter(connection.crm_settings(), state=store, sleep=lambda s: None)
        try:
            # The admin's path: `fields plan --apply` creates the missing field through the API.
            missing = plan_fields(mapping, adapter.describe)
            assert [item.field for item in missing] == ["Probability_Late"]
            assert isinstance(adapter, FieldCreator)
            results = adapter.create_fields(
                "Accounts",
                [
                    FieldSpec(
                        name=m.field,
                        label=m.label,
                        type=m.field_type,
                        length=m.length,
                        precision=m.precision,
                        scale=m.scale,
                    )
                    for m in missing
                ],
            )
            assert [r.status for r in results] == ["ok"]
            errors = [
                p
                for p in check_mapping(mapping, adapter.describe)
                if getattr(p, "severity", "error") == "error"
            ]
            assert errors == []

            report = run_sync(
                config=config,
                connection=connection,
                adapter=adapter,
                store=store,
                mapping=mapping,
                options=SyncOptions(as_of=AS_OF, portfolio=False),
            )
            assert report.status in ("succeeded", "succeeded_with_rejections")
            checked = 0
            for stored in store.iter_accounts(connection.name):
                assessment = store.get_assessment(connection.name, stored.account.crm_id)
                assert assessment is not None and assessment.probability_late is not None
                record = next(
                    r
                    for r in sandbox.emulator.records("Accounts")
                    if str(r["id"]) == stored.account.crm_id
                )
                expected = Decimal(str(round(assessment.probability_late, 4))) * 100
                assert Decimal(str(record["Probability_Late"])) == expected.quantize(
                    Decimal("0.01")
                )
                checked += 1
            assert checked == 12
            # Nothing changed, nothing rewritten: the field reads back as it was written.
            again = run_sync(
                config=config,
                connection=connection,
                adapter=adapter,
                store=store,
                mapping=mapping,
                options=SyncOptions(as_of=AS_OF, portfolio=False),
            )
            assert again.writes.get("account", {}).get("written", 0) == 0
        finally:
            adapter.close()
            store.close()
