"""Zoho CRM sandbox: OAuth accounts server and REST API v8 (records, COQL, metadata, users) over seeded data.

Faithful to the wire shapes in shared/reference/zoho.md (§2 OAuth, §3 reads, §5 writes, §6
limits, §7 metadata, §10 emulator checklist) so that unmodified clients, Zoho's own
`zohocrmsdk8-0` among them, work against it. The accounts server and the API domain share one
port and are told apart by path (`/oauth/v2/...` versus `/crm/v8/...`).

Records are stored as Zoho renders them: ids are 19-digit strings, lookups `{id, name}`,
owners `{id, name, email}`, dates `YYYY-MM-DD`, datetimes ISO-8601 at second precision in the
org's offset (default `+00:00`). Choices the reference marks as assumptions [A] are noted where
they are made.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from datetime import time as dtime
from decimal import ROUND_HALF_UP, Decimal
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import Any

from sandboxes.seed import RATES_PER_EUR, Portfolio, SeedInvoice, rate_on
from sandboxes.server import Faults, Request, Response
from sandboxes.zoho_bulk import BULK_PREFIX, BulkReads, record_count
from sandboxes.zoho_coql import (
    BoolOp,
    Condition,
    CoqlError,
    Criteria,
    Query,
    credit_cost,
    criteria_columns,
    like_regex,
    parse,
)
from sandboxes.zoho_fields import CustomFields
from sandboxes.zoho_schema import (
    EXCHANGE_RATES,
    HOME_CURRENCY,
    LOOKUP_TYPES,
    MODULES,
    MULTILINE_TYPES,
    NONE_VALUE,
    NUMBER_TYPES,
    ORG_ID,
    ORG_PREFIX,
    WHAT_MODULES,
    ZField,
    ZModule,
    field_metadata,
    find_module,
    module_metadata,
)

API_PREFIX = "/crm/v8"
MAX_PER_PAGE = 200
MAX_FIELDS = 50
MAX_WRITE = 100
DISCRETE_LIMIT = 2000  # `page` reaches only the first 2,000 records (reference §3.1)
TOO_MANY = (
    "Number of API requests for the 24 hour period is exceeded or the concurrency limit of the "
    "user for the app is exceeded"
)
THROTTLE_DESCRIPTION = (
    "You have made too many requests continuously. Please try again after some time."
)
# Zoho's documented values of `trigger`; when the key is omitted all three run (reference §5.1;
# Zoho's Update Records doc: "If the trigger is not mentioned, the workflows ... get executed").
TRIGGERS = ("workflow", "approval", "blueprint")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_NAME_FIELD = {"Accounts": "Account_Name", "Invoices": "Subject", "Tasks": "Subject"}

_INVOICE_STATUS = {
    "paid": "Paid",
    "partially_paid": "Partially Paid",
    "disputed": "Disputed",
    "written_off": "Written Off",
    "void": "Void",
}


def _error(status: int, code: str, message: str, details: dict[str, Any] | None = None) -> Response:
    """Zoho's whole-request error envelope."""
    return Response.json(
        status, {"code": code, "details": details or {}, "message": message, "status": "error"}
    )


def _element(code: str, message: str, details: dict[str, Any]) -> dict[str, Any]:
    """One error element of a batch answer's `data[]`."""
    return {"code": code, "details": details, "message": message, "status": "error"}


@lru_cache(maxsize=65536)
def _instant(text: str) -> float:
    """Epoch seconds of a Zoho datetime string (compare instants, never text)."""
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _number(value: Decimal | float | None) -> float | None:
    return None if value is None else float(value)


def _parse_offset(offset: str) -> timezone:
    match = re.fullmatch(r"([+-])(\d{2}):(\d{2})", offset)
    if not match:
        raise ValueError(f"org offset must look like +05:30, got {offset!r}")
    sign = 1 if match.group(1) == "+" else -1
    return timezone(sign * timedelta(hours=int(match.group(2)), minutes=int(match.group(3))))


class _RecordFailure(Exception):
    """One record of a batch rejected; becomes an error element of `data[]`."""

    def __init__(self, code: str, message: str, details: dict[str, Any]) -> None:
        super().__init__(message)
        self.element = _element(code, message, details)


@dataclass
class _Token:
    key: str  # the refresh token (or client id) that minted it
    issued: float  # time.monotonic()


@dataclass
class _PageToken:
    module: str
    sort_by: str
    descending: bool
    since: float | None
    ids: tuple[str, ...]
    after: tuple[float, int] | None
    page: int
    expires: datetime


