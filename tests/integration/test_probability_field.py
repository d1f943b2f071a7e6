"""probability_late lands in an optional CRM field: created by the admin, mapped, written by sync, read back.

Zoho: the field is created through the CRM's API (`fields plan --apply`). Salesforce: custom
fields are made in Setup or by a Metadata API deploy, not through the REST API the adapter
speaks, so the test adds it as the admin would in Setup and reads the written values back
through the REST API with simple-salesforce (a client we did not write).
"""

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
from connector.registry import create_adapter, sandbox_starter
from connector.store import open_store
from tests.crm_user import SalesforceUser

AS_OF = date(2026, 11, 1)


def test_probability_late_is_written_to_a_mapped_percent_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
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


@pytest.mark.parametrize(
    ("precision", "scale"), [(5, 2), (3, 0)], ids=["Percent(5,2)", "Percent(3,0)"]
)
def test_probability_late_is_written_to_a_salesforce_percent_field_and_read_back_through_rest(
    precision: int, scale: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sandboxes.sf_schema import FieldDef

    with sandbox_starter("salesforce")(accounts=12, seed=3) as sandbox:
        mapping_file = tmp_path / "with-probability.toml"
        mapping_file.write_text(
            f'extends = "{sandbox.mapping}"\nname = "with-probability"\n'
            "[objects.account.fields]\n"
            'probability_late = { crm = "Probability_Late__c", type = "percent", '
            'direction = "write" }\n'
        )
        for key, value in sandbox.env_vars().items():
            monkeypatch.setenv(key, value)
        snippet = sandbox.config_snippet().replace(
            f'mapping = "{sandbox.mapping}"', f'mapping = "{mapping_file.as_posix()}"'
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
            missing = plan_fields(mapping, adapter.describe)
            assert [item.field for item in missing] == ["Probability_Late__c"]
            assert missing[0].field_type == "Percent"
            # The admin creates the field in Setup: Percent(precision, scale) on Account.
            account = sandbox.emulator._object("Account")
            with sandbox.emulator._lock:
                account.fields.append(
                    FieldDef(
                        "Probability_Late__c",
                        "percent",
                        "Probability Late",
                        precision=precision,
                        scale=scale,
                        custom=True,
                    )
                )
                account.__post_init__()
            # The admin's next command (`crm-risk check`) is a new process: a fresh describe.
            adapter.close()
            adapter = create_adapter(connection.crm_settings(), state=store, sleep=lambda s: None)
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
            # Read back over REST: Salesforce percent fields hold 0-100 (45.5 means 45.5 %),
            # rounded to the field's scale.
            rows = SalesforceUser(sandbox).sf.query_all(
                "SELECT Id, Probability_Late__c FROM Account"
            )["records"]
            read_back = {row["Id"]: row["Probability_Late__c"] for row in rows}
            checked = 0
            for stored in store.iter_accounts(connection.name):
                assessment = store.get_assessment(connection.name, stored.account.crm_id)
                assert assessment is not None and assessment.probability_late is not None
                value = read_back[stored.account.crm_id]
                assert isinstance(value, float)
                percent = Decimal(str(round(assessment.probability_late, 4))) * 100
                assert abs(Decimal(str(value)) - percent) <= Decimal(5) / 10 ** (scale + 1)
                checked += 1
            assert checked == 12
            assert len(set(read_back.values())) > 1  # not one value written everywhere
            # Nothing changed, nothing rewritten, even where the field rounded what was sent.
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
