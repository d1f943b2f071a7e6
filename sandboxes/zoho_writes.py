"""The Zoho sandbox's writes: batches of inserts, updates and upserts, each record validated and coerced as Zoho does."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sandboxes.server import Faults, Request, Response
from sandboxes.zoho_common import (
    MAX_WRITE,
    TRIGGERS,
    _error,
    _json_object,
    _RecordFailure,
)
from sandboxes.zoho_schema import (
    WHAT_MODULES,
    ZModule,
)
from sandboxes.zoho_values import coerce

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
        body = _json_object(request)
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
        target_id, action, duplicate_field = self._target(module, mode, item, url_id, dup_fields)
        if action == "update":
            self._check_updatable(module, target_id, index, faults)
        clean = self._validate(module, item, index, action)
        if faults.roll(faults.record_error_rate):
            name = next((k for k in item if k != "id" and not k.startswith("$")), "id")
            raise _RecordFailure(
                "INVALID_DATA",
                "invalid data",
                {"api_name": name, "json_path": f"$.data[{index}].{name}"},
            )
        self._check_complete_and_unique(module, target_id, clean, index)
        stamp = self.emulator._stamp()
        me = self.emulator._user_ref(self.emulator.api_user["id"], with_email=False)
        target_id, row = self._save(module, action, target_id, clean, stamp, me)
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

    def _target(
        self,
        module: ZModule,
        mode: str,
        item: dict[str, Any],
        url_id: str | None,
        dup_fields: list[str],
    ) -> tuple[str | None, str, str | None]:
        """The record written (None: a new one), "insert" or "update", and the duplicate-check
        field an upsert matched on."""
        rows = self.emulator.rows[module.api_name]
        target_id = url_id or (str(item["id"]) if item.get("id") is not None else None)
        action = "update" if mode == "update" else "insert"
        if mode != "upsert":
            return target_id, action, None
        if target_id is not None and target_id in rows:
            return target_id, "update", None
        for name in dup_fields:
            wanted = item.get(name)
            if wanted is None:
                continue
            existing = self._find_duplicate(module, name, wanted, None)
            if existing is not None:
                return existing, "update", name
        return None, action, None

    def _check_updatable(
        self, module: ZModule, target_id: str | None, index: int, faults: Faults
    ) -> None:
        """An update names a record that exists and is not locked."""
        if target_id is None:
            raise _RecordFailure(
                "MANDATORY_NOT_FOUND",
                "required field not found",
                {"api_name": "id", "json_path": f"$.data[{index}].id"},
            )
        if target_id not in self.emulator.rows[module.api_name]:
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

    def _check_complete_and_unique(
        self, module: ZModule, target_id: str | None, clean: dict[str, Any], index: int
    ) -> None:
        """The record as written keeps its mandatory fields and no other record has its unique
        values."""
        rows = self.emulator.rows[module.api_name]
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

    def _save(
        self,
        module: ZModule,
        action: str,
        target_id: str | None,
        clean: dict[str, Any],
        stamp: str,
        me: dict[str, Any],
    ) -> tuple[str, dict[str, Any]]:
        """Insert a new record or update `target_id`; its id and row. A task's Closed_Time
        follows its status."""
        rows = self.emulator.rows[module.api_name]
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
        return target_id, row

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
            clean[key] = coerce(self.emulator, fdef, value, path, item)
        if module.api_name == "Tasks" and clean.get("What_Id") is not None:
            se_module = clean.get("$se_module") or item.get("$se_module")
            if se_module is None:
                raise _RecordFailure(
                    "MANDATORY_NOT_FOUND",
                    "required field not found",
                    {"api_name": "$se_module", "json_path": f"$.data[{index}].$se_module"},
                )
        return clean
