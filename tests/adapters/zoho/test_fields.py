"""Zoho field creation (responses): FieldSpec -> settings/fields body, batches of 5, per-field results."""

from __future__ import annotations

import json
from typing import Any

import responses

from adapters.zoho import ZohoAdapter
from adapters.zoho.fields import field_body
from connector.protocol import FieldSpec

from ._support import API

URL = f"{API}/settings/fields"


def ok(name: str) -> dict[str, Any]:
    return {
        "code": "SUCCESS",
        "details": {"id": "1", "api_name": name},
        "message": "field created",
        "status": "success",
    }


def test_types_map_to_zoho_data_types() -> None:
    assert field_body(FieldSpec("Risk_Score", "Risk Score", "Number", precision=18, scale=1)) == {
        "api_name": "Risk_Score",
        "field_label": "Risk Score",
        "data_type": "double",
        "length": 16,
        "decimal_place": 1,
    }
    band = field_body(FieldSpec("Band", "Band", "Picklist", picklist_values=("A", "B")))
    assert band["data_type"] == "picklist"
    assert band["pick_list_values"] == [
        {"display_value": "A", "actual_value": "A"},
        {"display_value": "B", "actual_value": "B"},
    ]
    assert field_body(FieldSpec("N", "N", "LongTextArea", length=40000))["length"] == 32000
    kinds = {
        t: field_body(FieldSpec("X", "X", t))["data_type"]
        for t in ("Currency", "Percent", "Text", "TextArea", "Checkbox", "Date", "DateTime")
    }
    assert kinds == {
        "Currency": "currency",
        "Percent": "percent",
        "Text": "text",
        "TextArea": "textarea",
        "Checkbox": "boolean",
        "Date": "date",
        "DateTime": "datetime",
    }


def test_six_fields_take_two_calls_with_per_field_results(
    mock: responses.RequestsMock, adapter: ZohoAdapter, token_ok
) -> None:
    token_ok()
    specs = [FieldSpec(f"F_{i}", f"F {i}", "Text", length=40) for i in range(6)]
    bodies: list[Any] = []

    def answer(request: Any) -> tuple[int, dict[str, str], str]:
        body = json.loads(request.body)
        bodies.append(body)
        assert "module=Accounts" in request.url
        elements = [ok(f["api_name"]) for f in body["fields"]]
        if len(bodies) == 1:
            elements[2] = {
                "code": "DUPLICATE_DATA",
                "details": {"api_name": "F_2"},
                "message": "duplicate data",
                "status": "error",
            }
            return 207, {}, json.dumps({"fields": elements})
        return 201, {}, json.dumps({"fields": elements})

    mock.add_callback(responses.POST, URL, callback=answer)
    results = adapter.create_fields("Accounts", specs)
    assert [len(b["fields"]) for b in bodies] == [5, 1]
    assert [(r.crm_id, r.status, r.error_code) for r in results] == [
        ("F_0", "ok", ""),
        ("F_1", "ok", ""),
        ("F_2", "rejected", "DUPLICATE_DATA"),
        ("F_3", "ok", ""),
        ("F_4", "ok", ""),
        ("F_5", "ok", ""),
    ]


def test_refused_call_rejects_its_fields_and_lost_answer_is_unknown(
    mock: responses.RequestsMock, adapter: ZohoAdapter, token_ok
) -> None:
    token_ok()
    mock.post(
        URL,
        status=400,
        json={
            "code": "INVALID_DATA",
            "details": {"api_name": "data_type"},
            "message": "invalid data",
            "status": "error",
        },
    )
    mock.post(
        URL,
        status=500,
        json={"code": "INTERNAL_ERROR", "details": {}, "message": "boom", "status": "error"},
    )
    refused = adapter.create_fields("Accounts", [FieldSpec("A", "A", "Date")])
    assert [(r.status, r.error_code) for r in refused] == [("rejected", "INVALID_DATA")]
    lost = adapter.create_fields("Accounts", [FieldSpec("B", "B", "Date")])
    # Sent once (no blind retry of a create): the outcome is unknown, describe() tells later.
    assert [(r.status, r.retriable) for r in lost] == [("unknown", True)]
    assert sum(1 for c in mock.calls if c.request.url.startswith(URL)) == 2