class ZohoEmulator:
    """A Zoho CRM org on loopback: OAuth, records, COQL, metadata, credits and concurrency.

    Args:
        portfolio: the seed data.
        faults: ignored at run time (the live plan arrives with each request); kept so callers
            may pass the server's plan.
        token_ttl_s: access-token lifetime; `Faults.expire_tokens_after_s` overrides it.
        api_credits_per_day: the org's credit budget (Standard edition base: 50,000, §6).
        max_concurrency: calls in flight per org and app (Standard edition: 10, §6).
        token_mints_per_window: access tokens one refresh token may mint per window (10, §2).
        token_window_s: that window (10 minutes).
        max_live_tokens: live access tokens per refresh token; the oldest is evicted (10, §2).
        org_offset: the API user's time-zone offset datetimes are written in.
        processing_delay_s: time each API call spends in flight (lets tests reach the cap).
        clock: the wall clock for stamps (aware datetimes); defaults to now in UTC.
    """

    name = "zoho"
    # [A] Zoho documents no request compression; gzip bodies are inflated as common HTTP front
    # ends do, so a client that compresses is not refused here (Salesforce documents it).
    request_encodings = ("gzip",)

    def __init__(
        self,
        portfolio: Portfolio,
        faults: Faults | None = None,
        *,
        token_ttl_s: float = 3600.0,
        api_credits_per_day: int = 50_000,
        max_concurrency: int = 10,
        token_mints_per_window: int = 10,
        token_window_s: float = 600.0,
        max_live_tokens: int = 10,
        org_offset: str = "+00:00",
        processing_delay_s: float = 0.0,
        page_token_ttl_s: float = 86_400.0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.faults = faults
        self.token_ttl_s = token_ttl_s
        self.api_credits_per_day = api_credits_per_day
        self.max_concurrency = max_concurrency
        self.token_mints_per_window = token_mints_per_window
        self.token_window_s = token_window_s
        self.max_live_tokens = max_live_tokens
        self.tz = _parse_offset(org_offset)
        self.processing_delay_s = processing_delay_s
        self.page_token_ttl_s = page_token_ttl_s
        self.clock = clock or (lambda: datetime.now(UTC))
        self.client_id = "1000." + secrets.token_hex(15).upper()
        self.client_secret = secrets.token_hex(21)
        self.refresh_token = f"1000.{secrets.token_hex(16)}.{secrets.token_hex(16)}"
        self.credits_used = 0
        self.call_counts: Counter[tuple[str, str]] = Counter()
        self.writes_log: list[dict[str, Any]] = []
        self.workflow_runs: Counter[str] = Counter()
        self.token_requests = 0
        self._lock = threading.RLock()
        self._in_flight = 0
        self._refresh_tokens: set[str] = {self.refresh_token}
        self._tokens: dict[str, _Token] = {}
        self._mints: dict[str, deque[float]] = {}
        self._codes: dict[str, float] = {}
        self._page_tokens: dict[str, _PageToken] = {}
        self._locks: dict[str, int] = {}
        self._seq = 1_000_000
        self._last_stamp = ""
        self.users: list[dict[str, Any]] = []
        self.rows: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in MODULES}
        self.deleted: dict[str, list[dict[str, Any]]] = {name: [] for name in MODULES}
        # Multi-currency (Enterprise): the org's currencies as GET /org/currencies lists them.
        self.currencies: list[dict[str, Any]] = [
            {
                "id": f"{ORG_PREFIX}{900 + index:012d}",
                "iso_code": code,
                "name": code,
                "symbol": code,
                "exchange_rate": f"{rate:.9f}",
                "is_active": True,
                "is_base": code == HOME_CURRENCY,
                "prefix_symbol": True,
                "format": {
                    "decimal_separator": "Period",
                    "thousand_separator": "Comma",
                    "decimal_places": "0" if code == "JPY" else "2",
                },
            }
            for index, (code, rate) in enumerate(RATES_PER_EUR.items())
        ]
        self.custom_fields = CustomFields(self)  # settings/fields POST (zoho_fields.py)
        self.bulk = BulkReads(self)  # /crm/bulk/v8/read (zoho_bulk.py)
        self._seed(portfolio)

    # ---------------------------------------------------------------- seed

    def _new_id(self) -> str:
        self._seq += 1
        return f"{ORG_PREFIX}{self._seq:012d}"

    def fmt(self, moment: datetime) -> str:
        """A datetime as Zoho writes it: seconds, in the org's offset (`2026-11-01T10:00:00+00:00`)."""
        return moment.astimezone(self.tz).replace(microsecond=0).isoformat()

    def _blank(self, module: ZModule) -> dict[str, Any]:
        return {"id": ""} | {f.api_name: None for f in module.fields} | {"Locked__s": False}

    def _seed(self, portfolio: Portfolio) -> None:
        api_user: dict[str, Any] = {
            "id": self._new_id(),
            "full_name": "CRM Risk Integration",
            "first_name": "CRM Risk",
            "last_name": "Integration",
            "email": "integration@example.com",
            "status": "active",
            "role": {"name": "CEO", "id": ORG_PREFIX + "000000000201"},
            "profile": {"name": "Administrator", "id": ORG_PREFIX + "000000000301"},
        }
        self.users.append(api_user)
        user_ids: dict[str, str] = {}
        for seed_user in portfolio.users:
            first, _, last = seed_user.name.partition(" ")
            user: dict[str, Any] = {
                "id": self._new_id(),
                "full_name": seed_user.name,
                "first_name": first,
                "last_name": last,
                "email": seed_user.email,
                "status": "active" if seed_user.active else "disabled",
                "role": {"name": "Sales Manager", "id": ORG_PREFIX + "000000000202"},
                "profile": {"name": "Standard", "id": ORG_PREFIX + "000000000302"},
            }
            self.users.append(user)
            user_ids[seed_user.key] = user["id"]
        system = self._user_ref(api_user["id"], with_email=False)
        # Records arrive by bulk import: 20 accounts or 40 invoices share one Modified_Time,
        # as imports do, so clients' tie-breakers on equal timestamps get exercised.
        import_at = datetime.combine(portfolio.as_of, dtime(1, 0), UTC)
        accounts = MODULES["Accounts"]
        account_ids: dict[str, str] = {}
        for index, seed in enumerate(portfolio.accounts):
            row = self._blank(accounts)
            record_id = self._new_id()
            account_ids[seed.key] = record_id
            row.update(
                {
                    "id": record_id,
                    "Owner": self._user_ref(user_ids[seed.owner_key]),
                    "Account_Name": seed.name,
                    "Account_Number": f"A-{index + 1:06d}",
                    "Account_Type": "Customer",
                    "Industry": seed.industry,
                    "Billing_Country": seed.country,
                    "Annual_Revenue": _number(seed.annual_revenue),
                    "Employees": seed.employees,
                    "Currency": seed.currency,
                    "Exchange_Rate": EXCHANGE_RATES.get(seed.currency, 1.0),
                    "Payment_Terms_Days": seed.payment_terms_days,
                    "Credit_Limit": _number(seed.credit_limit),
                    "External_Score": seed.external_score,
                    "Insured_Limit": _number(seed.insured_limit),
                    "Manual_Override": False,
                    "Created_Time": self.fmt(seed.created_at),
                    "Modified_Time": self.fmt(import_at + timedelta(seconds=index // 20)),
                    "Created_By": system,
                    "Modified_By": system,
                }
            )
            self.rows["Accounts"][record_id] = row
        invoices = MODULES["Invoices"]
        invoice_at = import_at + timedelta(minutes=30)
        by_key = {seed.key: seed for seed in portfolio.accounts}
        for index, seed_invoice in enumerate(portfolio.invoices):
            account = by_key[seed_invoice.account_key]
            account_id = account_ids[account.key]
            row = self._blank(invoices)
            record_id = self._new_id()
            amount = float(seed_invoice.amount)
            row.update(
                {
                    "id": record_id,
                    "Owner": self._user_ref(user_ids[account.owner_key]),
                    "Subject": f"Invoice {seed_invoice.number}",
                    "Invoice_Number": seed_invoice.number,
                    "Invoice_Date": seed_invoice.issue_date.isoformat(),
                    "Due_Date": seed_invoice.due_date.isoformat(),
                    "Status": self._invoice_status(seed_invoice, portfolio.as_of, index),
                    "Account_Name": {"id": account_id, "name": account.name},
                    "Sub_Total": amount,
                    "Tax": 0.0,
                    "Discount": 0.0,
                    "Adjustment": 0.0,
                    "Grand_Total": amount,
                    "Currency": account.currency,
                    # Zoho freezes the rate of the record's day on the record.
                    "Exchange_Rate": float(rate_on(account.currency, seed_invoice.issue_date)),
                    "Balance": float(seed_invoice.open_amount),
                    "Paid_Date": (
                        seed_invoice.paid_date.isoformat() if seed_invoice.paid_date else None
                    ),
                    "Created_Time": self.fmt(
                        datetime.combine(seed_invoice.issue_date, dtime(9, 0), UTC)
                    ),
                    "Modified_Time": self.fmt(invoice_at + timedelta(seconds=index // 40)),
                    "Created_By": system,
                    "Modified_By": system,
                }
            )
            self.rows["Invoices"][record_id] = row
        self._seed_tasks(portfolio, account_ids, user_ids, import_at, system)
        stamps = [r["Modified_Time"] for rows in self.rows.values() for r in rows.values()]
        self._last_stamp = max(stamps, key=_instant, default="")

    @staticmethod
    def _invoice_status(invoice: SeedInvoice, as_of: date, index: int) -> str:
        if invoice.status in _INVOICE_STATUS:
            return _INVOICE_STATUS[invoice.status]
        if invoice.due_date < as_of:
            return "Overdue"
        return "Sent" if index % 2 else "Awaiting Payment"

    def _seed_tasks(
        self,
        portfolio: Portfolio,
        account_ids: dict[str, str],
        user_ids: dict[str, str],
        when: datetime,
        system: dict[str, Any],
    ) -> None:
        # Two tasks a person made by hand, so clients meet tasks that are not theirs.
        active = [u.key for u in portfolio.users if u.active]
        tasks = MODULES["Tasks"]
        for position, (subject, status) in enumerate(
            (("Renewal call", "Not Started"), ("Send account statement", "Completed"))
        ):
            if position >= len(portfolio.accounts) or not active:
                break
            account = portfolio.accounts[position]
            owner = account.owner_key if account.owner_key in active else active[0]
            row = self._blank(tasks)
            record_id = self._new_id()
            stamp = self.fmt(when + timedelta(hours=1))
            row.update(
                {
                    "id": record_id,
                    "Owner": self._user_ref(user_ids[owner]),
                    "Subject": subject,
                    "Due_Date": (portfolio.as_of + timedelta(days=7)).isoformat(),
                    "Status": status,
                    "Priority": "Normal",
                    "What_Id": {"id": account_ids[account.key], "name": account.name},
                    "$se_module": "Accounts",
                    "Description": "Created by hand in the CRM.",
                    "Send_Notification_Email": False,
                    "Closed_Time": stamp if status == "Completed" else None,
                    "Created_Time": stamp,
                    "Modified_Time": stamp,
                    "Created_By": system,
                    "Modified_By": system,
                }
            )
            self.rows["Tasks"][record_id] = row

    def _user(self, user_id: str) -> dict[str, Any] | None:
        return next((u for u in self.users if u["id"] == user_id), None)

    def _user_ref(self, user_id: str, *, with_email: bool = True) -> dict[str, Any]:
        user = self._user(user_id)
        if user is None:
            raise KeyError(user_id)
        ref = {"name": user["full_name"], "id": user["id"]}
        if with_email:
            ref["email"] = user["email"]
        return ref

    @property
    def api_user(self) -> dict[str, Any]:
        """The user the demo credentials act as (the CurrentUser)."""
        return self.users[0]

    # ---------------------------------------------------------------- inspection API

    def records(self, module: str) -> list[dict[str, Any]]:
        """Copies of the live records of a module, as the API renders them."""
        found = self._module(module)
        with self._lock:
            return [json.loads(json.dumps(row)) for row in self.rows[found.api_name].values()]

    def tasks(self) -> list[dict[str, Any]]:
        """Copies of all Task records."""
        return self.records("Tasks")

    def set_field(self, module: str, record_id: str, field: str, value: Any) -> None:
        """Simulate a person editing a record in the CRM (bumps Modified_Time), without validation."""
        found = self._module(module)
        if found.field(field) is None and field != "$se_module":
            raise KeyError(field)
        with self._lock:
            row = self.rows[found.api_name][str(record_id)]
            row[field] = value
            stamp = self._stamp()
            row["Modified_Time"] = stamp
            row["Modified_By"] = self._user_ref(self.api_user["id"], with_email=False)

    def edit_field(
        self,
        module: str,
        field: str,
        *,
        picklist: tuple[str, ...] | None = None,
        read_only: bool | None = None,
        delete: bool = False,
    ) -> None:
        """Change a field as an admin would in Setup: its picklist values, read-only, or delete it."""
        base = find_module(module)
        if base is None:
            raise KeyError(module)
        self.custom_fields.edit(base, field, picklist=picklist, read_only=read_only, delete=delete)

    def delete_record(self, module: str, record_id: str, *, permanent: bool = False) -> None:
        """Delete a record as a person would (to the recycle bin, or permanently)."""
        found = self._module(module)
        with self._lock:
            self._delete(found, str(record_id), "permanent" if permanent else "recycle")

    def expire_tokens(self) -> None:
        """Invalidate every access token (the next API call answers 401 INVALID_TOKEN)."""
        with self._lock:
            self._tokens.clear()

    def pass_token_window(self) -> None:
        """As if Zoho's 10-minute minting window had passed: the token endpoint mints again."""
        with self._lock:
            self._mints.clear()

    def issue_token(self) -> str:
        """A valid access token without going through /oauth/v2/token (tests)."""
        with self._lock:
            return self._mint(self.refresh_token)

    def issue_grant_code(self) -> str:
        """A one-time grant code, as the API console's Self Client screen makes (valid 3 minutes)."""
        code = f"1000.{secrets.token_hex(16)}.{secrets.token_hex(16)}"
        with self._lock:
            self._codes[code] = time.monotonic() + 180
        return code

    def lock_record(self, record_id: str, times: int = 1) -> None:
        """Answer RECORD_LOCKED for the next `times` writes to this record (as an approval does)."""
        with self._lock:
            self._locks[str(record_id)] = times

    def set_credits_used(self, used: int) -> None:
        """Pretend `used` credits of today's budget are spent."""
        with self._lock:
            self.credits_used = used

    def to_state(self) -> dict[str, Any]:
        """Everything that changes, as JSON-native data."""
        with self._lock:
            state: dict[str, Any] = json.loads(
                json.dumps(
                    {
                        "rows": self.rows,
                        "deleted": self.deleted,
                        "users": self.users,
                        "seq": self._seq,
                        "credits_used": self.credits_used,
                        "client_id": self.client_id,
                        "client_secret": self.client_secret,
                        "refresh_tokens": sorted(self._refresh_tokens),
                        "refresh_token": self.refresh_token,
                        "last_stamp": self._last_stamp,
                    }
                )
            )
        return state

    def from_state(self, state: dict[str, Any]) -> None:
        """Replace the org's data with a `to_state()` snapshot."""
        with self._lock:
            self.rows = {name: dict(state["rows"].get(name, {})) for name in MODULES}
            self.deleted = {name: list(state["deleted"].get(name, [])) for name in MODULES}
            self.users = list(state["users"])
            self._seq = int(state["seq"])
            self.credits_used = int(state["credits_used"])
            self.client_id = str(state["client_id"])
            self.client_secret = str(state["client_secret"])
            self.refresh_token = str(state["refresh_token"])
            self._refresh_tokens = set(state["refresh_tokens"])
            self._last_stamp = str(state["last_stamp"])
            self._tokens.clear()
            self._page_tokens.clear()

    def save_state(self, path: str) -> None:
        """Write `to_state()` to a JSON file."""
        text = json.dumps(self.to_state())
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)

    def load_state(self, path: str) -> None:
        """Load a file written by save_state()."""
        with open(path, encoding="utf-8") as handle:
            self.from_state(json.load(handle))

    # ---------------------------------------------------------------- helpers

    def module_view(self, module: ZModule | None) -> ZModule | None:
        """The module with the custom fields created through the API."""
        return self.custom_fields.view(module)

    def _module(self, name: str) -> ZModule:
        found = self.module_view(find_module(name))
        if found is None:
            raise KeyError(name)
        return found

    def _stamp(self) -> str:
        # Second precision; never behind the newest stamp (seeded stamps may lie ahead).
        now = self.fmt(self.clock())
        if self._last_stamp and _instant(self._last_stamp) > _instant(now):
            now = self._last_stamp
        self._last_stamp = now
        return now

    def _delete(self, module: ZModule, record_id: str, kind: str) -> bool:
        row = self.rows[module.api_name].pop(record_id, None)
        if row is None:
            return False
        name_field = _NAME_FIELD.get(module.api_name, "id")
        self.deleted[module.api_name].append(
            {
                "id": record_id,
                "display_name": row.get(name_field),
                "type": kind,
                "deleted_by": self._user_ref(self.api_user["id"], with_email=False),
                "created_by": row.get("Created_By"),
                "deleted_time": self._stamp(),
            }
        )
        return True

    # ---------------------------------------------------------------- HTTP entry

    def fault_response(self, kind: str) -> Response:
        """Injected faults in Zoho's error envelope (no Retry-After: Zoho sends none, §6)."""
        if kind == "429":
            return _error(429, "TOO_MANY_REQUESTS", TOO_MANY)
        if kind == "503":
            # [A] Zoho's 503 body is not documented; the standard envelope is used.
            return _error(503, "INTERNAL_ERROR", "Service temporarily unavailable")
        return _error(500, "INTERNAL_ERROR", "Internal Server Error")

    def handle(self, request: Request) -> Response:
        """Route one request to the accounts server or the API."""
        path = request.path.rstrip("/") or "/"
        if path == "/oauth/v2/token":
            return self._token(request)
        if path == "/oauth/v2/token/revoke":
            return self._revoke(request)
        if path.startswith(BULK_PREFIX + "/"):
            denied = self._authenticate(request)
            if denied is not None:
                return denied
            parts = path[len(BULK_PREFIX) + 1 :].split("/")
            return self._credit_headers(self.bulk.handle(request, parts))
        if path.startswith(API_PREFIX + "/"):
            denied = self._authenticate(request)
            if denied is not None:
                return denied
            with self._lock:
                if self._in_flight >= self.max_concurrency:
                    return _error(429, "TOO_MANY_REQUESTS", TOO_MANY)
                self._in_flight += 1
            try:
                if self.processing_delay_s > 0:
                    time.sleep(self.processing_delay_s)
                return self._api(request, path[len(API_PREFIX) + 1 :].split("/"))
            finally:
                with self._lock:
                    self._in_flight -= 1
        return _error(
            404, "INVALID_URL_PATTERN", "Please check if the URL trying to access is a correct one"
        )

    # ---------------------------------------------------------------- OAuth

    @staticmethod
    def _form(request: Request) -> dict[str, str]:
        # Zoho accepts the token parameters in the query string or a form body, urlencoded
        # or multipart/form-data (how Zoho's own Node SDK posts its grants).
        params = {key: values[0] for key, values in request.query.items() if values}
        if request.body:
            for key, value in request.form().items():
                params.setdefault(key, value)
        return params

    def _token(self, request: Request) -> Response:
        # Zoho answers OAuth errors with HTTP 200 and {"error": ...} [A: status per §10]; only
        # the throttle is a 400. Clients should look for access_token, as the SDK does.
        if request.method != "POST":
            return Response.json(200, {"error": "invalid_request"})
        form = self._form(request)
        with self._lock:
            self.token_requests += 1
            grant = form.get("grant_type", "")
            if grant not in ("refresh_token", "authorization_code", "client_credentials"):
                return Response.json(200, {"error": "unsupported_grant_type"})
            if form.get("client_id") != self.client_id or not secrets.compare_digest(
                form.get("client_secret", ""), self.client_secret
            ):
                return Response.json(200, {"error": "invalid_client"})
            new_refresh: str | None = None
            if grant == "refresh_token":
                key = form.get("refresh_token", "")
                if key not in self._refresh_tokens:
                    return Response.json(200, {"error": "invalid_code"})
            elif grant == "authorization_code":
                code = form.get("code", "")
                expiry = self._codes.pop(code, None)
                if expiry is None or time.monotonic() > expiry:
                    return Response.json(200, {"error": "invalid_code"})
                new_refresh = f"1000.{secrets.token_hex(16)}.{secrets.token_hex(16)}"
                self._refresh_tokens.add(new_refresh)
                key = new_refresh
            else:
                soid = form.get("soid")
                if soid is not None and soid != f"ZohoCRM.{ORG_ID}":
                    return Response.json(200, {"error": "invalid_client"})
                key = "client:" + self.client_id
            if self._throttled(key):
                return Response.json(
                    400,
                    {
                        "error": "Access Denied",
                        "error_description": THROTTLE_DESCRIPTION,
                        "status": "failure",
                    },
                )
            token = self._mint(key)
        body: dict[str, Any] = {"access_token": token}
        if new_refresh:
            body["refresh_token"] = new_refresh
        body.update(
            {
                "scope": form.get("scope") or "ZohoCRM.modules.ALL ZohoCRM.settings.ALL",
                "api_domain": request.base_url,
                "token_type": "Bearer",
                "expires_in": int(self.token_ttl_s),
            }
        )
        return Response.json(200, body)

    def _throttled(self, key: str) -> bool:
        now = time.monotonic()
        window = self._mints.setdefault(key, deque())
        while window and now - window[0] > self.token_window_s:
            window.popleft()
        return len(window) >= self.token_mints_per_window

    def _mint(self, key: str) -> str:
        token = f"1000.{secrets.token_hex(16)}.{secrets.token_hex(16)}"
        self._mints.setdefault(key, deque()).append(time.monotonic())
        self._tokens[token] = _Token(key, time.monotonic())
        # At most N live tokens per refresh token: the oldest is silently evicted (§2).
        mine = [t for t, info in self._tokens.items() if info.key == key]
        for old in mine[: max(0, len(mine) - self.max_live_tokens)]:
            del self._tokens[old]
        return token

    def _revoke(self, request: Request) -> Response:
        token = self._form(request).get("token", "")
        with self._lock:
            if token in self._refresh_tokens:
                self._refresh_tokens.discard(token)
                for access in [t for t, info in self._tokens.items() if info.key == token]:
                    del self._tokens[access]
            else:
                self._tokens.pop(token, None)
        return Response.json(200, {"status": "success"})

    def _authenticate(self, request: Request) -> Response | None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.strip().partition(" ")
        if scheme != "Zoho-oauthtoken" or not token.strip():
            return _error(401, "AUTHENTICATION_FAILURE", "Authentication failed")
        lifetime = request.faults.expire_tokens_after_s
        if lifetime is None:
            lifetime = self.token_ttl_s
        with self._lock:
            info = self._tokens.get(token.strip())
            if info is not None and time.monotonic() - info.issued > lifetime:
                del self._tokens[token.strip()]
                info = None
        if info is None:
            return _error(401, "INVALID_TOKEN", "invalid oauth token")
        return None

    # ---------------------------------------------------------------- credits

    def _charge(self, cost: int) -> Response | None:
        with self._lock:
            if self.credits_used + cost > self.api_credits_per_day:
                return _error(429, "TOO_MANY_REQUESTS", TOO_MANY)
            self.credits_used += cost
        return None

    def _credit_headers(self, response: Response) -> Response:
        # Sent only once half of the day's credits are used (reference §6).
        with self._lock:
            used, budget = self.credits_used, self.api_credits_per_day
        if used * 2 >= budget:
            response.headers["X-API-CREDITS-REMAINING"] = str(max(0, budget - used))
        return response

    # ---------------------------------------------------------------- API routing

    def _api(self, request: Request, parts: list[str]) -> Response:
        if parts == ["coql"]:
            if request.method != "POST":
                return self._bad_method()
            return self._credit_headers(self._coql(request))
        refused = self._charge(1)
        if refused is not None:
            return refused
        return self._credit_headers(self._route(request, parts))

    @staticmethod
    def _bad_method() -> Response:
        return _error(
            405, "INVALID_REQUEST_METHOD", "The http request method type is not a valid one"
        )

    def _route(self, request: Request, parts: list[str]) -> Response:
        method = request.method
        if parts[0] == "settings" and len(parts) == 2:
            if parts[1] == "fields" and method == "POST":
                return self.custom_fields.create(request)
            if method != "GET":
                return self._bad_method()
            if parts[1] == "fields":
                return self._fields(request)
            if parts[1] == "modules":
                return Response.json(200, {"modules": module_metadata()})
        if parts[0] == "users" and len(parts) <= 2:
            return self._users(request, parts[1] if len(parts) == 2 else None)
        if parts == ["org"]:
            return self._org()
        if parts[:2] == ["org", "currencies"] and len(parts) <= 3:
            if method != "GET":
                return self._bad_method()
            return self._currencies(parts[2] if len(parts) == 3 else None)
        module = self.module_view(find_module(parts[0]))
        if module is None:
            return _error(400, "INVALID_MODULE", "the module name given seems to be invalid")
        if parts[1:] == ["actions", "count"] and method == "GET":
            return record_count(self, module)
        if len(parts) == 1:
            if method == "GET":
                return self._list(request, module)
            if method == "PUT":
                return self._write(request, module, "update")
            if method == "POST":
                return self._write(request, module, "insert")
            if method == "DELETE":
                ids = [i for i in (request.param("ids") or "").split(",") if i]
                return self._delete_many(module, ids)
            return self._bad_method()
        if len(parts) == 2 and parts[1] == "upsert":
            if method != "POST":
                return self._bad_method()
            return self._write(request, module, "upsert")
        if len(parts) == 2 and parts[1] == "deleted":
            if method != "GET":
                return self._bad_method()
            return self._deleted(request, module)
        if len(parts) == 2 and parts[1].isdigit():
            if method == "GET":
                return self._get_one(request, module, parts[1])
            if method == "PUT":
                return self._write(request, module, "update", record_id=parts[1])
            if method == "DELETE":
                return self._delete_many(module, [parts[1]])
            return self._bad_method()
        return _error(
            404, "INVALID_URL_PATTERN", "Please check if the URL trying to access is a correct one"
        )

    # ---------------------------------------------------------------- metadata and users

    def _fields(self, request: Request) -> Response:
        name = request.param("module")
        if not name:
            return _error(
                400,
                "REQUIRED_PARAM_MISSING",
                "One of the expected parameter is missing",
                {"param": "module"},
            )
        module = self.module_view(find_module(name))
        if module is None:
            return _error(400, "INVALID_MODULE", "the module name given seems to be invalid")
        return Response.json(200, {"fields": field_metadata(module)})

    def _render_user(self, user: dict[str, Any]) -> dict[str, Any]:
        return {
            **user,
            "time_zone": "Etc/UTC",
            "confirm": True,
            "locale": "en_US",
            "country": "DE",
            "created_time": self.fmt(datetime(2024, 1, 1, tzinfo=UTC)),
            "Modified_Time": self.fmt(datetime(2024, 1, 1, tzinfo=UTC)),
        }

    def _users(self, request: Request, user_id: str | None) -> Response:
        if request.method != "GET":
            return self._bad_method()
        kind = request.param("type") or "AllUsers"
        users = list(self.users)
        if user_id is not None:
            users = [u for u in users if u["id"] == user_id]
            if not users:
                return _error(400, "INVALID_DATA", "the id given seems to be invalid", {})
        elif kind == "CurrentUser":
            users = [self.api_user]
        elif kind in ("ActiveUsers", "ActiveConfirmedUsers"):
            users = [u for u in users if u["status"] == "active"]
        elif kind == "DeactiveUsers":
            users = [u for u in users if u["status"] != "active"]
        elif kind in ("AdminUsers", "ActiveConfirmedAdmins"):
            users = [u for u in users if u["profile"]["name"] == "Administrator"]
        elif kind != "AllUsers":
            return _error(400, "INVALID_DATA", "invalid data", {"param": "type"})
        if not users:
            return Response(204)
        info = {"per_page": 200, "count": len(users), "page": 1, "more_records": False}
        return Response.json(200, {"users": [self._render_user(u) for u in users], "info": info})

    def _currencies(self, currency_id: str | None) -> Response:
        """GET /org/currencies: the org's currencies, rates per one unit of the home currency."""
        with self._lock:
            rows = [dict(row) for row in self.currencies]
        if currency_id is not None:
            rows = [row for row in rows if row["id"] == currency_id]
            if not rows:
                return _error(400, "INVALID_DATA", "the id given seems to be invalid")
        return Response.json(200, {"currencies": rows})

    def _org(self) -> Response:
        org = {
            "id": ORG_ID,
            "company_name": "Sandbox Trading GmbH",
            "primary_email": self.api_user["email"],
            "currency": "Euro - EUR",
            "currency_symbol": "€",
            "iso_code": HOME_CURRENCY,
            "time_zone": "Etc/UTC",
            "country_code": "DE",
            "domain_name": "org" + ORG_ID,
            "zgid": ORG_ID,
            "type": "production",
            "mc_status": False,
            "gapps_enabled": False,
            "privacy_settings": False,
            "license_details": {
                "paid": True,
                "paid_type": "standard",
                "users_license_purchased": 10,
            },
        }
        return Response.json(200, {"org": [org]})

    # ---------------------------------------------------------------- reads

    @staticmethod
    def _sort_key(row: dict[str, Any], sort_by: str) -> tuple[float, int]:
        if sort_by == "id":
            return (0.0, int(row["id"]))
        value = row.get(sort_by)
        return (_instant(value) if value else 0.0, int(row["id"]))

    def _parse_since(self, request: Request) -> float | Response | None:
        raw = request.headers.get("if-modified-since")
        if raw is None or not raw.strip():
            return None
        try:
            moment = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
        except ValueError:
            try:
                moment = parsedate_to_datetime(raw)
            except (TypeError, ValueError):
                return _error(
                    400, "INVALID_DATA", "invalid data", {"header_name": "If-Modified-Since"}
                )
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=self.tz)
        return moment.timestamp()

    def _bad_param(self, name: str, message: str = "invalid data") -> Response:
        return _error(400, "INVALID_DATA", message, {"param_name": name})

    def _field_list(self, module: ZModule, raw: str) -> list[str] | Response:
        names = [name.strip() for name in raw.split(",") if name.strip()]
        if len(names) > MAX_FIELDS:
            return _error(
                400, "LIMIT_EXCEEDED", "fields limit exceeded", {"limit": MAX_FIELDS}
            )  # [A] code
        for name in names:
            if name != "id" and module.field(name) is None:
                return _error(400, "INVALID_DATA", "invalid data", {"api_name": name})  # [A]
        return names

    def _render(self, row: dict[str, Any], names: Iterable[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in names:
            value = row.get(name)
            out[name] = dict(value) if isinstance(value, dict) else value
            if name == "What_Id":
                out["$se_module"] = row.get("$se_module")
        out["id"] = row["id"]
        return out

    def _list(self, request: Request, module: ZModule) -> Response:
        raw_fields = request.param("fields")
        if not raw_fields:
            # `fields` is mandatory since API v3 (reference §3.1).
            return _error(
                400,
                "REQUIRED_PARAM_MISSING",
                "One of the expected parameter is missing",
                {"param": "fields"},
            )
        names = self._field_list(module, raw_fields)
        if isinstance(names, Response):
            return names
        try:
            per_page = int(request.param("per_page") or MAX_PER_PAGE)
            page = int(request.param("page") or 1)
        except ValueError:
            return self._bad_param("per_page" if request.param("per_page") else "page")
        if not 1 <= per_page <= MAX_PER_PAGE:
            return self._bad_param("per_page")  # [A] Zoho's answer past 200 is not documented
        if page < 1:
            return self._bad_param("page")
        token_text = request.param("page_token")
        with self._lock:
            rows = list(self.rows[module.api_name].values())
            if token_text:
                cursor = self._page_tokens.get(token_text)
                if (
                    cursor is None
                    or cursor.module != module.api_name
                    or cursor.expires < self.clock()
                ):
                    # [A] code and message for a bad or expired page token.
                    return _error(
                        400, "INVALID_DATA", "invalid page token", {"param_name": "page_token"}
                    )
                sort_by, descending, since, ids = (
                    cursor.sort_by,
                    cursor.descending,
                    cursor.since,
                    cursor.ids,
                )
            else:
                sort_by = request.param("sort_by") or "id"
                order = (request.param("sort_order") or "desc").lower()
                if sort_by not in ("id", "Created_Time", "Modified_Time"):
                    return self._bad_param("sort_by")
                if order not in ("asc", "desc"):
                    return self._bad_param("sort_order")
                descending = order == "desc"
                parsed = self._parse_since(request)
                if isinstance(parsed, Response):
                    return parsed
                since = parsed
                ids = tuple(i for i in (request.param("ids") or "").split(",") if i)
                cursor = None
                if page * per_page > DISCRETE_LIMIT:
                    return _error(
                        400,
                        "DISCRETE_PAGINATION_LIMIT_EXCEEDED",
                        "You can only get the first 2000 records without using page_token param",
                        {"limit": DISCRETE_LIMIT},
                    )
            if not rows:
                return Response(204)  # an empty module: 204, no body, no Content-Type
            if ids:
                rows = [row for row in rows if row["id"] in ids]
            if since is not None:
                # "Only records modified after that instant" (reference §3.1): strictly after.
                rows = [
                    row
                    for row in rows
                    if row.get("Modified_Time") and _instant(row["Modified_Time"]) > since
                ]
                if not rows:
                    return Response(304)
            rows.sort(key=lambda row: self._sort_key(row, sort_by), reverse=descending)
            if cursor is not None:
                # A page token is a cursor: the page starts after the last record it served,
                # so a record edited mid-read moves to the end instead of shifting the pages.
                after = cursor.after
                start = 0
                if after is not None:
                    keys = [self._sort_key(row, sort_by) for row in rows]
                    if descending:
                        start = sum(1 for key in keys if key >= after)
                    else:
                        start = sum(1 for key in keys if key <= after)
                page = cursor.page + 1
            else:
                start = (page - 1) * per_page
            chunk = rows[start : start + per_page]
            if not chunk:
                return Response(204)
            more = len(rows) > start + per_page
            expires = self.clock() + timedelta(seconds=self.page_token_ttl_s)

            def token_after(index: int, served_page: int) -> str:
                text = secrets.token_hex(24)
                self._page_tokens[text] = _PageToken(
                    module.api_name,
                    sort_by,
                    descending,
                    since,
                    ids,
                    self._sort_key(rows[index], sort_by) if index >= 0 else None,
                    served_page,
                    expires,
                )
                return text

            next_token = token_after(start + len(chunk) - 1, page) if more else None
            previous_token = None
            if start > 0:
                begin = max(0, start - per_page)
                previous_token = token_after(begin - 1, page - 2)
            data = [self._render(row, names) for row in chunk]
        info = {
            "per_page": per_page,
            "count": len(data),
            "page": page,
            "sort_by": sort_by,
            "sort_order": "desc" if descending else "asc",
            "more_records": more,
            "next_page_token": next_token,
            "previous_page_token": previous_token,
            "page_token_expiry": self.fmt(expires) if next_token or previous_token else None,
        }
        return Response.json(200, {"data": data, "info": info})

    def _get_one(self, request: Request, module: ZModule, record_id: str) -> Response:
        with self._lock:
            row = self.rows[module.api_name].get(record_id)
            if row is None:
                # [A] Zoho's answer for an unknown id on GET is not pinned down.
                return Response(204)
            raw = request.param("fields")
            names: list[str] | Response
            names = self._field_list(module, raw) if raw else [f.api_name for f in module.fields]
            if isinstance(names, Response):
                return names
            rendered = self._render(row, names)
            if module.api_name == "Tasks":
                rendered["$se_module"] = row.get("$se_module")
        return Response.json(200, {"data": [rendered]})

    def _deleted(self, request: Request, module: ZModule) -> Response:
        kind = request.param("type") or "all"
        if kind not in ("all", "recycle", "permanent"):
            return self._bad_param("type")
        try:
            per_page = min(int(request.param("per_page") or MAX_PER_PAGE), MAX_PER_PAGE)
            page = max(int(request.param("page") or 1), 1)
        except ValueError:
            return self._bad_param("page")
        since = self._parse_since(request)
        if isinstance(since, Response):
            return since
        with self._lock:
            entries = [e for e in self.deleted[module.api_name] if kind in ("all", e["type"])]
        if since is not None:
            entries = [e for e in entries if _instant(e["deleted_time"]) > since]
        entries.sort(key=lambda e: (_instant(e["deleted_time"]), int(e["id"])), reverse=True)
        chunk = entries[(page - 1) * per_page : page * per_page]
        if not chunk:
            return Response(204)
        info = {
            "per_page": per_page,
            "count": len(chunk),
            "page": page,
            "more_records": len(entries) > page * per_page,
        }
        return Response.json(200, {"data": [dict(e) for e in chunk], "info": info})

    def _delete_many(self, module: ZModule, ids: list[str]) -> Response:
        if not ids:
            return _error(
                400,
                "REQUIRED_PARAM_MISSING",
                "One of the expected parameter is missing",
                {"param": "ids"},
            )
        if len(ids) > MAX_WRITE:
            return _error(400, "LIMIT_EXCEEDED", "limit exceeded", {"limit": MAX_WRITE})
        data = []
        with self._lock:
            for record_id in ids:
                if self._delete(module, record_id, "recycle"):
                    data.append(
                        {
                            "code": "SUCCESS",
                            "details": {"id": record_id},
                            "message": "record deleted",
                            "status": "success",
                        }
                    )
                else:
                    data.append(
                        _element(
                            "INVALID_DATA",
                            "the related id given seems to be invalid",
                            {"id": record_id},
                        )
                    )
        return Response.json(self._batch_status(data, 200), {"data": data})

    # ---------------------------------------------------------------- COQL

    def _coql(self, request: Request) -> Response:
        try:
            body = request.json()
        except ValueError:
            body = None
        text = body.get("select_query") if isinstance(body, dict) else None
        try:
            if not isinstance(text, str):
                raise CoqlError(
                    "REQUIRED_PARAM_MISSING",
                    "One of the expected parameter is missing",
                    {"param": "select_query"},
                )
            query = parse(text)
        except CoqlError as exc:
            refused = self._charge(1)
            return refused or _error(400, exc.code, exc.message, exc.details)
        refused = self._charge(credit_cost(query.limit))
        if refused is not None:
            return refused
        try:
            return self._run_coql(query)
        except CoqlError as exc:
            return _error(400, exc.code, exc.message, exc.details)

    def _resolve(self, module: ZModule, column: str) -> tuple[Callable[[dict[str, Any]], Any], str]:
        """A getter for a COQL column (plain or one dot join) and the type its values have."""
        if column == "id":
            return (lambda row: row["id"]), "bigint"
        head, _, tail = column.partition(".")
        fdef = module.field(head)
        if fdef is None:
            raise CoqlError(
                "INVALID_QUERY", "column given seems to be invalid", {"column_name": column}
            )
        if not tail:

            def plain(row: dict[str, Any]) -> Any:
                return row.get(head)

            return plain, fdef.value_type
        if fdef.value_type not in LOOKUP_TYPES or "." in tail:
            raise CoqlError(
                "INVALID_QUERY", "column given seems to be invalid", {"column_name": column}
            )
        if fdef.lookup == "users":
            key = {"name": "full_name"}.get(tail, tail)
            if tail not in ("id", "name", "full_name", "email", "first_name", "last_name"):
                raise CoqlError(
                    "INVALID_QUERY", "column given seems to be invalid", {"column_name": column}
                )

            def user_value(row: dict[str, Any]) -> Any:
                ref = row.get(head)
                user = self._user(ref["id"]) if isinstance(ref, dict) else None
                return None if user is None else user.get(key)

            return user_value, "text"
        target_name = fdef.lookup or "Accounts"
        target = MODULES[target_name]
        if tail == "id":
            return (lambda row: (row.get(head) or {}).get("id")), "bigint"
        target_field = target.field(tail)
        if target_field is None:
            raise CoqlError(
                "INVALID_QUERY", "column given seems to be invalid", {"column_name": column}
            )

        def joined(row: dict[str, Any]) -> Any:
            ref = row.get(head)
            if not isinstance(ref, dict):
                return None
            module_name = row.get("$se_module") or target_name if head == "What_Id" else target_name
            linked = self.rows.get(module_name, {}).get(str(ref.get("id")))
            return None if linked is None else linked.get(tail)

        return joined, target_field.value_type

    @staticmethod
    def _comparable(kind: str, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, dict):
            value = value.get("id")
        if kind in LOOKUP_TYPES or kind == "bigint":
            return str(value)
        if kind == "datetime":
            return _instant(str(value)) if isinstance(value, str) else None
        if kind in NUMBER_TYPES:
            if isinstance(value, bool):
                return None
            try:
                return float(value)
            except (TypeError, ValueError):
                return None
        if kind == "boolean":
            return value if isinstance(value, bool) else str(value).lower() == "true"
        return str(value).lower()

    def _literal(self, kind: str, value: Any, column: str) -> Any:
        if value is None:
            return None
        if kind == "datetime":
            try:
                moment = datetime.fromisoformat(str(value))
            except ValueError:
                raise CoqlError(
                    "INVALID_QUERY", "invalid value given in criteria", {"column_name": column}
                ) from None
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=self.tz)
            return moment.timestamp()
        if kind == "date" and not (isinstance(value, str) and _DATE.match(value)):
            raise CoqlError(
                "INVALID_QUERY", "invalid value given in criteria", {"column_name": column}
            )
        return self._comparable(kind, value)

    def _compile(self, module: ZModule, criteria: Criteria) -> Callable[[dict[str, Any]], bool]:
        if isinstance(criteria, BoolOp):
            left = self._compile(module, criteria.left)
            right = self._compile(module, criteria.right)
            if criteria.op == "and":
                return lambda row: left(row) and right(row)
            return lambda row: left(row) or right(row)
        cond: Condition = criteria
        getter, kind = self._resolve(module, cond.column)
        fdef = module.field(cond.column)
        if fdef is not None and fdef.data_type in MULTILINE_TYPES:
            # "You cannot use multi-line fields ... in criteria" (COQL limitations page).
            raise CoqlError(
                "INVALID_QUERY",
                "multi-line fields are not supported in criteria",
                {"column_name": cond.column},
            )
        op = cond.op
        if op == "is_null":
            return lambda row: getter(row) in (None, "", [])
        if op == "is_not_null":
            return lambda row: getter(row) not in (None, "", [])
        if op in ("like", "not_like"):
            pattern = like_regex(str(cond.values[0]))
            negate = op == "not_like"

            def like(row: dict[str, Any]) -> bool:
                value = getter(row)
                return value is not None and bool(pattern.match(str(value))) != negate

            return like
        literals = [self._literal(kind, value, cond.column) for value in cond.values]

        def test(row: dict[str, Any]) -> bool:
            value = self._comparable(kind, getter(row))
            if value is None:
                return False
            try:
                if op == "=":
                    return bool(value == literals[0])
                if op == "!=":
                    return bool(value != literals[0])
                if op == "<":
                    return bool(value < literals[0])
                if op == ">":
                    return bool(value > literals[0])
                if op == "<=":
                    return bool(value <= literals[0])
                if op == ">=":
                    return bool(value >= literals[0])
                if op == "in":
                    return value in literals
                if op == "not_in":
                    return value not in literals
                if op == "between":
                    return bool(literals[0] <= value <= literals[1])
                if op == "not_between":
                    return not literals[0] <= value <= literals[1]
            except TypeError:
                return False
            return False

        return test

    def _run_coql(self, query: Query) -> Response:
        module = self.module_view(find_module(query.module))
        if module is None:
            raise CoqlError("INVALID_QUERY", "invalid module", {"module": query.module})
        getters = [(column, *self._resolve(module, column)) for column in query.columns]
        for column in criteria_columns(query.where):
            self._resolve(module, column)
        match = self._compile(module, query.where) if query.where is not None else None
        orders = [(self._resolve(module, column), desc) for column, desc in query.order_by]
        with self._lock:
            rows = [r for r in self.rows[module.api_name].values() if match is None or match(r)]
            rows.sort(key=lambda row: int(row["id"]))
            for (getter, kind), descending in reversed(orders):
                present = [r for r in rows if self._comparable(kind, getter(r)) is not None]
                absent = [r for r in rows if self._comparable(kind, getter(r)) is None]
                present.sort(key=self._order_key(getter, kind), reverse=descending)
                # Empty values sort first ascending, last descending (as SQL engines do).
                rows = present + absent if descending else absent + present
            chunk = rows[query.offset : query.offset + query.limit]
            data = []
            for row in chunk:
                out: dict[str, Any] = {}
                for column, getter, _kind in getters:
                    value = getter(row)
                    if isinstance(value, dict):
                        # A plain lookup column comes back as its id only [A, reference §3.2].
                        value = {"id": value.get("id")}
                    out[column] = value
                out.setdefault("id", row["id"])
                data.append(out)
        if not data:
            return Response(204)
        more = len(rows) > query.offset + query.limit
        return Response.json(
            200, {"data": data, "info": {"count": len(data), "more_records": more}}
        )

    def _order_key(
        self, getter: Callable[[dict[str, Any]], Any], kind: str
    ) -> Callable[[dict[str, Any]], Any]:
        def key(row: dict[str, Any]) -> Any:
            return self._sort_value(kind, getter(row))

        return key

    def _sort_value(self, kind: str, value: Any) -> Any:
        comparable = self._comparable(kind, value)
        if kind == "bigint" or kind in LOOKUP_TYPES:
            return int(comparable) if str(comparable).isdigit() else 0
        return comparable

    # ---------------------------------------------------------------- writes

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
        with self._lock:
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
                self.workflow_runs[kind] += len(done)
            self.writes_log.append(
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
        rows = self.rows[module.api_name]
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
            left = self._locks.get(target_id, 0)
            if left > 0 or faults.roll(faults.lock_error_rate):
                if left > 0:
                    self._locks[target_id] = left - 1
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
        stamp = self._stamp()
        me = self._user_ref(self.api_user["id"], with_email=False)
        if action == "insert":
            target_id = self._new_id()
            row = self._blank(module)
            row.update(
                {
                    "id": target_id,
                    "Owner": self._user_ref(self.api_user["id"]),
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
        for other_id, row in self.rows[module.api_name].items():
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
            return self.fmt(moment)
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
            user = self._user(str(user_id)) if user_id is not None else None
            if user is None or user["status"] != "active":
                # [A] an inactive owner: Zoho's exact code is not documented.
                raise invalid()
            return self._user_ref(user["id"])
        if kind == "lookup":
            linked_id = value.get("id") if isinstance(value, dict) else value
            target_name = fdef.lookup or "Accounts"
            if fdef.api_name == "What_Id":
                target_name = str(item.get("$se_module") or "")
            target = MODULES.get(target_name)
            row = self.rows[target.api_name].get(str(linked_id)) if target else None
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
