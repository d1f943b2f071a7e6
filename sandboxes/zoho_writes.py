"""The Zoho sandbox's writes: batches of inserts, updates and upserts, each record validated and coerced as Zoho does."""

from __future__ import annotations

from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any

from sandboxes.server import Faults, Request, Response
from sandboxes.zoho_common import (
    _DATE,
    _NAME_FIELD,
    MAX_WRITE,
    TRIGGERS,
    _error,
    _RecordFailure,
)
from sandboxes.zoho_schema import (
    MODULES,
    NONE_VALUE,
    WHAT_MODULES,
    ZField,
    ZModule,
)

if TYPE_CHECKING:
    from sandboxes.zoho import ZohoEmulator


class RecordWrites:
    """Part of ZohoEmulator (sandboxes/zoho.py), holding no state of its own."""

    def __init__(self, emulator: ZohoEmulator) -> None:
        self.emulator = emulator

    @staticmethod
    def _batch_status(data: list[dict[str, Any]], ok_status: int) -> int:
        ok = sum(1 for element in data if element.get("status") == "success")
        if ok == len(data):
            return ok_status
        return 207 if ok else 400  # [A] 400 when every record failed

    def _write(
        self, request: Request, module: ZModule, mode: str, *, record_id: str | None = None
    ) -> Response:
        try:
            body = request.json()
        except ValueError:
            body = None
        items = body.get("data") if isinstance(body, dict) else None
        if not isinstance(items, list) or not items:
            # [A] the exact answer to a body without `data` is not documented.
            return _error(
                400,
                "INVALID_DATA" if isinstance(body, dict) else "INVALID_REQUEST",
                "the input data is invalid" if isinstance(body, dict) else "body is not JSON",
                {"param": "data"} if isinstance(body, dict) else {},
            )
        if len(items) > MAX_WRITE:
            return _error(400, "LIMIT_EXCEEDED", "limit exceeded", {"limit": MAX_WRITE})  # [A]
        assert isinstance(body, dict)
        trigger = body.get("trigger") if "trigger" in body else None
        if trigger is not None and (
            not isinstance(trigger, list) or any(t not in TRIGGERS for t in trigger)
        ):
            return _error(400, "INVALID_DATA", "invalid data", {"api_name": "trigger"})
        fired = list(TRIGGERS) if trigger is None else list(trigger)
        dup_fields: list[str] = []
        if mode == "upsert":
            requested = body.get("duplicate_check_fields")
            if requested is None:
                # Zoho's default: the module's system duplicate-check (unique) fields.
                dup_fields = [f.api_name for f in module.fields if f.unique]
            elif isinstance(requested, list) and all(
                isinstance(n, str) and module.field(n) is not None for n in requested
            ):
                dup_fields = list(requested)
            else:
                return _error(
                    400, "INVALID_DATA", "invalid data", {"api_name": "duplicate_check_fields"}
                )
        faults = request.faults
        data: list[dict[str, Any]] = []
        done: list[str] = []
        with self.emulator._lock:
            for index, item in enumerate(items):
                try:
                    if not isinstance(item, dict):
                        raise _RecordFailure(
                            "INVALID_DATA", "invalid data", {"json_path": f"$.data[{index}]"}
                        )
                    element = self._write_one(
                        module, mode, item, index, record_id, dup_fields, faults
                    )
                except _RecordFailure as failure:
                    data.append(failure.element)
                    continue
                data.append(element)
                done.append(element["details"]["id"])
            for kind in fired:
                self.emulator.workflow_runs[kind] += len(done)
            self.emulator.writes_log.append(
                {
                    "method": request.method,
                    "module": module.api_name,
                    "mode": mode,
                    "ids": done,
                    "count": len(items),
                    "failed": len(items) - len(done),
                    "trigger": trigger,
                    "fired": fired if done else [],
                }
            )
        ok_status = 201 if mode == "insert" else 200
        if mode == "upsert" and all(e.get("action") == "insert" for e in data if "action" in e):
            ok_status = 201
        return Response.json(self._batch_status(data, ok_status), {"data": data})

    def _write_one(
        self,
        module: ZModule,
        mode: str,
        item: dict[str, Any],
        index: int,
        url_id: str | None,
        dup_fields: list[str],
        faults: Faults,
    ) -> dict[str, Any]:
        rows = self.emulator.rows[module.api_name]
        target_id = url_id or (str(item["id"]) if item.get("id") is not None else None)
        action = "update" if mode == "update" else "insert"
        duplicate_field: str | None = None
        if mode == "upsert":
            if target_id is not None and target_id in rows:
                action = "update"
            else:
                target_id = None
                for name in dup_fields:
                    wanted = item.get(name)
                    if wanted is None:
                        continue
                    existing = self._find_duplicate(module, name, wanted, None)
                    if existing is not None:
                        target_id, action, duplicate_field = existing, "update", name
                        break
        if action == "update":
            if target_id is None:
                raise _RecordFailure(
                    "MANDATORY_NOT_FOUND",
                    "required field not found",
                    {"api_name": "id", "json_path": f"$.data[{index}].id"},
                )
            if target_id not in rows:
                raise _RecordFailure(
                    "INVALID_DATA",
                    "the related id given seems to be invalid",
                    {"api_name": "id", "json_path": f"$.data[{index}].id"},
                )
            left = self.emulator._locks.get(target_id, 0)
            if left > 0 or faults.roll(faults.lock_error_rate):
                if left > 0:
                    self.emulator._locks[target_id] = left - 1
                raise _RecordFailure("RECORD_LOCKED", "the record is locked", {"id": target_id})
        clean = self._validate(module, item, index, action)
        if faults.roll(faults.record_error_rate):
            name = next((k for k in item if k != "id" and not k.startswith("$")), "id")
            raise _RecordFailure(
                "INVALID_DATA",
                "invalid data",
                {"api_name": name, "json_path": f"$.data[{index}].{name}"},
            )
        current = rows.get(target_id, {}) if target_id else {}
        merged = {**current, **clean}
        for fdef in module.fields:
            if fdef.mandatory and merged.get(fdef.api_name) in (None, ""):
                raise _RecordFailure(
                    "MANDATORY_NOT_FOUND",
                    "required field not found",
                    {"api_name": fdef.api_name, "json_path": f"$.data[{index}].{fdef.api_name}"},
                )
            if fdef.unique and fdef.api_name in clean and clean[fdef.api_name] is not None:
                other = self._find_duplicate(module, fdef.api_name, clean[fdef.api_name], target_id)
                if other is not None:
                    raise _RecordFailure(
                        "DUPLICATE_DATA",
                        "duplicate data",
                        {
                            "api_name": fdef.api_name,
                            "json_path": f"$.data[{index}].{fdef.api_name}",
                            "duplicate_record": {
                                "id": other,
                                "module": {"api_name": module.api_name, "id": module.id},
                                "Owner": rows[other].get("Owner"),
                            },
                        },
                    )
        stamp = self.emulator._stamp()
        me = self.emulator._user_ref(self.emulator.api_user["id"], with_email=False)
        if action == "insert":
            target_id = self.emulator._new_id()
            row = self.emulator.seeder._blank(module)
            row.update(
                {
                    "id": target_id,
                    "Owner": self.emulator._user_ref(self.emulator.api_user["id"]),
                    "Created_Time": stamp,
                    "Created_By": me,
                }
            )
            if module.api_name == "Tasks":
                row["$se_module"] = None
            rows[target_id] = row
        assert target_id is not None
        row = rows[target_id]
        if module.api_name == "Tasks" and "Status" in clean:
            closed = clean["Status"] == "Completed"
            if closed and row.get("Status") != "Completed":
                row["Closed_Time"] = stamp
            elif not closed:
                row["Closed_Time"] = None
        row.update(clean)
        row["Modified_Time"] = stamp
        row["Modified_By"] = me
        element: dict[str, Any] = {
            "code": "SUCCESS",
            "details": {
                "Modified_Time": stamp,
                "Modified_By": dict(me),
                "Created_Time": row["Created_Time"],
                "id": target_id,
                "Created_By": dict(row["Created_By"] or me),
            },
            "message": "record added" if action == "insert" else "record updated",
            "status": "success",
        }
        if mode == "upsert":
            element = {"code": "SUCCESS", "duplicate_field": duplicate_field, "action": action} | {
                k: v for k, v in element.items() if k != "code"
            }
        return element

    def _find_duplicate(
        self, module: ZModule, name: str, value: Any, exclude: str | None
    ) -> str | None:
        wanted = str(value).strip().lower()
        for other_id, row in self.emulator.rows[module.api_name].items():
            current = row.get(name)
            if (
                other_id != exclude
                and current is not None
                and str(current).strip().lower() == wanted
            ):
                return other_id
        return None

    def _validate(
        self, module: ZModule, item: dict[str, Any], index: int, action: str
    ) -> dict[str, Any]:
        clean: dict[str, Any] = {}
        for key, value in item.items():
            if key == "id":
                continue
            path = f"$.data[{index}].{key}"
            if key == "$se_module" and module.api_name == "Tasks":
                if value not in WHAT_MODULES:
                    raise _RecordFailure(
                        "INVALID_DATA", "invalid data", {"api_name": key, "json_path": path}
                    )
                clean[key] = value
                continue
            if key.startswith("$"):
                continue  # Zoho ignores its own $-prefixed keys (e.g. $approved) on writes
            fdef = module.field(key)
            if fdef is None:
                # [A] Zoho's answer to an unknown API name; the emulator rejects it.
                raise _RecordFailure(
                    "INVALID_DATA", "invalid data", {"api_name": key, "json_path": path}
                )
            if fdef.read_only:
                raise _RecordFailure(  # [A] NOT_ALLOWED for read-only fields
                    "NOT_ALLOWED",
                    "the field is read only",
                    {"api_name": key, "json_path": path},
                )
            clean[key] = self._coerce(fdef, value, path, item)
        if module.api_name == "Tasks" and clean.get("What_Id") is not None:
            se_module = clean.get("$se_module") or item.get("$se_module")
            if se_module is None:
                raise _RecordFailure(
                    "MANDATORY_NOT_FOUND",
                    "required field not found",
                    {"api_name": "$se_module", "json_path": f"$.data[{index}].$se_module"},
                )
        return clean

    def _coerce(self, fdef: ZField, value: Any, path: str, item: dict[str, Any]) -> Any:
        kind = fdef.value_type

        def invalid(**extra: Any) -> _RecordFailure:
            details = {"expected_data_type": kind, "api_name": fdef.api_name, "json_path": path}
            details.update(extra)
            return _RecordFailure("INVALID_DATA", "invalid data", details)

        if value is None:
            return None
        if kind in ("text", "textarea", "email", "phone", "website"):
            if not isinstance(value, str):
                raise invalid()
            if fdef.length is not None and len(value) > fdef.length:
                raise invalid(maximum_length=fdef.length)
            return value
        if kind in ("integer", "bigint"):
            number = self._to_number(value)
            if number is None or number != int(number):
                raise invalid()
            if fdef.length is not None and len(str(abs(int(number)))) > fdef.length:
                raise invalid(maximum_length=fdef.length)
            return int(number)
        if kind in ("double", "currency", "percent"):
            number = self._to_number(value)
            if number is None:
                raise invalid()
            places = fdef.decimal_place if fdef.decimal_place is not None else 2
            # Zoho rounds to the field's decimal places (currency: its precision).
            rounded = float(
                Decimal(repr(number)).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
            )
            if fdef.length is not None and len(str(abs(int(rounded)))) > fdef.length - places:
                raise invalid(maximum_length=fdef.length)
            return rounded
        if kind == "boolean":
            if not isinstance(value, bool):
                raise invalid()
            return value
        if kind == "date":
            if not isinstance(value, str) or not _DATE.match(value):
                raise invalid()
            try:
                date.fromisoformat(value)
            except ValueError:
                raise invalid() from None
            return value
        if kind == "datetime":
            if not isinstance(value, str):
                raise invalid()
            try:
                moment = datetime.fromisoformat(value)
            except ValueError:
                raise invalid() from None
            if moment.tzinfo is None:
                raise invalid()  # Zoho wants the offset (reference §5.1)
            return self.emulator.fmt(moment)
        if kind == "picklist":
            if not isinstance(value, str):
                raise invalid()
            if value == NONE_VALUE:
                return None
            if value not in fdef.picklist:
                raise invalid()
            return value
        if kind == "ownerlookup":
            user_id = value.get("id") if isinstance(value, dict) else value
            user = self.emulator._user(str(user_id)) if user_id is not None else None
            if user is None or user["status"] != "active":
                # [A] an inactive owner: Zoho's exact code is not documented.
                raise invalid()
            return self.emulator._user_ref(user["id"])
        if kind == "lookup":
            linked_id = value.get("id") if isinstance(value, dict) else value
            target_name = fdef.lookup or "Accounts"
            if fdef.api_name == "What_Id":
                target_name = str(item.get("$se_module") or "")
            target = MODULES.get(target_name)
            row = self.emulator.rows[target.api_name].get(str(linked_id)) if target else None
            if row is None:
                raise _RecordFailure(
                    "INVALID_DATA",
                    "the related id given seems to be invalid",
                    {"api_name": fdef.api_name, "json_path": path, "expected_data_type": kind},
                )
            return {"id": row["id"], "name": row.get(_NAME_FIELD.get(target_name, "id"))}
        raise invalid()

    @staticmethod
    def _to_number(value: Any) -> float | None:
        if isinstance(value, bool):
            return None
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                return None
        return None
