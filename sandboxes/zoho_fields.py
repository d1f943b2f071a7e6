"""Zoho sandbox: POST /crm/v8/settings/fields?module=X creates custom fields that metadata lists and writes accept.

Shapes follow Zoho's v8 "Create Custom Fields" page: `module` query parameter (mandatory), body
`{"fields": [{"field_label", "data_type", "length"?, "decimal_place"?, "pick_list_values"?}]}`.
Choices the docs leave open are marked [A]:
- at most 5 fields a call (a derived OpenAPI schema of the settings API says so) [A];
- the answer is 201 `{"fields": [{"code": "SUCCESS", "details": {"id", "api_name"}, ...}]}`
  with one element per field; 207 with failed elements carrying their own code [A];
- the API name is the label with spaces turned into underscores unless `api_name` is given [A].
"""

from __future__ import annotations

import dataclasses
import re
import threading
from typing import TYPE_CHECKING, Any

from sandboxes.server import Request, Response
from sandboxes.zoho_common import _error, _json_object, _missing_param
from sandboxes.zoho_schema import NONE_VALUE, ZField, ZModule, find_module

if TYPE_CHECKING:
    from sandboxes.zoho import ZohoEmulator

MAX_FIELDS_PER_CALL = 5
# Data types the sandbox lets a client create (the subset the connector needs and can store).
CREATABLE = frozenset(
    {
        "text",
        "textarea",
        "double",
        "currency",
        "percent",
        "integer",
        "picklist",
        "boolean",
        "date",
        "datetime",
    }
)
_API_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,49}$")
_DEFAULT_LENGTH = {
    "text": 255,
    "textarea": 2000,
    "double": 16,
    "currency": 16,
    "percent": 5,
    "integer": 9,
}


def _element(code: str, message: str, details: dict[str, Any]) -> dict[str, Any]:
    status = "success" if code == "SUCCESS" else "error"
    return {"code": code, "details": details, "message": message, "status": status}


