"""The Salesforce sandbox's Bulk API 2.0: query and ingest jobs, their states and result pages."""

from __future__ import annotations

import base64
import csv
import io
from typing import TYPE_CHECKING, Any

from sandboxes.server import Request, Response
from sandboxes.sf_common import (
    _DELIMITERS,
    RecordError,
    _csv_cell,
    _csv_doc,
    _csv_value,
    _dig,
    _error,
    _not_found,
)
from sandboxes.sf_schema import (
    SObject,
    make_id,
    to_id18,
)
from sandboxes.sf_soql import (
    FieldRef,
    parse,
)

if TYPE_CHECKING:
    from sandboxes.salesforce import SalesforceEmulator


class BulkJobs:
    """Part of SalesforceEmulator (sandboxes/salesforce.py), holding no state of its own."""

    def __init__(self, emulator: SalesforceEmulator) -> None:
        self.emulator = emulator

    def _job_json(self, job: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in job.items() if not k.startswith("_")}

    def _jobs_route(self, request: Request, version: str, kind: str, parts: list[str]) -> Response:
        if kind not in ("query", "ingest"):
            return _not_found()
        method = request.method
        if not parts:
            if method != "POST":
                return _not_found()
            return self._create_job(request, version, kind)
        job = self.emulator._jobs.get(parts[0])
        if job is None or job["_kind"] != kind:
            return _error(404, "NOT_FOUND", "The requested resource does not exist")
        tail = parts[1].lower() if len(parts) > 1 else ""
        if not tail:
            if method == "GET":
                if job["state"] in ("UploadComplete", "InProgress"):
                    if job["_polls"] >= self.emulator.bulk_polls_before_complete:
                        job["state"] = job["_final"]
                    else:
                        job["_polls"] += 1
                        job["state"] = "InProgress"
                return Response.json(200, self._job_json(job))
            if method == "PATCH":
                return self._patch_job(request, job)
            if method == "DELETE":
                del self.emulator._jobs[parts[0]]
                return Response(204)
            return _not_found()
        if kind == "query" and tail == "results" and method == "GET":
            return self._query_results(request, job)
        if kind == "ingest" and tail == "batches" and method == "PUT":
            if job["state"] != "Open":
                return _error(400, "INVALIDJOBSTATE", "Job is not open for upload")
            job["_data"].append(request.body.decode("utf-8"))
            return Response(201)
        if (
            kind == "ingest"
            and method == "GET"
            and tail
            in (
                "successfulresults",
                "failedresults",
                "unprocessedrecords",
            )
        ):
            body = {
                "successfulresults": job["_ok"],
                "failedresults": job["_failed"],
                "unprocessedrecords": job["_unprocessed"],
            }[tail]
            return Response(200, body.encode(), {"Content-Type": "text/csv"})
        return _not_found()

    def _create_job(self, request: Request, version: str, kind: str) -> Response:
        try:
            spec = request.json() or {}
        except ValueError:
            return _error(400, "JSON_PARSER_ERROR", "Malformed JSON body")
        operation = spec.get("operation", "")
        delimiter = spec.get("columnDelimiter", "COMMA")
        line_ending = spec.get("lineEnding", "LF")
        if delimiter not in _DELIMITERS or line_ending not in ("LF", "CRLF"):
            return _error(400, "INVALIDJOB", "Invalid columnDelimiter or lineEnding")
        with self.emulator._lock:
            self.emulator._seq += 1
            job_id = make_id("750", self.emulator._seq)
        now = self.emulator._stamp()
        job: dict[str, Any] = {
            "id": job_id,
            "operation": operation,
            "createdById": self.emulator.integration_user_id,
            "createdDate": now,
            "systemModstamp": now,
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": float(version),
            "lineEnding": line_ending,
            "columnDelimiter": delimiter,
            "_kind": kind,
            "_polls": 0,
        }
        if kind == "query":
            if operation not in ("query", "queryAll"):
                return _error(400, "INVALIDJOB", f"Invalid operation {operation}")
            query = parse(str(spec.get("query", "")))
            # Bulk API 2.0 query takes neither aggregates, GROUP BY nor parent-to-child
            # subqueries (Bulk API 2.0 guide, "Bulk API 2.0 Query Considerations").
            if query.count_only or query.is_aggregate:
                return _error(
                    400, "API_ERROR", "Aggregate queries are not supported in Bulk API 2.0"
                )
            if query.subqueries:
                return _error(400, "API_ERROR", "Nested queries are not supported in Bulk API 2.0")
            obj, ids, plan = self.emulator.soql._run(query, operation == "queryAll")
            job |= {
                "object": obj.name,
                "state": "UploadComplete",
                "_final": "JobComplete",
                "numberRecordsProcessed": len(ids),
                "_ids": ids,
                "_plan": plan,
                "_object": obj.name,
            }
        else:
            obj_name = spec.get("object", "")
            found = self.emulator._find_object(str(obj_name))
            if found is None:
                return _error(
                    400, "INVALIDJOB", f"Entity '{obj_name}' is not supported by the Bulk API."
                )
            if operation not in ("insert", "update", "upsert", "delete", "hardDelete"):
                return _error(400, "INVALIDJOB", f"Invalid operation {operation}")
            job |= {
                "object": found.name,
                "state": "Open",
                # Where the CSV goes (Bulk API 2.0 "Create a Job" response).
                "contentUrl": f"services/data/v{version}/jobs/ingest/{job_id}/batches",
                "externalIdFieldName": spec.get("externalIdFieldName"),
                "numberRecordsProcessed": 0,
                "numberRecordsFailed": 0,
                "_final": "JobComplete",
                "_data": [],
                "_ok": "",
                "_failed": "",
                "_unprocessed": "",
            }
        with self.emulator._lock:
            self.emulator._jobs[job_id] = job
        return Response.json(200, self._job_json(job))

    def _query_results(self, request: Request, job: dict[str, Any]) -> Response:
        try:
            max_records = int(request.param("maxRecords") or self.emulator.bulk_results_page)
            start = int(base64.b64decode(request.param("locator") or "MA==").decode())
        except ValueError:
            return _error(400, "INVALID_LOCATOR", "invalid locator")
        max_records = max(1, max_records)
        ids: list[str] = job["_ids"]
        obj = self.emulator.schema[job["_object"]]
        plan: list[FieldRef] = job["_plan"]
        sep = _DELIMITERS[job["columnDelimiter"]]
        eol = "\r\n" if job["lineEnding"] == "CRLF" else "\n"
        chunk = ids[start : start + max_records]
        lines = [sep.join(_csv_cell(".".join(ref.path)) for ref in plan)]
        table = self.emulator.rows[obj.name]
        with self.emulator._lock:
            for record_id in chunk:
                row = table.get(record_id)
                if row is None:
                    continue
                flat = self.emulator.soql._render(obj, row, plan, "62.0")
                lines.append(sep.join(_csv_value(_dig(flat, ref.path)) for ref in plan))
        end = start + len(chunk)
        locator = base64.b64encode(str(end).encode()).decode() if end < len(ids) else "null"
        body = (eol.join(lines) + eol).encode()
        return Response(
            200,
            body,
            {
                "Content-Type": "text/csv",
                "Sforce-Locator": locator,
                "Sforce-NumberOfRecords": str(len(chunk)),
            },
        )

    def _patch_job(self, request: Request, job: dict[str, Any]) -> Response:
        try:
            wanted = (request.json() or {}).get("state")
        except ValueError:
            return _error(400, "JSON_PARSER_ERROR", "Malformed JSON body")
        if wanted == "Aborted":
            job["state"] = "Aborted"
            job["_final"] = "Aborted"
            return Response.json(200, self._job_json(job))
        if wanted != "UploadComplete" or job["_kind"] != "ingest" or job["state"] != "Open":
            return _error(400, "INVALIDJOBSTATE", f"Invalid state transition to {wanted}")
        self._process_ingest(job, request)
        job["state"] = "UploadComplete"
        return Response.json(200, self._job_json(job))

    def _process_ingest(self, job: dict[str, Any], request: Request) -> None:
        obj = self.emulator.schema[job["object"]]
        sep = _DELIMITERS[job["columnDelimiter"]]
        operation = job["operation"]
        ok_rows: list[list[str]] = []
        failed_rows: list[list[str]] = []
        header: list[str] = []
        for chunk in job["_data"]:
            reader = csv.reader(io.StringIO(chunk), delimiter=sep)
            rows = list(reader)
            if not rows:
                continue
            header = rows[0]
            for values in rows[1:]:
                if not values:
                    continue
                record = dict(zip(header, values, strict=False))
                outcome = self._ingest_one(
                    obj, operation, job.get("externalIdFieldName"), record, request
                )
                if isinstance(outcome, RecordError):
                    rid = record.get("Id") or record.get("id") or ""
                    failed_rows.append([rid, f"{outcome.code}:{outcome.message}:--", *values])
                else:
                    ok_rows.append([outcome[0], "true" if outcome[1] else "false", *values])
        job["_ok"] = _csv_doc(["sf__Id", "sf__Created", *header], ok_rows)
        job["_failed"] = _csv_doc(["sf__Id", "sf__Error", *header], failed_rows)
        job["_unprocessed"] = _csv_doc(header, [])
        job["numberRecordsProcessed"] = len(ok_rows) + len(failed_rows)
        job["numberRecordsFailed"] = len(failed_rows)
        job["_data"] = []

    def _ingest_one(
        self,
        obj: SObject,
        operation: str,
        external_field: str | None,
        record: dict[str, str],
        request: Request,
    ) -> tuple[str, bool] | RecordError:
        data: dict[str, Any] = {}
        for key, text in record.items():
            if key.lower() == "id":
                continue
            if text == "":
                continue  # Bulk 2.0: an empty cell leaves the field alone; #N/A sets null
            data[key] = None if text == "#N/A" else text
        raw_id = record.get("Id") or record.get("id") or ""
        with self.emulator._lock:
            try:
                if operation in ("delete", "hardDelete"):
                    row = self.emulator.rows[obj.name].get(to_id18(raw_id) or "")
                    if row is None or row["IsDeleted"]:
                        raise RecordError("ENTITY_IS_DELETED", "entity is deleted", [])
                    row["IsDeleted"] = True
                    self.emulator._touch(row, self.emulator._stamp())
                    return row["Id"], False
                if operation == "upsert" and external_field:
                    fdef = obj.field(external_field)
                    key_value = record.get(external_field, "")
                    match = [
                        r["Id"]
                        for r in self.emulator.rows[obj.name].values()
                        if fdef is not None and r.get(fdef.name) == key_value
                    ]
                    if match:
                        data.pop(external_field, None)
                        self._write_checked(obj, match[0], data, False, request)
                        return match[0], False
                    rid = self._write_checked(obj, None, data, True, request)
                    return rid, True
                if operation == "insert":
                    return self._write_checked(obj, None, data, True, request), True
                update_id = to_id18(raw_id)
                if update_id is None:
                    raise RecordError("MALFORMED_ID", f"malformed id {raw_id}", ["Id"])
                return self._write_checked(obj, update_id, data, False, request), False
            except RecordError as exc:
                return exc

    def _write_checked(
        self,
        obj: SObject,
        record_id: str | None,
        data: dict[str, Any],
        creating: bool,
        request: Request,
    ) -> str:
        clean = self.emulator.writer._validate(obj, record_id, data, creating, request)
        return self.emulator.writer._apply(obj, record_id, clean, self.emulator._stamp())
