"""Zoho sandbox: the Bulk Read API (/crm/bulk/v8/read: create job, job status, ZIP of one CSV) and record count.

Shapes follow Zoho's v8 Bulk Read pages (overview, create-job, job-details, download-result,
limitations). Choices the docs leave open are marked [A]:
- the create answer is HTTP 201 with `data[0].details.state = "ADDED"` [A: status code];
- a job's page is cut when the job is created (a snapshot), at most 200,000 records a page
  ("page 2 fetches the records starting from 200,001", limitations page);
- CSV columns are the requested field API names in request order (download-result page: "if you
  specify a set of fields ... the response will preserve the same order"); lookups hold the
  linked record's id, empty cells are nulls, booleans are `true`/`false` [A];
- credits: the docs only say bulk reads do not "significantly" affect the limits; 50 credits per
  job created and 1 per status or download call are charged here [A], configurable.
"""

from __future__ import annotations

import csv
import io
import threading
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sandboxes.server import Request, Response
from sandboxes.zoho_common import _json_object
from sandboxes.zoho_schema import LOOKUP_TYPES, ZModule, find_module

if TYPE_CHECKING:
    from sandboxes.zoho import ZohoEmulator

BULK_PREFIX = "/crm/bulk/v8"
MAX_PAGE = 200_000
_COMPARATORS = frozenset(
    {
        "equal",
        "not_equal",
        "in",
        "not_in",
        "less_than",
        "less_equal",
        "greater_than",
        "greater_equal",
        "between",
        "not_between",
        "contains",
        "starts_with",
        "ends_with",
    }
)


def _error(status: int, code: str, message: str, details: dict[str, Any] | None = None) -> Response:
    body = {"code": code, "details": details or {}, "message": message, "status": "error"}
    return Response.json(status, body)


@dataclass
class BulkJob:
    """One bulk read job: its query, the rows of its page and how often it was polled."""

    id: str
    module: str
    query: dict[str, Any]
    page: int
    rows: list[dict[str, Any]]
    columns: list[str]
    more: bool
    created_time: str
    polls: int = 0
    state: str = "ADDED"
    meta: dict[str, Any] = field(default_factory=dict)


