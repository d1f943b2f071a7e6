"""probability_late lands in an optional CRM field: created by the admin, mapped, written by sync, read back.

Zoho: the field is created through the CRM's API (`fields plan --apply`). Salesforce: custom
fields are made in Setup or by a Metadata API deploy, not through the REST API the adapter
speaks, so the test adds it as the admin would in Setup and reads the written values back
through the REST API with simple-salesforce (a client we did not write).
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from connector.config import load_config
from connector.engine.report import RunReport
from connector.engine.sync import SyncOptions, run_sync
from connector.mapping import load_mapping
from connector.mapping.check import check_mapping, plan_fields
from connector.protocol import FieldCreator, FieldSpec
from connector.registry import create_adapter, sandbox_starter
from connector.store import open_store
from tests.crm_user import SalesforceUser

AS_OF = date(2026, 11, 1)


@dataclass(frozen=True)
class PercentField:
    """How the admin adds the probability field on one CRM, and how a test reads it back."""

    crm: str
    field: str
    precision: int
    scale: int
    add: Callable[[Any, Any, list[Any], PercentField], None]
    read_back: Callable[[Any], dict[str, Any]]
    check: Callable[[Any, Decimal, PercentField], None]


def _create_through_the_api(
    sandbox: Any, adapter: Any, missing: list[Any], case: PercentField
) -> None:
    # Zoho: the admin's path is `fields plan --apply`, which creates the field through the API.
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


def _add_in_setup(sandbox: Any, adapter: Any, missing: list[Any], case: PercentField) -> None:
    # Salesforce: custom fields are made in Setup (or a Metadata API deploy), not over REST.
    from sandboxes.sf_schema import FieldDef

    assert missing[0].field_type == "Percent"
    account = sandbox.emulator._object("Account")
    with sandbox.emulator._lock:
        account.fields.append(
            FieldDef(
                case.field,
                "percent",
                "Probability Late",
                precision=case.precision,
                scale=case.scale,
                custom=True,
            )
        )
        account.__post_init__()


def _emulator_records(sandbox: Any) -> dict[str, Any]:
    return {str(r["id"]): r["Probability_Late"] for r in sandbox.emulator.records("Accounts")}


def _simple_salesforce_query(sandbox: Any) -> dict[str, Any]:
    # Read back over REST with simple-salesforce, a client we did not write.
    rows = SalesforceUser(sandbox).sf.query_all("SELECT Id, Probability_Late__c FROM Account")
    return {row["Id"]: row["Probability_Late__c"] for row in rows["records"]}


def _exactly_at_two_places(value: Any, percent: Decimal, case: PercentField) -> None:
    assert Decimal(str(value)) == percent.quantize(Decimal("0.01"))


def _within_half_a_unit_of_the_scale(value: Any, percent: Decimal, case: PercentField) -> None:
    # Salesforce percent fields hold 0-100 (45.5 means 45.5 %), rounded to the field's scale.
    assert isinstance(value, float)
    assert abs(Decimal(str(value)) - percent) <= Decimal(5) / 10 ** (case.scale + 1)


def _salesforce_percent(precision: int, scale: int) -> PercentField:
    return PercentField(
        "salesforce",
        "Probability_Late__c",
        precision,
        scale,
        _add_in_setup,
        _simple_salesforce_query,
        _within_half_a_unit_of_the_scale,
    )


CASES = [
    PercentField(
        "zoho",
        "Probability_Late",
        5,
        2,
        _create_through_the_api,
        _emulator_records,
        _exactly_at_two_places,
    ),
    _salesforce_percent(5, 2),
    _salesforce_percent(3, 0),
]


@pytest.mark.parametrize(
    "case", CASES, ids=["zoho-api", "salesforce-Percent(5,2)", "salesforce-Percent(3,0)"]
)
def test_probability_late_is_written_to_a_percent_field_the_admin_added_and_read_back(
    case: PercentField, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with sandbox_starter(case.crm)(accounts=12, seed=3) as sandbox:
        mapping_file = tmp_path / "with-probability.toml"
        mapping_file.write_text(
            f'extends = "{sandbox.mapping}"\nname = "with-probability"\n'
            "[objects.account.fields]\n"
            f'probability_late = {{ crm = "{case.field}", type = "percent", '
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
            assert [item.field for item in missing] == [case.field]
            case.add(sandbox, adapter, missing, case)
            # The admin's next command (`crm-risk check`) is a new process: a fresh describe.
            adapter.close()
            adapter = create_adapter(connection.crm_settings(), state=store, sleep=lambda s: None)
            errors = [
                p
                for p in check_mapping(mapping, adapter.describe)
                if getattr(p, "severity", "error") == "error"
            ]
            assert errors == []

            def sync() -> RunReport:
                return run_sync(
                    config=config,
                    connection=connection,
                    adapter=adapter,
                    store=store,
                    mapping=mapping,
                    options=SyncOptions(as_of=AS_OF, portfolio=False),
                )

            report = sync()
            assert report.status in ("succeeded", "succeeded_with_rejections")
            read_back = case.read_back(sandbox)
            checked = 0
            for stored in store.iter_accounts(connection.name):
                assessment = store.get_assessment(connection.name, stored.account.crm_id)
                assert assessment is not None and assessment.probability_late is not None
                percent = Decimal(str(round(assessment.probability_late, 4))) * 100
                case.check(read_back[stored.account.crm_id], percent, case)
                checked += 1
            assert checked == 12
            assert len(set(read_back.values())) > 1  # not one value written everywhere
            # Nothing changed, nothing rewritten, even where the field rounded what was sent.
            again = sync()
            assert again.writes.get("account", {}).get("written", 0) == 0
        finally:
            adapter.close()
            store.close()
