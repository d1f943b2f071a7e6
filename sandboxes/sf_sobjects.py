"""The Salesforce sandbox's describe and single-record sObject endpoints."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sandboxes.server import Request, Response
from sandboxes.sf_common import (
    RecordError,
    _error,
    _not_found,
    sf_datetime,
)
from sandboxes.sf_describe import global_entry, object_describe
from sandboxes.sf_schema import (
    SObject,
    to_id18,
)
from sandboxes.sf_soql import (
    parse_datetime_literal,
)

if TYPE_CHECKING:
    from sandboxes.salesforce import SalesforceEmulator


class SObjects:
    """Part of SalesforceEmulator (sandboxes/salesforce.py), holding no state of its own."""

    def __init__(self, emulator: SalesforceEmulator) -> None:
        self.emulator = emulator

    def _describe(self, obj: SObject, version: str) -> dict[str, Any]:
        return object_describe(self.emulator.schema, obj, version)

    def _global_describe(self, version: str) -> dict[str, Any]:
        return {
            "encoding": "UTF-8",
            "maxBatchSize": 200,
            "sobjects": [global_entry(obj, version) for obj in self.emulator.schema.values()],
        }

    def _sobjects(self, request: Request, version: str, parts: list[str]) -> Response:
        method = request.method
        if not parts:
            return Response.json(200, self._global_describe(version))
        obj = self.emulator._find_object(parts[0])
        if obj is None:
            return _not_found()
        if len(parts) == 1:
            if method == "GET":
                basics = global_entry(obj, version)
                return Response.json(200, {"objectDescribe": basics, "recentItems": []})
            if method == "POST":
                return self._create_one(request, obj)
            return _error(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed")
        if len(parts) == 2 and parts[1].lower() == "describe":
            return Response.json(200, self._describe(obj, version))
        if len(parts) == 2 and parts[1].lower() == "deleted":
            return self._deleted(request, obj)
        if len(parts) == 2 and parts[1].lower() == "updated":
            return self._updated(request, obj)
        if len(parts) == 3:
            return self._upsert(request, obj, parts[1], parts[2])
        if len(parts) != 2:
            return _not_found()
        record_id = to_id18(parts[1])
        if record_id is None:
            return _error(400, "MALFORMED_ID", f"Id in URL is not valid: {parts[1]}")
        row = self.emulator.rows[obj.name].get(record_id)
        if row is None:
            return _not_found()
        if row["IsDeleted"]:
            return _error(404, "ENTITY_IS_DELETED", "entity is deleted", [])
        if method == "GET":
            wanted = request.param("fields")
            names = [f.name for f in obj.fields]
            if wanted:
                names = []
                for raw in wanted.split(","):
                    fdef = obj.field(raw.strip())
                    if fdef is None:
                        return _error(
                            400,
                            "INVALID_FIELD",
                            f"No such column '{raw}' on sobject of type {obj.name}",
                        )
                    names.append(fdef.name)
            with self.emulator._lock:
                body = {
                    "attributes": {
                        "type": obj.name,
                        "url": f"/services/data/v{version}/sobjects/{obj.name}/{record_id}",
                    }
                } | {name: row.get(name) for name in names}
            return Response.json(200, body)
        if method == "PATCH":
            try:
                data = self._body_record(request)
                with self.emulator._lock:
                    self.emulator.writer._write(
                        obj, [(record_id, data)], creating=False, request=request
                    )
            except RecordError as exc:
                return _error(400, exc.code, exc.message, exc.fields)
            return Response(204)
        if method == "DELETE":
            with self.emulator._lock:
                row["IsDeleted"] = True
                self.emulator._touch(row, self.emulator._stamp())
                self.emulator.writes_log.append(
                    {"object": obj.name, "id": record_id, "op": "delete", "fields": {}}
                )
            return Response(204)
        return _error(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed")

    def _window(self, request: Request) -> tuple[str, str] | Response:
        try:
            start = sf_datetime(parse_datetime_literal(request.param("start") or ""))
            end = sf_datetime(parse_datetime_literal(request.param("end") or ""))
        except ValueError:
            return _error(400, "INVALID_REPLICATION_DATE", "start and end must be valid dateTimes")
        return start, end

    def _deleted(self, request: Request, obj: SObject) -> Response:
        window = self._window(request)
        if isinstance(window, Response):
            return window
        start, end = window
        with self.emulator._lock:
            gone = [
                {"id": row["Id"], "deletedDate": row["SystemModstamp"]}
                for row in self.emulator.rows[obj.name].values()
                if row["IsDeleted"] and start <= row["SystemModstamp"] <= end
            ]
        return Response.json(
            200,
            {"deletedRecords": gone, "earliestDateAvailable": start, "latestDateCovered": end},
        )

    def _updated(self, request: Request, obj: SObject) -> Response:
        window = self._window(request)
        if isinstance(window, Response):
            return window
        start, end = window
        with self.emulator._lock:
            ids = [
                row["Id"]
                for row in self.emulator.rows[obj.name].values()
                if not row["IsDeleted"] and start <= row["SystemModstamp"] <= end
            ]
        return Response.json(200, {"ids": ids, "latestDateCovered": end})

    def _body_record(self, request: Request) -> dict[str, Any]:
        try:
            data = request.json()
        except ValueError as exc:
            raise RecordError("JSON_PARSER_ERROR", f"Unexpected character: {exc}") from exc
        if not isinstance(data, dict):
            raise RecordError("JSON_PARSER_ERROR", "Expected a JSON object")
        data.pop("attributes", None)
        return data

    def _create_one(self, request: Request, obj: SObject) -> Response:
        try:
            data = self._body_record(request)
            with self.emulator._lock:
                results = self.emulator.writer._write(
                    obj, [(None, data)], creating=True, request=request
                )
        except RecordError as exc:
            return _error(400, exc.code, exc.message, exc.fields)
        return Response.json(201, {"id": results[0]["id"], "success": True, "errors": []})

    def _upsert(self, request: Request, obj: SObject, field: str, value: str) -> Response:
        fdef = obj.field(field)
        if request.method != "PATCH" or fdef is None or not (fdef.external_id or fdef.name == "Id"):
            return _not_found()
        try:
            data = self._body_record(request)
        except RecordError as exc:
            return _error(400, exc.code, exc.message, exc.fields)
        with self.emulator._lock:
            found = [
                row["Id"]
                for row in self.emulator.rows[obj.name].values()
                if not row["IsDeleted"] and row.get(fdef.name) == value
            ]
            if len(found) > 1:
                return Response.json(
                    300, [f"/services/data/sobjects/{obj.name}/{i}" for i in found]
                )
            try:
                if found:
                    self.emulator.writer._write(
                        obj, [(found[0], data)], creating=False, request=request
                    )
                    return Response.json(
                        200, {"id": found[0], "success": True, "errors": [], "created": False}
                    )
                data[fdef.name] = value
                results = self.emulator.writer._write(
                    obj, [(None, data)], creating=True, request=request
                )
            except RecordError as exc:
                return _error(400, exc.code, exc.message, exc.fields)
        return Response.json(
            201, {"id": results[0]["id"], "success": True, "errors": [], "created": True}
        )