class BulkReads:
    """The bulk read endpoints of one emulated org.

    Attributes:
        polls_to_complete: status calls after which a job reads COMPLETED (1: the first one).
        page_size: records per job page (Zoho: 200,000); tests lower it to see several pages.
        fail_jobs: this many next jobs end FAILED instead of COMPLETED.
        job_credits, call_credits: credits charged per job created and per status/download call.
    """

    def __init__(self, emulator: ZohoEmulator) -> None:
        self.emulator = emulator
        self.polls_to_complete = 1
        self.page_size = MAX_PAGE
        self.fail_jobs = 0
        self.job_credits = 50
        self.call_credits = 1
        self.jobs: dict[str, BulkJob] = {}
        self.downloads = 0
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ routing

    def handle(self, request: Request, parts: list[str]) -> Response:
        """Answer /crm/bulk/v8/<parts>: read (POST), read/{id} (GET), read/{id}/result (GET)."""
        if not parts or parts[0] != "read" or len(parts) > 3:
            return _error(
                404,
                "INVALID_URL_PATTERN",
                "Please check if the URL trying to access is a correct one",
            )
        if len(parts) == 1:
            if request.method != "POST":
                return _error(
                    405, "INVALID_REQUEST_METHOD", "The http request method type is not a valid one"
                )
            return self._charged(self.job_credits, lambda: self._create(request))
        job = self.jobs.get(parts[1])
        if request.method != "GET":
            return _error(
                405, "INVALID_REQUEST_METHOD", "The http request method type is not a valid one"
            )
        if job is None:
            return _error(
                400, "INVALID_DATA", "the given job id seems to be invalid", {"id": parts[1]}
            )
        if len(parts) == 2:
            return self._charged(self.call_credits, lambda: self._status(job))
        if parts[2] != "result":
            return _error(
                404,
                "INVALID_URL_PATTERN",
                "Please check if the URL trying to access is a correct one",
            )
        return self._charged(self.call_credits, lambda: self._result(job))

    def _charged(self, cost: int, answer: Callable[[], Response]) -> Response:
        refused = self.emulator._charge(cost)
        return refused if refused is not None else answer()

    # ------------------------------------------------------------------ create

    def _create(self, request: Request) -> Response:
        body = _json_object(request)
        query = body.get("query") if isinstance(body, dict) else None
        if not isinstance(query, dict):
            return _error(400, "REQUIRED_PARAM_MISSING", "query is missing", {"api_name": "query"})
        module_ref = query.get("module")
        name = module_ref.get("api_name") if isinstance(module_ref, dict) else module_ref
        module = self.emulator.module_view(find_module(str(name or "")))
        if module is None:
            return _error(400, "INVALID_MODULE", "the module name given seems to be invalid")
        raw_fields = query.get("fields")
        columns = [str(item) for item in raw_fields] if isinstance(raw_fields, list) else []
        if not columns:
            # All fields when none are named, in no particular order (download-result page).
            columns = ["id", *(f.api_name for f in module.fields)]
        for column in columns:
            if column != "id" and module.field(column) is None:
                return _error(400, "INVALID_DATA", "invalid field", {"api_name": column})
        page = query.get("page", 1)
        if not isinstance(page, int) or page < 1:
            return _error(400, "INVALID_DATA", "invalid page", {"api_name": "page"})
        criteria = query.get("criteria")
        try:
            test = self._compile(module, criteria) if criteria else None
        except ValueError as exc:
            return _error(400, "INVALID_DATA", str(exc), {"api_name": "criteria"})
        with self.emulator._lock:
            rows = [dict(row) for row in self.emulator.rows[module.api_name].values()]
            now = self.emulator.fmt(self.emulator.clock())
            job_id = self.emulator._new_id()
        if test is not None:
            rows = [row for row in rows if test(row)]
        # [A] export order: by record id (Zoho documents none; sorting is "not supported").
        rows.sort(key=lambda row: int(row["id"]))
        start = (page - 1) * self.page_size
        job = BulkJob(
            id=job_id,
            module=module.api_name,
            query=query,
            page=page,
            rows=rows[start : start + self.page_size],
            columns=columns,
            more=len(rows) > start + self.page_size,
            created_time=now,
        )
        with self._lock:
            if self.fail_jobs > 0:
                self.fail_jobs -= 1
                job.meta["fail"] = True
            self.jobs[job_id] = job
        user = self.emulator.api_user
        details = {
            "id": job_id,
            "operation": "read",
            "state": "ADDED",
            "created_by": {"id": user["id"], "name": user["full_name"]},
            "created_time": now,
        }
        element = {
            "status": "success",
            "code": "ADDED_SUCCESSFULLY",
            "message": "Added successfully.",
            "details": details,
        }
        return Response.json(201, {"data": [element], "info": {}})

    def _compile(self, module: ZModule, criteria: Any) -> Callable[[dict[str, Any]], bool]:
        if not isinstance(criteria, dict):
            raise ValueError("criteria must be an object")
        if "group" in criteria:
            operator = str(criteria.get("group_operator") or "and").lower()
            parts = [self._compile(module, item) for item in criteria.get("group") or []]
            if operator not in ("and", "or") or not parts:
                raise ValueError("invalid group")
            if operator == "and":
                return lambda row: all(part(row) for part in parts)
            return lambda row: any(part(row) for part in parts)
        ref = criteria.get("field")
        name = str(ref.get("api_name") if isinstance(ref, dict) else criteria.get("api_name") or "")
        comparator = str(criteria.get("comparator") or "")
        fdef = module.field(name)
        if name != "id" and fdef is None:
            raise ValueError(f"unknown field {name}")
        if comparator not in _COMPARATORS:
            raise ValueError(f"unknown comparator {comparator}")
        kind = "bigint" if fdef is None else fdef.value_type
        value = criteria.get("value")

        def norm(item: Any) -> Any:
            if item is None or item == "":
                return None
            if isinstance(item, dict):
                item = item.get("id")
            if kind == "datetime":
                return datetime.fromisoformat(str(item).replace("Z", "+00:00")).timestamp()
            if kind in ("integer", "bigint", "double", "currency", "percent"):
                return float(item)
            return str(item)

        values = [norm(v) for v in value] if isinstance(value, list) else [norm(value)]

        def test(row: dict[str, Any]) -> bool:
            have = norm(row.get(name))
            want = values[0]
            if comparator == "equal":
                return bool(have == want)
            if comparator == "not_equal":
                return bool(have != want)
            if comparator == "in":
                return have in values
            if comparator == "not_in":
                return have not in values
            if have is None:
                return False
            if comparator == "contains":
                return str(want) in str(have)
            if comparator == "starts_with":
                return str(have).startswith(str(want))
            if comparator == "ends_with":
                return str(have).endswith(str(want))
            if comparator in ("between", "not_between"):
                inside = bool(values[0] <= have <= values[-1])
                return inside if comparator == "between" else not inside
            return bool(
                {
                    "less_than": have < want,
                    "less_equal": have <= want,
                    "greater_than": have > want,
                    "greater_equal": have >= want,
                }[comparator]
            )

        return test

    # ------------------------------------------------------------------ status and result

    def _status(self, job: BulkJob) -> Response:
        with self._lock:
            job.polls += 1
            if job.state not in ("COMPLETED", "FAILED"):
                if job.polls >= self.polls_to_complete:
                    job.state = "FAILED" if job.meta.get("fail") else "COMPLETED"
                else:
                    job.state = "QUEUED" if job.polls == 1 else "IN PROGRESS"
        user = self.emulator.api_user
        item: dict[str, Any] = {
            "id": job.id,
            "operation": "read",
            "state": job.state,
            "query": {**job.query, "page": job.page},
            "created_by": {"id": user["id"], "name": user["full_name"]},
            "created_time": job.created_time,
            "file_type": "csv",
        }
        if job.state == "COMPLETED":
            item["result"] = {
                "page": job.page,
                "count": len(job.rows),
                "download_url": f"{BULK_PREFIX}/read/{job.id}/result",
                "per_page": self.page_size,
                "more_records": job.more,
            }
        return Response.json(200, {"data": [item]})

    def _result(self, job: BulkJob) -> Response:
        if job.state != "COMPLETED":
            # [A] Zoho's answer for a result asked before completion is not documented.
            return _error(400, "INVALID_DATA", "the job is not completed yet", {"id": job.id})
        module = self.emulator.module_view(find_module(job.module))
        assert module is not None
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\r\n")
        writer.writerow(job.columns)
        for row in job.rows:
            writer.writerow(csv_cells(module, job.columns, row))
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(f"{job.id}.csv", text.getvalue())
        with self._lock:
            self.downloads += 1
        headers = {
            "Content-Type": "application/zip",
            "Content-Disposition": f'attachment; filename="{job.id}.zip"',
        }
        return Response(200, buffer.getvalue(), headers)


def csv_cells(module: ZModule, columns: Iterable[str], row: dict[str, Any]) -> list[str]:
    """One record as CSV cells: lookups by id, booleans lower case, nulls empty [A]."""
    cells = []
    for column in columns:
        value = row.get(column)
        fdef = module.field(column)
        if value is None:
            cells.append("")
        elif fdef is not None and fdef.data_type in LOOKUP_TYPES:
            cells.append(str(value.get("id") or "") if isinstance(value, dict) else str(value))
        elif isinstance(value, bool):
            cells.append("true" if value else "false")
        elif isinstance(value, float) and value == int(value) and abs(value) < 1e15:
            # Zoho's export writes whole amounts without a fraction [A].
            cells.append(str(int(value)))
        else:
            cells.append(str(value))
    return cells


def record_count(emulator: ZohoEmulator, module: ZModule) -> Response:
    """GET /crm/v8/{module}/actions/count: {"count": N} (v8 "Get Record Count" API)."""
    with emulator._lock:
        count = len(emulator.rows[module.api_name])
    return Response.json(200, {"count": count})
