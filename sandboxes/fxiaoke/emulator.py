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

import hashlib
import json
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from sandboxes.fxiaoke.query import QueryError, ordered, parse_query
from sandboxes.fxiaoke.schema import (
    NUMBER_TYPES,
    RATING_OPTIONS,
    FxObject,
    build_objects,
)
from sandboxes.seed import RATES_PER_EUR, Portfolio, SeedAccount, SeedInvoice, rate_on
from sandboxes.server import Request, Response

CHINA = timezone(timedelta(hours=8))
TOKEN_LIFETIME_S = 7200
SAME_TOKEN_FOR_S = 6600
TOKEN_CALLS_PER_MINUTE = 10
INTERFACE_CALLS_PER_20_S = 100
SYSTEM_USER = "-10000"
CENT = Decimal("0.01")
CRM_PREFIX = "/cgi/crm/v2/"
# Keys of object_data that name the record rather than set a field (the create examples of the
# manual send object_describe_api_name next to dataObjectApiName).
_ENVELOPE_KEYS = frozenset({"_id", "dataObjectApiName", "object_describe_api_name"})
CUSTOM_PREFIX = "/cgi/crm/custom/v2/"

# errorCode table (reference §3; [P] codes.html as copied by API Evangelist, [F] where marked).
OK = 0
SYSTEM_BUSY = -1
MISSING_PARAMETER = 10006
OFFSET_OUT_OF_RANGE = 10013  # [F] deep-paging.html
CALL_LIMIT = 14001
INVALID_PARAMETER = 15002
NO_PERMISSION = 15003
TOKEN_MISSING = 20005  # "accessToken does not exist or has expired"
MISSING_CORP_TOKEN = 10013  # the global table's "missing corpAccessToken" (10013 twice over)
MISSING_CORP_ID = 10014
MISSING_OPEN_USER = 10010
OPEN_USER_NOT_FOUND = 20012
EMPLOYEE_NOT_FOUND = 30027
WRONG_APP_SECRET = 20006
WRONG_PERMANENT_CODE = 20015
TOKEN_EXPIRED = 20016
DAILY_QUOTA_USED = 30002
NO_API_PACK = 30003
PER_SECOND_LIMIT = 30004
SERVICE_TIMEOUT = 50009

_MESSAGES = {
    SYSTEM_BUSY: ("系统繁忙", "system busy, please retry"),
    CALL_LIMIT: ("接口调用超过限制", "call limit exceeded"),
    TOKEN_MISSING: ("accessToken不存在或者已经过期", "access token missing or expired"),
    MISSING_CORP_TOKEN: ("缺少参数corpAccessToken", "corpAccessToken is missing"),
    MISSING_CORP_ID: ("缺少参数corpId", "corpId is missing"),
    MISSING_OPEN_USER: ("缺少参数openUserId", "currentOpenUserId is missing"),
    WRONG_APP_SECRET: ("appId或appSecret错误", "wrong appId or appSecret"),
    WRONG_PERMANENT_CODE: ("permanentCode错误", "wrong permanentCode"),
    TOKEN_EXPIRED: ("corpAccessToken已过期", "access token expired or invalid"),
    DAILY_QUOTA_USED: ("今日调用次数已用完", "daily quota used up; resets at 00:00"),
    NO_API_PACK: ("企业未购买OpenAPI资源包", "no Open API pack purchased"),
    PER_SECOND_LIMIT: ("每秒调用次数超过限制", "per-second rate exceeded"),
    SERVICE_TIMEOUT: ("服务超时", "service timeout"),
}


class _ApiError(Exception):
    def __init__(
        self, code: int, message: str | None = None, description: str | None = None
    ) -> None:
        default = _MESSAGES.get(code, ("参数错误", "invalid parameter"))
        super().__init__(message or default[0])
        self.code = code
        self.message = message or default[0]
        self.description = description or default[1]


@dataclass
class _Token:
    value: str
    style: str  # "bearer" or "legacy"
    issued_at: float
    expires_at: float


def _hex_id(*parts: object) -> str:
    """A 24-hex, ObjectId-like `_id` (reference §5), stable for the same seed key."""
    return hashlib.sha256(":".join(str(p) for p in parts).encode()).hexdigest()[:24]


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _day_ms(day: date) -> int:
    """Date fields are epoch ms at 00:00 China time [A: the tenant's zone, GMT+8 by default]."""
    return _ms(datetime(day.year, day.month, day.day, tzinfo=CHINA))


