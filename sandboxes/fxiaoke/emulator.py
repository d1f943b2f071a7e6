"""Fxiaoke (纷享销客) sandbox: both token styles, the errorCode envelope, CRM object query/get/update/create, describe.

Wire shapes follow shared/reference/fxiaoke.md and the vendor pages it cites (developer.fxiaoke.com
/openapi_v2 and fxiaoke.com/mob/guide/openapi): every call is `POST` + JSON, the HTTP status is
always 200 and `errorCode` (0 = OK) says what happened. Choices the reference marks as
assumptions are tagged [A] where they are made, so a live tenant can settle them one by one.

Two token styles share one tenant:
- current: `POST /oauth2.0/token` `{appId, appSecret, permanentCode, grantType: "app_secret"}`
  returns `accessToken` and `ea`; calls send `authorization: Bearer`, `x-fs-ea`, `x-fs-userid`
  (a numeric employee id), and employee fields come back numeric;
- legacy: `POST /cgi/corpAccessToken/get/V2` `{appId, appSecret, permanentCode}` returns
  `corpAccessToken` and `corpId`; calls carry `corpAccessToken`, `corpId`, `currentOpenUserId`
  (`FSUID_...`) in the body, and employee fields come back as `FSUID_...`.
A token is valid for 7,200 s; asking again within 6,600 s of issue returns the same token, after
that a new one (the renewal window); the token endpoint takes at most 10 calls a minute and no
concurrent calls. The clock is the emulator's own (`advance()` moves it) so tests need no sleeping.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import date
from typing import Any

from sandboxes.fxiaoke.protocol import (
    CRM_PREFIX,
    CUSTOM_PREFIX,
    INTERFACE_CALLS_PER_20_S,
    INVALID_PARAMETER,
    MISSING_PARAMETER,
    OK,
    PER_SECOND_LIMIT,
    SERVICE_TIMEOUT,
    SYSTEM_BUSY,
    SYSTEM_USER,
    TOKEN_CALLS_PER_MINUTE,
    ApiError,
    Token,
)
from sandboxes.fxiaoke.query import QueryError, ordered, parse_query
from sandboxes.fxiaoke.schema import RATING_OPTIONS, FxObject, build_objects
from sandboxes.fxiaoke.seeding import employee_open_id, hex_id, seed_tenant
from sandboxes.fxiaoke.tokens import TokenDesk
from sandboxes.fxiaoke.writes import RecordWrites
from sandboxes.seed import Portfolio
from sandboxes.server import Request, Response


class FxiaokeEmulator:
    """A seeded Fxiaoke tenant behind the Open API's wire protocol.

    Args:
        portfolio: the seed data (users become employees, accounts `AccountObj`, invoices
            `PaymentPlanObj` with `PaymentObj` + `OrderPaymentObj` for what was collected).
        clock: seconds since the epoch; defaults to the real clock, moved by `advance()`.
        daily_api_limit: API calls a day before errorCode 30002 (None: unlimited).
        api_pack: False makes every API call answer 30003 (no Open API pack purchased).
        interface_limit: calls per interface per 20 s before 14001 (None: unlimited).
        token_calls_per_minute: token endpoint calls a minute before 14001 (None: unlimited).
        approval_objects: objects with an approval flow; an update with
            `triggerApprovalFlow` left true is held for approval and locks the record.
        custom_top_level_data_list: answer custom-object queries with `dataList` at the top
            level, as one user reported [X].
    """

    name = "fxiaoke"

    def __init__(
        self,
        portfolio: Portfolio,
        *,
        clock: Callable[[], float] | None = None,
        daily_api_limit: int | None = None,
        api_pack: bool = True,
        interface_limit: int | None = INTERFACE_CALLS_PER_20_S,
        token_calls_per_minute: int | None = TOKEN_CALLS_PER_MINUTE,
        approval_objects: Iterable[str] = ("AccountObj",),
        custom_top_level_data_list: bool = False,
    ) -> None:
        self._lock = threading.RLock()
        self._token_lock = threading.Lock()
        self._base_clock = clock or time.time
        self._skew = 0.0
        self.objects: dict[str, FxObject] = build_objects()
        self.rows: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in self.objects}
        self.ea = "fsemu88"
        self.corp_id = "FSCID_" + hex_id("corp", self.ea).upper()[:24]
        self.client_id = "FSAID_" + secrets.token_hex(5)
        self.client_secret = secrets.token_hex(16)
        self.refresh_token = secrets.token_hex(16)  # the permanentCode
        self.daily_api_limit = daily_api_limit
        self.api_pack = api_pack
        self.interface_limit = interface_limit
        self.token_calls_per_minute = token_calls_per_minute
        self.as_of = portfolio.as_of
        self.approval_objects = set(approval_objects)
        self.custom_top_level_data_list = custom_top_level_data_list
        self.call_counts: Any = None  # replaced by the server's live counter
        self.api_calls_today = 0
        self.token_calls = 0
        self.token_refusals = 0
        self.trace_ids: list[tuple[str | None, str]] = []  # (thirdTraceId sent, traceId answered)
        self.flag_log: list[dict[str, Any]] = []  # trigger flags as sent, per write
        self.writes_log: list[dict[str, Any]] = []  # applied writes: object, action, ids
        # Queries as asked: object, offset, limit, filters, orders (the newest 10,000).
        self.query_log: deque[dict[str, Any]] = deque(maxlen=10_000)
        self._tokens: dict[str, Token] = {}
        self._current: dict[str, Token] = {}  # style -> newest token
        self._token_times: deque[float] = deque()
        self._interface_times: dict[str, deque[float]] = {}
        self._quota_day: date | None = None
        self._seq = 0
        self._trace_seq = 0
        self.employees: list[dict[str, Any]] = []
        self.token_desk = TokenDesk(self)
        self.record_writes = RecordWrites(self)
        seed_tenant(self.rows, self.employees, portfolio)
        active = [e for e in self.employees if e["status"] == 0]
        self.username = active[0]["id"]  # the employee the app acts as (x-fs-userid)
        self.open_user_id = active[0]["openUserId"]  # the same person in legacy style

    # ------------------------------------------------------------------ clock and test hooks

    def now(self) -> float:
        """The emulator's clock (seconds since the epoch)."""
        return self._base_clock() + self._skew

    def advance(self, seconds: float) -> None:
        """Move the clock forward (token expiry, the renewal window, rate windows)."""
        with self._lock:
            self._skew += seconds

    def pass_token_window(self) -> None:
        """Forget the token endpoint's last minute of calls, as waiting a minute would."""
        with self._lock:
            self._token_times.clear()

    def expire_tokens(self) -> None:
        """Make every issued token invalid now (the next call answers 20016)."""
        with self._lock:
            for token in self._tokens.values():
                token.expires_at = min(token.expires_at, self.now() - 1)
            self._current.clear()

    def records(self, obj: str, *, include_invalid: bool = False) -> list[dict[str, Any]]:
        """Rows of one object (copies); invalidated (作废) ones only when asked for."""
        with self._lock:
            return [
                dict(row)
                for row in self.rows[obj].values()
                if include_invalid or row.get("life_status") != "invalid"
            ]

    def tasks(self) -> list[dict[str, Any]]:
        """Follow-up records (`ActiveRecordObj`)."""
        return self.records("ActiveRecordObj")

    def set_field(self, obj: str, record_id: str, field: str, value: Any) -> None:
        """Edit a record as a user in the CRM would (bumps last_modified_time and version)."""
        with self._lock:
            row = self.rows[obj][record_id]
            row[field] = value
            self._touch(row, SYSTEM_USER)

    def edit_field(
        self,
        obj: str,
        field: str,
        *,
        picklist: tuple[str, ...] | None = None,
        read_only: bool | None = None,
        delete: bool = False,
    ) -> None:
        """Change a field as an admin would in 对象管理: its options (by label), edit access, or delete it.

        A kept label keeps its option value; a new label gets a generated one, as the admin
        console makes them. Read-only is the field permission 只读 for every role: an update
        naming the field is refused [A: describe is not known to show field permissions, so
        it does not change here; a client meets the change in the write's answer]. A deleted
        field leaves describe and every record.
        """
        with self._lock:
            found = self._object(obj)
            definition = found.fields.get(field)
            if definition is None:
                raise KeyError(field)
            if delete:
                del found.fields[field]
                for row in self.rows[found.api_name].values():
                    row.pop(field, None)
                return
            changes: dict[str, Any] = {}
            if picklist is not None:
                values = dict(definition.options)
                changes["options"] = tuple(
                    (label, values.get(label) or hex_id("option", obj, field, label)[:9])
                    for label in picklist
                )
            if read_only is not None:
                changes["read_only"] = read_only
            found.fields[field] = replace(definition, **changes)

    def invalidate(self, obj: str, record_id: str) -> None:
        """Invalidate (作废) a record as a user would."""
        with self._lock:
            row = self.rows[obj][record_id]
            row["life_status"] = "invalid"
            self._touch(row, SYSTEM_USER)

    def approve(self, obj: str, record_id: str) -> None:
        """Approve the change an approval flow holds: apply it and unlock the record."""
        with self._lock:
            row = self.rows[obj][record_id]
            pending = row.pop("_pending", {})
            row.update(pending)
            row["life_status"] = "normal"
            row["lock_status"] = "0"
            self._touch(row, SYSTEM_USER)

    def to_state(self) -> dict[str, Any]:
        """Everything that changes, as JSON-native data."""
        with self._lock:
            state: dict[str, Any] = json.loads(
                json.dumps(
                    {
                        "rows": self.rows,
                        "seq": self._seq,
                        "client_id": self.client_id,
                        "client_secret": self.client_secret,
                        "permanent_code": self.refresh_token,
                        "api_calls_today": self.api_calls_today,
                    }
                )
            )
        return state

    def from_state(self, state: dict[str, Any]) -> None:
        """Replace the tenant's data with a `to_state()` snapshot."""
        with self._lock:
            self.rows = {name: dict(state["rows"].get(name, {})) for name in self.objects}
            self._seq = int(state["seq"])
            self.client_id = str(state["client_id"])
            self.client_secret = str(state["client_secret"])
            self.refresh_token = str(state["permanent_code"])
            self.api_calls_today = int(state["api_calls_today"])
            self._tokens.clear()
            self._current.clear()

    def save_state(self, path: str) -> None:
        """Write `to_state()` to a JSON file."""
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(self.to_state()))

    def load_state(self, path: str) -> None:
        """Load a file written by save_state()."""
        with open(path, encoding="utf-8") as handle:
            self.from_state(json.load(handle))

    # ------------------------------------------------------------------ server protocol

    def fault_response(self, kind: str) -> Response:
        """Injected faults as the Open API reports them: HTTP 200 with an errorCode."""
        code = {"429": PER_SECOND_LIMIT, "503": SYSTEM_BUSY}.get(kind, SERVICE_TIMEOUT)
        return self._error(ApiError(code), None)

    def handle(self, request: Request) -> Response:
        """Answer one request."""
        third = request.param("thirdTraceId")
        try:
            if request.method != "POST":
                raise ApiError(MISSING_PARAMETER, "仅支持POST请求", "only POST is supported")
            try:
                body = request.json()
            except ValueError as exc:
                raise ApiError(
                    INVALID_PARAMETER, "请求体不是合法的JSON", "body is not JSON"
                ) from exc
            if not isinstance(body, dict):
                raise ApiError(INVALID_PARAMETER, "请求体不是合法的JSON", "body must be an object")
            path = request.path.rstrip("/")
            if path == "/oauth2.0/token":
                return self._answer(self.token_desk.token(body, "bearer", request), third)
            if path == "/cgi/corpAccessToken/get/V2":
                return self._answer(self.token_desk.token(body, "legacy", request), third)
            style, user = self.token_desk.authenticate(request, body)
            self.token_desk.meter(path)
            return self._answer(self._route(path, body, style, user, request), third)
        except ApiError as error:
            return self._error(error, third)
        except QueryError as error:
            return self._error(ApiError(error.code, error.message, error.description), third)

    def _trace(self, third: str | None) -> str:
        with self._lock:
            self._trace_seq += 1
            trace = f"E-O.{self.ea}.{self.username}-{self._trace_seq:016x}"
            self.trace_ids.append((third, trace))
        return trace

    def _answer(self, payload: dict[str, Any], third: str | None) -> Response:
        body = {"traceId": self._trace(third), **payload}
        body.setdefault("errorCode", OK)
        body.setdefault("errorMessage", "OK")
        body.setdefault("errorDescription", "success")
        return Response.json(200, body)

    def _error(self, error: ApiError, third: str | None) -> Response:
        return Response.json(
            200,
            {
                "traceId": self._trace(third),
                "errorCode": error.code,
                "errorMessage": error.message,
                "errorDescription": error.description,
            },
        )

    # ------------------------------------------------------------------ routes

    def _route(
        self, path: str, body: dict[str, Any], style: str, user: dict[str, Any], request: Request
    ) -> dict[str, Any]:
        if path == "/cgi/user/getByMobile":
            mobile = body.get("mobile")
            found = [e for e in self.employees if e["mobile"] == mobile]
            return {"empList": [self._render_employee(e) for e in found]}
        if path == "/cgi/user/get":
            employee = self.token_desk.employee(str(body.get("openUserId", "")), by="openUserId")
            return self._render_employee(employee)
        if path == CRM_PREFIX + "object/describe":
            return {"data": {"describe": self._object(self._describe_name(body)).describe()}}
        if path == CRM_PREFIX + "object/list":
            return {
                "data": {
                    "objects": [
                        {"api_name": o.api_name, "display_name": o.display_name}
                        for o in self.objects.values()
                    ]
                }
            }
        for prefix in (CRM_PREFIX, CUSTOM_PREFIX):
            if path.startswith(prefix + "data/"):
                action = path[len(prefix + "data/") :]
                return self._data(
                    action, body, style, user, request, custom=prefix == CUSTOM_PREFIX
                )
        # Reference §3: an unknown path answers 10006, the missing-parameter code.
        raise ApiError(MISSING_PARAMETER, "接口不存在", f"no API at {path}")

    def _render_employee(self, employee: dict[str, Any]) -> dict[str, Any]:
        return {
            "openUserId": employee["openUserId"],
            "name": employee["name"],
            "mobile": employee["mobile"],
            "email": employee["email"],
            "status": employee["status"],
        }

    @staticmethod
    def _describe_name(body: dict[str, Any]) -> str:
        raw = body.get("data")
        data: dict[str, Any] = raw if isinstance(raw, dict) else {}
        # The current manual puts apiName inside data; legacy clients send it at the top level [F][S].
        name = data.get("apiName") or body.get("apiName")
        if not name:
            raise ApiError(MISSING_PARAMETER, "参数apiName缺失或不合法", "apiName is missing")
        return str(name)

    def _object(self, name: str) -> FxObject:
        obj = self.objects.get(name)
        if obj is None:
            raise ApiError(INVALID_PARAMETER, f"对象{name}不存在", f"object {name} does not exist")
        return obj

    def _data(
        self,
        action: str,
        body: dict[str, Any],
        style: str,
        user: dict[str, Any],
        request: Request,
        *,
        custom: bool,
    ) -> dict[str, Any]:
        data = body.get("data")
        if not isinstance(data, dict):
            raise ApiError(MISSING_PARAMETER, "参数data缺失", "data is missing")
        raw_inner = data.get("object_data")
        inner: dict[str, Any] = raw_inner if isinstance(raw_inner, dict) else {}
        # Users report `apiName` accepted where `dataObjectApiName` is documented [X].
        name = (
            data.get("dataObjectApiName") or inner.get("dataObjectApiName") or data.get("apiName")
        )
        if not name:
            raise ApiError(
                MISSING_PARAMETER,
                "参数dataObjectApiName缺失或不合法",
                "dataObjectApiName is missing",
            )
        obj = self._object(str(name))
        if action == "query":
            return self._query(obj, data, style, custom=custom)
        if action == "get":
            return self._get(obj, data, style)
        if action in ("update", "create"):
            self.flag_log.append(
                {
                    "action": action,
                    "top": {
                        k: body[k] for k in ("triggerWorkFlow", "triggerApprovalFlow") if k in body
                    },
                    "in_data": {
                        k: data[k] for k in ("triggerWorkFlow", "triggerApprovalFlow") if k in data
                    },
                }
            )
            if request.faults.roll(request.faults.lock_error_rate):
                raise ApiError(INVALID_PARAMETER, "数据已锁定，不能编辑", "record is locked")
            if request.faults.roll(request.faults.record_error_rate):
                raise ApiError(
                    INVALID_PARAMETER, "字段校验失败", "a validation rule refused the record"
                )
            approval = body.get("triggerApprovalFlow", True) is not False
            if action == "update":
                answer = self.record_writes.update(obj, inner, user, approval)
                done = str(inner.get("_id"))
            else:
                answer = self.record_writes.create(obj, inner, user, approval)
                done = str(answer["dataId"])
            with self._lock:
                self.writes_log.append({"object": obj.api_name, "action": action, "ids": [done]})
            return answer
        if action == "invalid":
            record_id = str(data.get("object_data_id") or data.get("objectDataId") or "")
            row = self._row(obj, record_id)
            with self._lock:
                if row.get("life_status") == "invalid":
                    raise ApiError(
                        INVALID_PARAMETER, "数据已作废", f"{record_id} is already invalid"
                    )
                row["life_status"] = "invalid"
                self._touch(row, user["id"])
            return {}
        raise ApiError(MISSING_PARAMETER, "接口不存在", f"no data action {action}")

    def _row(self, obj: FxObject, record_id: str) -> dict[str, Any]:
        row = self.rows[obj.api_name].get(record_id)
        if row is None:
            raise ApiError(
                INVALID_PARAMETER, "数据不存在或已被删除", f"{obj.api_name} {record_id} not found"
            )
        return row

    def _render(
        self, obj: FxObject, row: dict[str, Any], style: str, projection: tuple[str, ...]
    ) -> dict[str, Any]:
        names = [n for n in (projection or tuple(obj.fields)) if n in obj.fields]
        if "_id" not in names:
            names.insert(0, "_id")  # [A] the id comes back even when not projected
        out: dict[str, Any] = {}
        for name in names:
            value = row.get(name)
            definition = obj.fields[name]
            if definition.type == "employee" and isinstance(value, list):
                if style == "legacy":  # convertUserId defaults to true in the legacy style [P]
                    value = [employee_open_id(v) if v != SYSTEM_USER else v for v in value]
                out[name + "__r"] = self._employee_ref(row.get(name))
            elif definition.type == "object_reference" and value:
                label = row.get(name + "__r")
                if label is not None:
                    out[name + "__r"] = label
            out[name] = value
        return out

    def _employee_ref(self, ids: Any) -> dict[str, Any] | None:
        if not isinstance(ids, list) or not ids:
            return None
        for employee in self.employees:
            if employee["id"] == ids[0]:
                return {
                    "id": employee["id"],
                    "name": employee["name"],
                    "status": employee["status"],
                }
        return {"id": ids[0], "name": "系统"}

    def _query(
        self, obj: FxObject, data: dict[str, Any], style: str, *, custom: bool
    ) -> dict[str, Any]:
        query = parse_query(obj, data)
        info = data["search_query_info"]
        with self._lock:
            self.query_log.append(
                {
                    "object": obj.api_name,
                    "offset": query.offset,
                    "limit": query.limit,
                    "filters": info.get("filters") or [],
                    "orders": info.get("orders") or [],
                }
            )
            rows = [
                row
                for row in self.rows[obj.api_name].values()
                # [A] invalidated (作废) records sit in the recycle bin: a query returns them only
                # when a filter names life_status or is_deleted.
                if (query.names_lifecycle or row.get("life_status") != "invalid")
                and query.matches(row)
            ]
            total = len(rows)
            upto = query.offset + query.limit
            page = ordered(rows, query, upto)[query.offset : upto]
            rendered = [self._render(obj, row, style, query.projection) for row in page]
        # find_explicit_total_num sits inside data and defaults to true; false answers total 0 [F].
        explicit = data.get("find_explicit_total_num", True) is not False
        payload = {
            "dataList": rendered,
            "offset": query.offset,
            "limit": query.limit,
            "total": total if explicit else 0,
        }
        if custom and obj.custom and self.custom_top_level_data_list:
            return payload
        return {"data": payload}

    def _get(self, obj: FxObject, data: dict[str, Any], style: str) -> dict[str, Any]:
        record_id = str(data.get("objectDataId") or "")
        if not record_id:
            raise ApiError(MISSING_PARAMETER, "参数objectDataId缺失", "objectDataId is missing")
        with self._lock:
            row = self._row(obj, record_id)
            return {"data": self._render(obj, row, style, ())}

    # ------------------------------------------------------------------ writes

    def _touch(self, row: dict[str, Any], user_id: str) -> None:
        stamp = int(self.now() * 1000)
        row["last_modified_time"] = max(stamp, int(row.get("last_modified_time") or 0) + 1)
        row["last_modified_by"] = [user_id]
        row["version"] = str(int(row.get("version") or "0") + 1)


def rating_value(label: str) -> str:
    """The opaque option value of a rating label (tests and the demo read ratings back)."""
    return dict(RATING_OPTIONS)[label]
