"""Zoho custom field creation: FieldSpec (Salesforce vocabulary) -> POST /crm/v8/settings/fields?module=X.

Zoho's v8 "Create Custom Fields" page: `module` query parameter (mandatory), body
`{"fields": [{"field_label", "data_type", "length", ...}]}`, scope ZohoCRM.settings.fields.CREATE.
Not pinned down by the page we could read [A]:
- at most 5 fields a call (a derived OpenAPI schema of the settings API says so);
- `api_name` in the request is honoured (otherwise Zoho derives it from the label), and the
  answer is `{"fields": [{"code": "SUCCESS", "details": {"id", "api_name"?}, ...}]}`, one element
  per field in order;
- `decimal_place` for double/currency/percent and `pick_list_values` as
  `[{"display_value", "actual_value"}]`, as the fields metadata shows them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from adapters._tasks import chunks
from connector.errors import AuthError, FatalCrmError, QuotaExhaustedError, RetriableCrmError
from connector.models import WriteResult
from connector.protocol import FieldSpec
from connector.redaction import redact

from .client import ZohoClient
from .errors import record_outcome

MAX_FIELDS_PER_CALL = 5
# Salesforce field type -> Zoho data_type (Zoho's "Field Types: Data Types and Length Limits").
DATA_TYPES: dict[str, str] = {
    "Number": "double",
    "Currency": "currency",
    "Percent": "percent",
    "Picklist": "picklist",
    "Text": "text",
    "TextArea": "textarea",
    "LongTextArea": "textarea",
    "Checkbox": "boolean",
    "Date": "date",
    "DateTime": "datetime",
}
# Zoho caps: single-line text 255, multi-line "small" 2,000 and "large" 32,000 [A]; numbers 16.
_MAX_LENGTH = {"text": 255, "textarea": 32_000, "double": 16, "currency": 16, "percent": 16}
_DECIMAL_TYPES = frozenset({"double", "currency", "percent"})


def field_body(spec: FieldSpec) -> dict[str, Any]:
    """The JSON for one field to create.

    Raises:
        ValueError: the type has no Zoho counterpart.
    """
    data_type = DATA_TYPES.get(spec.type)
    if data_type is None:
        raise ValueError(f"field type {spec.type} has no Zoho counterpart")
    body: dict[str, Any] = {
        "api_name": spec.name,
        "field_label": spec.label or spec.name.replace("_", " "),
        "data_type": data_type,
    }
    if data_type in _MAX_LENGTH:
        length = spec.length or spec.precision
        if data_type == "textarea" and spec.type == "TextArea" and not length:
            length = 2_000
        if length:
            body["length"] = min(int(length), _MAX_LENGTH[data_type])
    if data_type in _DECIMAL_TYPES:
        body["decimal_place"] = spec.scale if spec.scale is not None else 2
    if data_type == "picklist":
        body["pick_list_values"] = [
            {"display_value": value, "actual_value": value} for value in spec.picklist_values
        ]
    if spec.description:
        body["tooltip"] = {"name": "static_text", "value": spec.description[:255]}
    return body


def create_fields(client: ZohoClient, module: str, specs: Sequence[FieldSpec]) -> list[WriteResult]:
    """Create custom fields, five a call; one WriteResult per spec, same order.

    crm_id is the field's API name. A field type Zoho cannot hold is "rejected" without a
    call; a lost answer makes that call's fields "unknown" (describe() tells whether they exist).

    Raises:
        QuotaExhaustedError: the run's credit share is spent.
        AuthError: the token lacks ZohoCRM.settings.fields.CREATE or was refused twice.
        FatalCrmError: never; a refused call makes its fields "rejected" with Zoho's code.
    """
    results: dict[int, WriteResult] = {}
    sendable: list[tuple[int, FieldSpec, dict[str, Any]]] = []
    for index, spec in enumerate(specs):
        try:
            sendable.append((index, spec, field_body(spec)))
        except ValueError as exc:
            results[index] = _rejected(spec, "UNSUPPORTED_TYPE", str(exc))
    for batch in chunks(sendable, MAX_FIELDS_PER_CALL):
        answered = _create_batch(client, module, batch)
        for (index, _, _), result in zip(batch, answered, strict=True):
            results[index] = result
    return [results[index] for index in range(len(specs))]


def _create_batch(
    client: ZohoClient,
    module: str,
    batch: Sequence[tuple[int, FieldSpec, dict[str, Any]]],
) -> list[WriteResult]:
    """One POST settings/fields for up to five fields; a result per field, in order."""
    specs = [spec for _, spec, _ in batch]
    elements: list[Any] | None
    try:
        # No blind retry: a create whose answer was lost may have landed.
        response = client.request(
            "POST",
            "settings/fields",
            params={"module": module},
            json_body={"fields": [body for _, _, body in batch]},
            retry=False,
        )
        body = client.body(response)
        got = body.get("fields") if isinstance(body, dict) else None
        elements = got if isinstance(got, list) else None
    except (QuotaExhaustedError, AuthError):
        raise
    except FatalCrmError as exc:
        # The whole call refused (e.g. INVALID_DATA on a field, DUPLICATE_DATA, LIMIT_EXCEEDED):
        # every field of it is rejected with that code; none was created.
        return [_rejected(spec, exc.code, str(exc)) for spec in specs]
    except RetriableCrmError as exc:
        elements = None
        lost = redact(str(exc))
    else:
        lost = "Zoho's answer did not list one result per field"
    if elements is None or len(elements) != len(batch):
        return [
            WriteResult(
                crm_id=spec.name,
                status="unknown",
                error_code="RESULT_UNKNOWN",
                message=lost,
                retriable=True,
                key=spec.name,
            )
            for spec in specs
        ]
    return [_created(spec, element) for spec, element in zip(specs, elements, strict=True)]


def _created(spec: FieldSpec, element: Any) -> WriteResult:
    """The result of one field from its element of Zoho's answer."""
    outcome = record_outcome(element)
    details = element.get("details") if isinstance(element, dict) else None
    api_name = details.get("api_name") if isinstance(details, dict) else None
    if outcome.ok:
        return WriteResult(crm_id=str(api_name or spec.name), status="ok", key=spec.name)
    return _rejected(spec, outcome.code, outcome.message, retriable=outcome.retriable)


def _rejected(spec: FieldSpec, code: str, message: str, *, retriable: bool = False) -> WriteResult:
    return WriteResult(
        crm_id=spec.name,
        status="rejected",
        error_code=code,
        message=message,
        fields=(spec.name,),
        retriable=retriable,
        key=spec.name,
    )
