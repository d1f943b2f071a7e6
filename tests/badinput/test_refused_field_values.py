"""Issue 22, point 6 on the fake CRM: a value the CRM refuses holds back one field of one account;
an unexplained refusal is retried next run; a deleted field stops the run with exit 78."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta

import pytest

from connector.cli.main import main
from connector.engine.sync import classify_exit
from connector.errors import MappingDriftError
from connector.models import RecordChange, WriteResult
from connector.protocol import FieldDescription, ObjectDescription
from tests.badinput.conftest import Env, crm_state, seed
from tests.fakes import FakeAdapter, FakeCrm


class PicklistWithout(FakeAdapter):
    """A CRM whose RiskBand picklist lacks some values, or whose field was deleted."""

    def __init__(self, crm: FakeCrm, *, missing: set[str], deleted: bool = False) -> None:
        super().__init__(crm)
        self.missing = missing
        self.deleted = deleted
        self.sent_bands: list[str] = []

    def describe(self, crm_object: str) -> ObjectDescription:
        described = super().describe(crm_object)
        if crm_object != "Account":
            return described
        fields = dict(described.fields)
        if self.deleted:
            del fields["RiskBand"]
        else:
            band = fields["RiskBand"]
            fields["RiskBand"] = FieldDescription(
                **{
                    **band.__dict__,
                    "picklist_values": tuple(
                        v for v in band.picklist_values if v not in self.missing
                    ),
                }
            )
        return ObjectDescription(name=described.name, fields=fields)

    def write(self, crm_object: str, changes: Sequence[RecordChange]) -> list[WriteResult]:
        results: list[WriteResult | None] = [None] * len(changes)
        allowed = []
        for index, change in enumerate(changes):
            band = change.fields.get("RiskBand")
            if band is not None:
                self.sent_bands.append(str(band))
            if band is not None and (self.deleted or band in self.missing):
                results[index] = WriteResult(
                    crm_id=change.crm_id,
                    status="rejected",
                    error_code="INVALID_FIELD"
                    if self.deleted
                    else "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                    message=f"RiskBand: bad value for restricted picklist field: {band}",
                    fields=("RiskBand",),
                )
            else:
                allowed.append((index, change))
        written = super().write(crm_object, [change for _, change in allowed]) if allowed else []
        for (index, _), result in zip(allowed, written, strict=True):
            results[index] = result
        return [result for result in results if result is not None]


def _bands(env: Env) -> dict[str, str]:
    crm = FakeCrm()
    seed(crm)
    env.reference(crm)
    return {rid: values["RiskBand"] for rid, values in crm_state(crm)[0].items()}


def test_point6_a_refused_picklist_value_holds_back_that_field_only_and_is_not_resent(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    bands = _bands(env)
    refused = {band for band in bands.values() if band not in ("A", "B")} or {"C"}
    crm = FakeCrm()
    seed(crm)
    adapter = PicklistWithout(crm, missing=refused)

    first = env.sync(adapter)

    accounts, _ = crm_state(crm)
    hit = {rid for rid, band in bands.items() if band in refused}
    assert hit and first.writes["account"]["fields_refused"] == len(hit)
    for rid in hit:
        assert accounts[rid]["RiskBand"] is None
        assert accounts[rid]["RiskScore"] is not None and accounts[rid]["RiskReasons"]
    assert classify_exit(first) == 1
    audit = [row for row in env.store.audit("fake") if row["action"] == "refused"]
    assert {row["record_id"] for row in audit} == hit

    adapter.sent_bands.clear()
    crm.clock += timedelta(days=1)
    second = env.sync(adapter, full=True)

    assert not (set(adapter.sent_bands) & refused), "the refused value is not resent"
    assert second.writes["account"]["fields_held_back"] == len(hit)
    assert classify_exit(second) == 0
    # A known hold: later runs exit 0, and `status` keeps showing it.
    config = str(env.tmp_path / "crm-risk.toml")
    capsys.readouterr()
    assert main(["status", "--config", config, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["connections"]["fake"]["fields_held_back"] == len(hit)
    assert main(["status", "--config", config]) == 0
    assert f"fields held back {len(hit)}" in capsys.readouterr().out

    # An ordinary run after that changes nothing: the accounts are not even planned.
    adapter.sent_bands.clear()
    quiet = env.sync(adapter)
    assert adapter.sent_bands == [] and classify_exit(quiet) == 0

    # The admin adds the values to the picklist: the CRM field changed, so the next ordinary
    # run (no --full, no edit of the accounts) sends them.
    adapter.missing = set()
    third = env.sync(adapter)
    assert sorted(adapter.sent_bands) == sorted(bands[rid] for rid in hit)
    assert third.writes["account"]["fields_held_back"] == 0
    assert third.writes["account"]["fields_refused"] == 0
    assert {rid: crm_state(crm)[0][rid]["RiskBand"] for rid in hit} == {
        rid: bands[rid] for rid in hit
    }
    assert env.store.field_blocks("fake") == []
    assert classify_exit(third) == 0


def test_point6_a_refusal_the_metadata_does_not_explain_is_retried_next_run(env: Env) -> None:
    crm = FakeCrm()
    seed(crm)
    # The value is in the picklist, yet refused (a validation rule, a hiccup).
    adapter = PicklistWithout(crm, missing=set())
    adapter.write = _refuse_once(adapter)  # type: ignore[method-assign]

    first = env.sync(adapter)
    second = env.sync(adapter)

    assert first.writes["account"]["fields_refused"] >= 1
    assert env.store.field_blocks("fake") == []
    assert second.writes["account"]["fields_refused"] == 0
    assert all(values["RiskBand"] for values in crm_state(crm)[0].values())


def _refuse_once(adapter: PicklistWithout):  # type: ignore[no-untyped-def]
    original = FakeAdapter.write
    state = {"done": False}

    def write(crm_object: str, changes: Sequence[RecordChange]) -> list[WriteResult]:
        if state["done"]:
            return original(adapter, crm_object, changes)
        state["done"] = True
        first, rest = changes[0], changes[1:]
        refused = WriteResult(
            crm_id=first.crm_id,
            status="rejected",
            error_code="FIELD_CUSTOM_VALIDATION_EXCEPTION",
            message="RiskBand may not change today",
            fields=("RiskBand",),
        )
        return [refused, *original(adapter, crm_object, list(rest))]

    return write


def test_point6_a_field_deleted_after_check_stops_the_run(env: Env) -> None:
    crm = FakeCrm()
    seed(crm)
    with pytest.raises(MappingDriftError) as raised:
        env.sync(PicklistWithout(crm, missing=set(), deleted=True))

    text = str(raised.value)
    assert raised.value.exit_code == 78
    assert "RiskBand" in text and "objects.account.fields.risk_band" in text
    assert "run `crm-risk check`" in text