def _money_text(value: Decimal | None) -> str | None:
    """Money comes back as a string with two decimals (reference §5)."""
    return None if value is None else str(value.quantize(CENT, rounding=ROUND_HALF_UP))


def _to_cny(amount: Decimal | None, currency: str, day: date) -> Decimal | None:
    """The seed's amount in CNY at the rate of `day` (the sandbox tenant books in CNY)."""
    if amount is None:
        return None
    eur = amount / rate_on(currency, day)
    return (eur * RATES_PER_EUR["CNY"]).quantize(CENT, rounding=ROUND_HALF_UP)


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
        self.corp_id = "FSCID_" + _hex_id("corp", self.ea).upper()[:24]
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
        self._tokens: dict[str, _Token] = {}
        self._current: dict[str, _Token] = {}  # style -> newest token
        self._token_times: deque[float] = deque()
        self._interface_times: dict[str, deque[float]] = {}
        self._quota_day: date | None = None
        self._seq = 0
        self._trace_seq = 0
        self.employees: list[dict[str, Any]] = []
        self._seed(portfolio)
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
                    (label, values.get(label) or _hex_id("option", obj, field, label)[:9])
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

    # ------------------------------------------------------------------ seeding

    def _employee_open_id(self, employee_id: str) -> str:
        return "FSUID_" + hashlib.sha256(f"emp:{employee_id}".encode()).hexdigest()[:32].upper()

    def _seed(self, portfolio: Portfolio) -> None:
        by_key: dict[str, str] = {}
        for index, user in enumerate(portfolio.users):
            employee_id = str(1000 + index)
            by_key[user.key] = employee_id
            self.employees.append(
                {
                    "id": employee_id,
                    "openUserId": self._employee_open_id(employee_id),
                    "name": user.name,
                    "email": user.email,
                    "mobile": f"1380000{1000 + index:04d}",
                    "status": 0 if user.active else 1,  # 1: stopped (离职)
                }
            )
        as_of = portfolio.as_of
        accounts: dict[str, SeedAccount] = {}
        for account in portfolio.accounts:
            accounts[account.key] = account
            self._seed_account(account, by_key[account.owner_key], as_of)
        for invoice in portfolio.invoices:
            account = accounts[invoice.account_key]
            self._seed_plan(invoice, account, by_key[account.owner_key], as_of)

    def _base_row(
        self, obj: str, record_id: str, name: str, owner: str, created: int
    ) -> dict[str, Any]:
        return {
            "_id": record_id,
            "name": name,
            "owner": [owner],
            "created_by": [owner],
            "last_modified_by": [owner],
            "create_time": created,
            "last_modified_time": created,
            "life_status": "normal",
            "lock_status": "0",
            "is_deleted": False,
            "version": "1",
            "record_type": "default__c",
            "object_describe_api_name": obj,
        }

    def _seed_account(self, account: SeedAccount, owner: str, as_of: date) -> None:
        record_id = _hex_id("AccountObj", account.key)
        # Whole-day stamps at 09:00: many accounts share a last_modified_time, so (time, _id)
        # ties straddle page boundaries as they do after a bulk import. Accounts were last edited
        # some time in the two years before the seed's day (or on creation, if later).
        created_day = account.created_at.date()
        created = _ms(
            datetime(created_day.year, created_day.month, created_day.day, 9, tzinfo=CHINA)
        )
        edited_day = as_of - timedelta(days=int(record_id[:6], 16) % 700)
        edited = _ms(datetime(edited_day.year, edited_day.month, edited_day.day, 9, tzinfo=CHINA))
        row = self._base_row("AccountObj", record_id, account.name, owner, created)
        row["last_modified_time"] = max(created, edited)
        row.update(
            {
                "account_no": f"KH{account.key[3:]}",
                "industry_level1": account.industry,
                "country": account.country,
                "mc_currency": "CNY",
                "field_AnRv1__c": _money_text(
                    _to_cny(account.annual_revenue, account.currency, as_of)
                ),
                "field_Emp2a__c": None if account.employees is None else str(account.employees),
                "field_Trm3b__c": str(account.payment_terms_days),
                "field_CrL4c__c": _money_text(
                    _to_cny(account.credit_limit, account.currency, as_of)
                ),
                "field_ExS5d__c": None
                if account.external_score is None
                else str(account.external_score),
                "field_Ins6e__c": _money_text(
                    _to_cny(account.insured_limit, account.currency, as_of)
                ),
                "field_MnO7f__c": False,
                "field_Rk01a__c": None,
                "field_Rk02b__c": None,
                "field_Cl03c__c": None,
                "field_Rr04d__c": None,
                "field_Lv05e__c": None,
                "field_Rv06f__c": None,
                "field_Cb10j__c": None,
            }
        )
        self.rows["AccountObj"][record_id] = row

    def _seed_plan(
        self, invoice: SeedInvoice, account: SeedAccount, owner: str, as_of: date
    ) -> None:
        account_id = _hex_id("AccountObj", account.key)
        plan_id = _hex_id("PaymentPlanObj", invoice.key)
        created = _ms(
            datetime(
                invoice.issue_date.year,
                invoice.issue_date.month,
                invoice.issue_date.day,
                10,
                tzinfo=CHINA,
            )
        )
        amount = _to_cny(invoice.amount, account.currency, invoice.issue_date) or Decimal(0)
        open_amount = _to_cny(invoice.open_amount, account.currency, invoice.issue_date) or Decimal(
            0
        )
        if invoice.status == "written_off":
            open_amount = amount  # nothing was collected; the plan is invalidated below
        paid = amount - open_amount
        if open_amount <= 0:
            status = "completed"
        elif invoice.due_date < as_of:
            status = "overdue"
        else:
            status = "incomplete"
        row = self._base_row("PaymentPlanObj", plan_id, invoice.number, owner, created)
        row.update(
            {
                "account_id": account_id,
                "account_id__r": account.name,
                "order_id": None,
                "plan_payment_amount": _money_text(amount),
                "plan_payment_time": _day_ms(invoice.due_date),
                "actual_payment_amount": _money_text(paid),
                "plan_payment_status": status,
                "remind_time": "3",
                "mc_currency": "CNY",
            }
        )
        if invoice.status in ("void", "written_off"):
            # [A] No write-off or void state exists on PaymentPlanObj; tenants invalidate (作废) it.
            row["life_status"] = "invalid"
        last = created
        if paid > 0:
            paid_day = invoice.paid_date or min(as_of, invoice.due_date + timedelta(days=20))
            paid_ms = _day_ms(paid_day) + 11 * 3_600_000
            payment_id = _hex_id("PaymentObj", invoice.key)
            payment = self._base_row(
                "PaymentObj", payment_id, f"HK{invoice.number[4:]}", owner, paid_ms
            )
            payment.update(
                {
                    "account_id": account_id,
                    "account_id__r": account.name,
                    "order_id": None,
                    "payment_amount": _money_text(paid),
                    "payment_time": _day_ms(paid_day),
                    "payment_term": "1",
                    "mc_currency": "CNY",
                }
            )
            line_id = _hex_id("OrderPaymentObj", invoice.key)
            line = self._base_row(
                "OrderPaymentObj", line_id, f"HKMX{invoice.number[4:]}", owner, paid_ms
            )
            line.update(
                {
                    "payment_id": payment_id,
                    "order_id": None,
                    "payment_plan_id": plan_id,
                    "account_id": account_id,
                    "payment_amount": _money_text(paid),
                    "payment_time": _day_ms(paid_day),
                }
            )
            self.rows["PaymentObj"][payment_id] = payment
            self.rows["OrderPaymentObj"][line_id] = line
            last = max(last, paid_ms)
        row["last_modified_time"] = last
        self.rows["PaymentPlanObj"][plan_id] = row

    # ------------------------------------------------------------------ server protocol

    def fault_response(self, kind: str) -> Response:
        """Injected faults as the Open API reports them: HTTP 200 with an errorCode."""
        code = {"429": PER_SECOND_LIMIT, "503": SYSTEM_BUSY}.get(kind, SERVICE_TIMEOUT)
        return self._error(_ApiError(code), None)

    def handle(self, request: Request) -> Response:
        """Answer one request."""
        third = request.param("thirdTraceId")
        try:
            if request.method != "POST":
                raise _ApiError(MISSING_PARAMETER, "仅支持POST请求", "only POST is supported")
            try:
                body = request.json()
            except ValueError as exc:
                raise _ApiError(
                    INVALID_PARAMETER, "请求体不是合法的JSON", "body is not JSON"
                ) from exc
            if not isinstance(body, dict):
                raise _ApiError(INVALID_PARAMETER, "请求体不是合法的JSON", "body must be an object")
            path = request.path.rstrip("/")
            if path == "/oauth2.0/token":
                return self._answer(self._token(body, "bearer", request), third)
            if path == "/cgi/corpAccessToken/get/V2":
                return self._answer(self._token(body, "legacy", request), third)
            style, user = self._authenticate(request, body)
            self._meter(path)
            return self._answer(self._route(path, body, style, user, request), third)
        except _ApiError as error:
            return self._error(error, third)
        except QueryError as error:
            return self._error(_ApiError(error.code, error.message, error.description), third)

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

    def _error(self, error: _ApiError, third: str | None) -> Response:
        return Response.json(
            200,
            {
                "traceId": self._trace(third),
                "errorCode": error.code,
                "errorMessage": error.message,
                "errorDescription": error.description,
            },
        )

    # ------------------------------------------------------------------ tokens

    def _token(self, body: dict[str, Any], style: str, request: Request) -> dict[str, Any]:
        if not self._token_lock.acquire(blocking=False):
            with self._lock:
                self.token_refusals += 1
            # [P] the token endpoint takes no concurrent calls; the refusal code is not published [A].
            raise _ApiError(CALL_LIMIT, "获取token接口不允许并发调用", "concurrent token calls")
        try:
            # Held a moment, as a real round trip is: a concurrent caller would collide with it.
            time.sleep(0.02)
            return self._issue(body, style, request.faults.expire_tokens_after_s)
        finally:
            self._token_lock.release()

    def _issue(
        self, body: dict[str, Any], style: str, expire_after: float | None
    ) -> dict[str, Any]:
        with self._lock:
            self.token_calls += 1
            now = self.now()
            while self._token_times and now - self._token_times[0] >= 60:
                self._token_times.popleft()
            limit = self.token_calls_per_minute
            if limit is not None and len(self._token_times) >= limit:
                self.token_refusals += 1
                raise _ApiError(
                    CALL_LIMIT, "获取token接口调用超过每分钟10次", "token calls over 10 a minute"
                )
            self._token_times.append(now)
            for key in ("appId", "appSecret", "permanentCode"):
                if not body.get(key):
                    raise _ApiError(MISSING_PARAMETER, f"参数{key}缺失", f"{key} is missing")
            if style == "bearer" and body.get("grantType") != "app_secret":
                raise _ApiError(
                    INVALID_PARAMETER, "grantType不合法", "grantType must be app_secret"
                )
            if body["appId"] != self.client_id or body["appSecret"] != self.client_secret:
                raise _ApiError(WRONG_APP_SECRET)
            if body["permanentCode"] != self.refresh_token:
                raise _ApiError(WRONG_PERMANENT_CODE)
            token = self._current.get(style)
            # A token killed early by the expire_tokens_after_s fault is not handed out again.
            dead_at = token.expires_at if token is not None else 0.0
            if token is not None and expire_after is not None:
                dead_at = min(dead_at, token.issued_at + expire_after)
            if token is None or now - token.issued_at >= SAME_TOKEN_FOR_S or now >= dead_at:
                lifetime = float(TOKEN_LIFETIME_S)
                token = _Token(secrets.token_hex(16).upper(), style, now, now + lifetime)
                self._tokens[token.value] = token
                self._current[style] = token
            expires_in = max(0, int(token.expires_at - now))
        if style == "bearer":
            return {
                "accessToken": token.value,
                "expiresIn": expires_in,
                "appId": self.client_id,
                "ea": self.ea,
                "openUserId": self.corp_id,
            }
        return {"corpAccessToken": token.value, "corpId": self.corp_id, "expiresIn": expires_in}

    def _authenticate(self, request: Request, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        header = request.headers.get("authorization", "")
        expire_after = request.faults.expire_tokens_after_s
        if header:
            scheme, _, value = header.partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                raise _ApiError(TOKEN_MISSING)
            token = self._valid_token(value.strip(), "bearer", expire_after)
            ea = request.headers.get("x-fs-ea")
            user_id = request.headers.get("x-fs-userid")
            if not ea:
                raise _ApiError(MISSING_PARAMETER, "请求头x-fs-ea缺失", "header x-fs-ea is missing")
            if ea != self.ea:
                raise _ApiError(
                    NO_PERMISSION, "企业账号与token不匹配", "x-fs-ea does not match the token"
                )
            if not user_id:
                raise _ApiError(
                    MISSING_PARAMETER, "请求头x-fs-userid缺失", "header x-fs-userid is missing"
                )
            del token
            return "bearer", self._employee(user_id, by="id")
        body_token = body.get("corpAccessToken")
        if not body_token:
            raise _ApiError(MISSING_CORP_TOKEN)
        self._valid_token(str(body_token), "legacy", expire_after)
        if not body.get("corpId"):
            raise _ApiError(MISSING_CORP_ID)
        if body["corpId"] != self.corp_id:
            raise _ApiError(NO_PERMISSION, "corpId与token不匹配", "corpId does not match the token")
        open_user = body.get("currentOpenUserId")
        if not open_user:
            raise _ApiError(MISSING_OPEN_USER)
        return "legacy", self._employee(str(open_user), by="openUserId")

    def _valid_token(self, value: str, style: str, expire_after: float | None) -> _Token:
        with self._lock:
            token = self._tokens.get(value)
            now = self.now()
            if token is None or token.style != style:
                raise _ApiError(TOKEN_EXPIRED)
            deadline = token.expires_at
            if expire_after is not None:
                deadline = min(deadline, token.issued_at + expire_after)
            if now >= deadline:
                raise _ApiError(TOKEN_EXPIRED)
            return token

    def _employee(self, value: str, *, by: str) -> dict[str, Any]:
        for employee in self.employees:
            if employee[by] == value:
                if employee["status"] != 0:
                    raise _ApiError(NO_PERMISSION, "员工已停用", f"employee {value} is stopped")
                return employee
        # Global return codes: 20012 openUserId not found, 30027 employee does not exist.
        code = OPEN_USER_NOT_FOUND if by == "openUserId" else EMPLOYEE_NOT_FOUND
        raise _ApiError(code, "员工不存在", f"no employee {value}")

    def _meter(self, path: str) -> None:
        """Count the call against the daily pack and the per-interface window (reference §4)."""
        with self._lock:
            if not self.api_pack:
                raise _ApiError(NO_API_PACK)
            today = datetime.fromtimestamp(self.now(), CHINA).date()
            if self._quota_day != today:  # [A] the daily cap resets at 00:00 China time
                self._quota_day = today
                self.api_calls_today = 0
            if self.daily_api_limit is not None and self.api_calls_today >= self.daily_api_limit:
                raise _ApiError(DAILY_QUOTA_USED)
            if self.interface_limit is not None:
                window = self._interface_times.setdefault(path, deque())
                now = self.now()
                while window and now - window[0] >= 20:
                    window.popleft()
                if len(window) >= self.interface_limit:
                    raise _ApiError(CALL_LIMIT)
                window.append(now)
            self.api_calls_today += 1

    # ------------------------------------------------------------------ routes

    def _route(
        self, path: str, body: dict[str, Any], style: str, user: dict[str, Any], request: Request
    ) -> dict[str, Any]:
        if path == "/cgi/user/getByMobile":
            mobile = body.get("mobile")
            found = [e for e in self.employees if e["mobile"] == mobile]
            return {"empList": [self._render_employee(e) for e in found]}
        if path == "/cgi/user/get":
            employee = self._employee(str(body.get("openUserId", "")), by="openUserId")
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
        raise _ApiError(MISSING_PARAMETER, "接口不存在", f"no API at {path}")

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
            raise _ApiError(MISSING_PARAMETER, "参数apiName缺失或不合法", "apiName is missing")
        return str(name)

    def _object(self, name: str) -> FxObject:
        obj = self.objects.get(name)
        if obj is None:
            raise _ApiError(INVALID_PARAMETER, f"对象{name}不存在", f"object {name} does not exist")
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
            raise _ApiError(MISSING_PARAMETER, "参数data缺失", "data is missing")
        raw_inner = data.get("object_data")
        inner: dict[str, Any] = raw_inner if isinstance(raw_inner, dict) else {}
        # Users report `apiName` accepted where `dataObjectApiName` is documented [X].
        name = (
            data.get("dataObjectApiName") or inner.get("dataObjectApiName") or data.get("apiName")
        )
        if not name:
            raise _ApiError(
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
                raise _ApiError(INVALID_PARAMETER, "数据已锁定，不能编辑", "record is locked")
            if request.faults.roll(request.faults.record_error_rate):
                raise _ApiError(
                    INVALID_PARAMETER, "字段校验失败", "a validation rule refused the record"
                )
            approval = body.get("triggerApprovalFlow", True) is not False
            if action == "update":
                answer = self._update(obj, inner, user, approval)
                done = str(inner.get("_id"))
            else:
                answer = self._create(obj, inner, user, approval)
                done = str(answer["dataId"])
            with self._lock:
                self.writes_log.append({"object": obj.api_name, "action": action, "ids": [done]})
            return answer
        if action == "invalid":
            record_id = str(data.get("object_data_id") or data.get("objectDataId") or "")
            row = self._row(obj, record_id)
            with self._lock:
                if row.get("life_status") == "invalid":
                    raise _ApiError(
                        INVALID_PARAMETER, "数据已作废", f"{record_id} is already invalid"
                    )
                row["life_status"] = "invalid"
                self._touch(row, user["id"])
            return {}
        raise _ApiError(MISSING_PARAMETER, "接口不存在", f"no data action {action}")

    def _row(self, obj: FxObject, record_id: str) -> dict[str, Any]:
        row = self.rows[obj.api_name].get(record_id)
        if row is None:
            raise _ApiError(
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
                    value = [self._employee_open_id(v) if v != SYSTEM_USER else v for v in value]
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
            raise _ApiError(MISSING_PARAMETER, "参数objectDataId缺失", "objectDataId is missing")
        with self._lock:
            row = self._row(obj, record_id)
            return {"data": self._render(obj, row, style, ())}

    # ------------------------------------------------------------------ writes

    def _touch(self, row: dict[str, Any], user_id: str) -> None:
        stamp = int(self.now() * 1000)
        row["last_modified_time"] = max(stamp, int(row.get("last_modified_time") or 0) + 1)
        row["last_modified_by"] = [user_id]
        row["version"] = str(int(row.get("version") or "0") + 1)

    def _employee_id(self, value: Any) -> str:
        """A numeric employee id from either style's form."""
        text = str(value)
        if text.startswith("FSUID_"):
            for employee in self.employees:
                if employee["openUserId"] == text:
                    return str(employee["id"])
            raise _ApiError(INVALID_PARAMETER, "员工不存在", f"no employee {text}")
        if text != SYSTEM_USER and not any(e["id"] == text for e in self.employees):
            raise _ApiError(INVALID_PARAMETER, "员工不存在", f"no employee {text}")
        return text

    def _coerce(self, obj: FxObject, name: str, value: Any) -> Any:
        definition = obj.fields.get(name)
        if definition is None:
            raise _ApiError(
                INVALID_PARAMETER,
                f"字段{name}不存在",
                f"field {name} does not exist on {obj.api_name}",
            )
        if not definition.writable:
            raise _ApiError(INVALID_PARAMETER, f"字段{name}不可编辑", f"field {name} is read-only")
        if value is None or value == "":
            if definition.is_required:
                raise _ApiError(
                    INVALID_PARAMETER, f"字段{definition.label}必填", f"field {name} is required"
                )
            return None
        kind = definition.type
        if kind in NUMBER_TYPES:
            try:
                number = Decimal(str(value))
            except (InvalidOperation, ValueError) as exc:
                raise _ApiError(
                    INVALID_PARAMETER, f"字段{definition.label}格式错误", f"{name} must be a number"
                ) from exc
            if not number.is_finite():
                raise _ApiError(
                    INVALID_PARAMETER, f"字段{definition.label}格式错误", f"{name} must be finite"
                )
            places = definition.decimal_places if definition.decimal_places is not None else 2
            return str(number.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))
        if kind in ("date", "date_time"):
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float | str)
                or not str(value).lstrip("-").isdigit()
            ):
                raise _ApiError(
                    INVALID_PARAMETER,
                    f"字段{definition.label}格式错误",
                    f"{name} takes epoch milliseconds",
                )
            return int(value)
        if kind == "true_or_false":
            if not isinstance(value, bool):
                raise _ApiError(
                    INVALID_PARAMETER,
                    f"字段{definition.label}格式错误",
                    f"{name} takes true or false",
                )
            return value
        if kind == "select_one":
            allowed = {option_value for _, option_value in definition.options}
            if str(value) not in allowed:
                raise _ApiError(
                    INVALID_PARAMETER,
                    f"字段{definition.label}选项值不存在",
                    f"{value!r} is not an option of {name}",
                )
            return str(value)
        if kind == "employee":
            values = value if isinstance(value, list) else [value]
            return [self._employee_id(v) for v in values]
        if kind in ("text", "long_text", "phone_number", "email", "country"):
            text = str(value)
            if definition.length is not None and len(text) > definition.length:
                raise _ApiError(
                    INVALID_PARAMETER,
                    f"字段{definition.label}超过最大长度",
                    f"{name} is longer than {definition.length}",
                )
            return text
        if kind == "object_reference":
            target = self.objects.get(definition.target_api_name or "")
            if target is None or str(value) not in self.rows[target.api_name]:
                raise _ApiError(
                    INVALID_PARAMETER,
                    f"字段{definition.label}关联数据不存在",
                    f"{name}: no record {value}",
                )
            return str(value)
        if kind == "embedded_object_list":
            if not isinstance(value, list):
                raise _ApiError(
                    INVALID_PARAMETER, f"字段{definition.label}格式错误", f"{name} takes a list"
                )
            for item in value:
                target_name = item.get("describe_api_name") if isinstance(item, dict) else None
                target = self.objects.get(str(target_name))
                if target is None or str(item.get("id")) not in self.rows[target.api_name]:
                    raise _ApiError(
                        INVALID_PARAMETER, "关联对象数据不存在", f"{name}: no record {item!r}"
                    )
            return value
        return value

    def _update(
        self, obj: FxObject, inner: dict[str, Any], user: dict[str, Any], approval: bool
    ) -> dict[str, Any]:
        record_id = str(inner.get("_id") or "")
        if not record_id:
            raise _ApiError(MISSING_PARAMETER, "参数_id缺失", "object_data._id is missing")
        with self._lock:
            row = self._row(obj, record_id)
            if row.get("life_status") == "invalid":
                raise _ApiError(INVALID_PARAMETER, "数据已作废，不能编辑", "record is invalid")
            if row.get("lock_status") == "1":
                raise _ApiError(INVALID_PARAMETER, "数据已锁定，不能编辑", "record is locked")
            changes = {
                name: self._coerce(obj, name, value)
                for name, value in inner.items()
                if name not in _ENVELOPE_KEYS
            }
            if approval and obj.api_name in self.approval_objects:
                # The change waits for the approval flow and the record is locked meanwhile [A].
                row["_pending"] = changes
                row["life_status"] = "in_change"
                row["lock_status"] = "1"
            else:
                row.update(changes)
            self._touch(row, user["id"])
        return {}

    def _create(
        self, obj: FxObject, inner: dict[str, Any], user: dict[str, Any], approval: bool
    ) -> dict[str, Any]:
        values = {
            name: self._coerce(obj, name, value)
            for name, value in inner.items()
            if name not in _ENVELOPE_KEYS
        }
        for name, definition in obj.fields.items():
            if (
                definition.is_required
                and definition.writable
                and name != "owner"
                and values.get(name) in (None, "", [])
            ):
                raise _ApiError(
                    INVALID_PARAMETER, f"字段{definition.label}必填", f"field {name} is required"
                )
        with self._lock:
            self._seq += 1
            record_id = _hex_id(obj.api_name, "created", self._seq)
            stamp = int(self.now() * 1000)
            owner = values.pop("owner", None) or [user["id"]]
            row = self._base_row(
                obj.api_name, record_id, str(values.pop("name", "") or record_id), owner[0], stamp
            )
            row["owner"] = owner
            row["created_by"] = [user["id"]]
            row["last_modified_by"] = [user["id"]]
            row.update(values)
            if approval and obj.api_name in self.approval_objects:
                row["life_status"] = "under_review"
                row["lock_status"] = "1"
            self.rows[obj.api_name][record_id] = row
        return {"dataId": record_id}


def rating_value(label: str) -> str:
    """The opaque option value of a rating label (tests and the demo read ratings back)."""
    return dict(RATING_OPTIONS)[label]