class CustomFields:
    """Fields created through the API, per module, layered over the static schema."""

    def __init__(self, emulator: ZohoEmulator) -> None:
        self.emulator = emulator
        self.added: dict[str, list[ZField]] = {}
        # Changes an admin made in Setup: a new definition, or None for a deleted field.
        self.edited: dict[str, dict[str, ZField | None]] = {}
        self._views: dict[str, ZModule] = {}
        self._lock = threading.Lock()

    def view(self, module: ZModule | None) -> ZModule | None:
        """The module with the fields created or changed so far (the static module when none were)."""
        if module is None or (
            module.api_name not in self.added and module.api_name not in self.edited
        ):
            return module
        with self._lock:
            cached = self._views.get(module.api_name)
            if cached is None:
                edits = self.edited.get(module.api_name, {})
                fields = [
                    edits.get(item.api_name, item) if item.api_name in edits else item
                    for item in (*module.fields, *self.added.get(module.api_name, []))
                ]
                cached = ZModule(
                    module.api_name,
                    module.singular,
                    tuple(item for item in fields if item is not None),
                    module.id,
                )
                self._views[module.api_name] = cached
            return cached

    def edit(
        self,
        module: ZModule,
        api_name: str,
        *,
        picklist: tuple[str, ...] | None = None,
        read_only: bool | None = None,
        delete: bool = False,
    ) -> None:
        """Change a field as an admin would in Setup: picklist values, read-only, or delete it."""
        current = self.view(module)
        found = current.field(api_name) if current is not None else None
        if found is None:
            raise KeyError(api_name)
        changed: ZField | None = None
        if not delete:
            changes: dict[str, Any] = {}
            if picklist is not None:
                changes["picklist"] = (NONE_VALUE, *picklist)
            if read_only is not None:
                changes["read_only"] = read_only
            changed = dataclasses.replace(found, **changes)
        with self._lock:
            self.edited.setdefault(module.api_name, {})[api_name] = changed
            self._views.pop(module.api_name, None)

    def create(self, request: Request) -> Response:
        """Create up to five fields; one result element per field, in order."""
        name = request.param("module")
        if not name:
            return _missing_param("module")
        module = self.view(find_module(name))
        if module is None:
            return _error(400, "INVALID_MODULE", "the module name given seems to be invalid")
        body = _json_object(request)
        items = body.get("fields") if isinstance(body, dict) else None
        if not isinstance(items, list) or not items:
            return _error(
                400, "REQUIRED_PARAM_MISSING", "fields is missing", {"api_name": "fields"}
            )
        if len(items) > MAX_FIELDS_PER_CALL:
            return _error(
                400, "LIMIT_EXCEEDED", "fields limit exceeded", {"limit": MAX_FIELDS_PER_CALL}
            )
        results = []
        with self._lock:
            for index, item in enumerate(items):
                outcome = self._one(module, item, index)
                if isinstance(outcome, ZField):
                    self.added.setdefault(module.api_name, []).append(outcome)
                    self._views.pop(module.api_name, None)
                    field_id = self.emulator._new_id()
                    results.append(
                        _element(
                            "SUCCESS",
                            "field created",
                            {"id": field_id, "api_name": outcome.api_name},
                        )
                    )
                    module = ZModule(
                        module.api_name, module.singular, (*module.fields, outcome), module.id
                    )
                else:
                    results.append(outcome)
        ok = all(result["code"] == "SUCCESS" for result in results)
        # [A] 207 with per-field elements whenever one failed, as record writes answer.
        return Response.json(201 if ok else 207, {"fields": results})

    @staticmethod
    def _one(module: ZModule, item: Any, index: int) -> ZField | dict[str, Any]:
        path = f"$.fields[{index}]"
        if not isinstance(item, dict):
            return _element("INVALID_DATA", "invalid data", {"json_path": path})
        label = item.get("field_label")
        data_type = item.get("data_type")
        if not isinstance(label, str) or not label.strip():
            return _element(
                "MANDATORY_NOT_FOUND",
                "required field not found",
                {"api_name": "field_label", "json_path": f"{path}.field_label"},
            )
        if data_type not in CREATABLE:
            return _element(
                "INVALID_DATA",
                "invalid data",
                {"api_name": "data_type", "json_path": f"{path}.data_type"},
            )
        api_name = item.get("api_name") or re.sub(r"\W+", "_", label.strip()).strip("_")
        if not isinstance(api_name, str) or not _API_NAME.match(api_name):
            return _element(
                "INVALID_DATA",
                "invalid data",
                {"api_name": "api_name", "json_path": f"{path}.api_name"},
            )
        clash = module.field(api_name) or next(
            (f for f in module.fields if f.label.lower() == label.strip().lower()), None
        )
        if clash is not None:
            return _element(
                "DUPLICATE_DATA", "duplicate data", {"api_name": clash.api_name, "json_path": path}
            )
        length = item.get("length", _DEFAULT_LENGTH.get(str(data_type)))
        if length is not None and (not isinstance(length, int) or length < 1):
            return _element(
                "INVALID_DATA",
                "invalid data",
                {"api_name": "length", "json_path": f"{path}.length"},
            )
        places = item.get("decimal_place")
        if data_type in ("double", "currency", "percent") and places is None:
            places = 2
        picklist: tuple[str, ...] = ()
        if data_type == "picklist":
            values = item.get("pick_list_values")
            if not isinstance(values, list) or not values:
                return _element(
                    "MANDATORY_NOT_FOUND",
                    "required field not found",
                    {"api_name": "pick_list_values", "json_path": f"{path}.pick_list_values"},
                )
            names = [
                str(v.get("actual_value") or v.get("display_value"))
                if isinstance(v, dict)
                else str(v)
                for v in values
            ]
            picklist = (NONE_VALUE, *names)
        return ZField(
            api_name,
            label.strip(),
            str(data_type),
            length,
            places if isinstance(places, int) else None,
            custom=True,
            picklist=picklist,
        )
