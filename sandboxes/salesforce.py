"""Salesforce sandbox: OAuth, REST query/sObject/collections, limits and Bulk API 2.0 over seeded data.

Faithful to the wire shapes in shared/reference/salesforce.md §2 and §8 so that unmodified
simple-salesforce works against it. Records are dicts keyed by canonical field names with
JSON-native values (dates `YYYY-MM-DD`, datetimes `YYYY-MM-DDTHH:MM:SS.mmm+0000`), so
string order is time order and state saves as plain JSON.
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import hashlib
import hmac
import io
import json
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from sandboxes.seed import (
    HOME_CURRENCY,
    RATE_PERIODS,
    RATES_PER_EUR,
    Portfolio,
    PortfolioStream,
    SeedAccount,
    SeedInvoice,
    rate_on,
)
from sandboxes.server import Request, Response
from sandboxes.sf_describe import child_relationship_name, global_entry, object_describe
from sandboxes.sf_identity import (
    SOAP_LOGIN_FAULT,
    OrgUser,
    identity_document,
    soap_credentials,
    soap_login_result,
    userinfo_document,
)
from sandboxes.sf_schema import (
    CLOSED_TASK_STATUSES,
    NUMBER_TYPES,
    STRING_TYPES,
    FieldDef,
    SObject,
    build_schema,
    make_id,
    to_id18,
)
from sandboxes.sf_soql import (
    BoolOp,
    Comparison,
    Condition,
    DateKeyword,
    DateLiteral,
    DateTimeLiteral,
    FieldRef,
    Not,
    Query,
    SoqlError,
    like_to_regex,
    parse,
    parse_datetime_literal,
    resolve_date_keyword,
)

LATEST_VERSION = 62.0
MIN_VERSION = 31.0
ORG_ID = "00D5g000004SANDBOX"[:15] + "EAA"
COLLECTION_LIMIT = 200
INTEGRATION_USER = "integration@crm-risk.sandbox"

_PAYMENT_STATUS = {
    "paid": "Paid",
    "partially_paid": "Partially Paid",
    "open": "Unpaid",
    "disputed": "Unpaid",
    "written_off": "Paid",
    "void": "Paid",
}
_CUSTOM_STATUS = {
    "open": "Open",
    "paid": "Paid",
    "partially_paid": "Partially Paid",
    "disputed": "Disputed",
    "written_off": "Written Off",
    "void": "Void",
}
_DELIMITERS = {
    "COMMA": ",",
    "TAB": "\t",
    "PIPE": "|",
    "SEMICOLON": ";",
    "CARET": "^",
    "BACKQUOTE": "`",
}


def sf_datetime(moment: datetime) -> str:
    """Salesforce's JSON datetime: `2026-11-01T10:00:00.000+0000` (UTC, milliseconds)."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}+0000"


_APEX_TYPES = {
    "id": "Id",
    "reference": "Id",
    "boolean": "Boolean",
    "int": "Integer",
    "double": "Double",
    "currency": "Decimal",
    "percent": "Decimal",
    "date": "Date",
    "datetime": "Datetime",
}

_ROLLED_BACK = {
    "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
    "message": "Record rolled back because not all records were valid and the request was using "
    "AllOrNone header",
    "fields": [],
}


def _error(status: int, code: str, message: str, fields: list[str] | None = None) -> Response:
    body: dict[str, Any] = {"message": message, "errorCode": code}
    if fields is not None:
        body["fields"] = fields
    return Response.json(status, [body])


def _collection_records(request: Request) -> tuple[list[Any], bool] | Response:
    """The records and `allOrNone` of an sObject Collections body, or the error Salesforce sends
    (malformed JSON, no `records` list, more than 200 records)."""
    try:
        body = request.json()
    except ValueError:
        return _error(400, "JSON_PARSER_ERROR", "Malformed JSON body")
    if not isinstance(body, dict) or not isinstance(body.get("records"), list):
        return _error(400, "INVALID_FIELD", "Records are required")
    records: list[Any] = body["records"]
    if len(records) > COLLECTION_LIMIT:
        return _error(
            400,
            "EXCEEDED_ID_LIMIT",
            "record limit reached. cannot submit more than 200 records into this call",
        )
    return records, bool(body.get("allOrNone", False))


def _typed_record(raw: Any) -> tuple[dict[str, Any], str] | Response:
    """One record of a collection without its `attributes`, and the sObject type they name."""
    if not isinstance(raw, dict):
        return _error(400, "JSON_PARSER_ERROR", "Each record must be an object")
    data = dict(raw)
    attributes = data.pop("attributes", None)
    type_name = attributes.get("type") if isinstance(attributes, dict) else None
    if not type_name:
        return _error(400, "INVALID_TYPE", "No SObject Type defined in record", [])
    return data, str(type_name)


def _not_found() -> Response:
    return _error(404, "NOT_FOUND", "The requested resource does not exist")


class RecordError(Exception):
    """One record rejected; rendered as {statusCode, message, fields}."""

    def __init__(self, code: str, message: str, fields: list[str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.fields = fields or []

    def as_result(self) -> dict[str, Any]:
        """The SaveResult error entry."""
        return {"statusCode": self.code, "message": self.message, "fields": self.fields}


@dataclass(frozen=True)
class _ChildPlan:
    """A parent-to-child subquery, run once with its query: child ids per parent id."""

    name: str
    obj: SObject
    plan: list[FieldRef]
    by_parent: dict[str, list[str]]


PlanItem = FieldRef | _ChildPlan


class _Cursor:
    __slots__ = ("created", "ids", "object_name", "plan")

    def __init__(self, object_name: str, plan: list[PlanItem], ids: list[str]) -> None:
        self.object_name = object_name
        self.plan = plan
        self.ids = ids
        self.created = time.monotonic()


class SalesforceEmulator:
    """A Salesforce org in memory: seeded Accounts, invoices (Billing and custom), Tasks, Users."""

    name = "salesforce"
    # start() may hand over a PortfolioStream instead of a Portfolio for very large seeds.
    accepts_stream = True
    # REST API "Compression Headers": requests may be gzip- or deflate-encoded, and answers are
    # compressed when the client accepts it (Bulk API: "Use Compression for Responses").
    request_encodings = ("gzip", "deflate")
    response_encodings = ("gzip",)

    def __init__(
        self,
        portfolio: Portfolio | PortfolioStream,
        *,
        client_id: str = "sandbox-client",
        client_secret: str = "sandbox-secret",  # noqa: S107 - published demo credentials
        username: str = INTEGRATION_USER,
        password: str = "sandbox-password",  # noqa: S107
        security_token: str = "sandbox-token",  # noqa: S107
        daily_api_limit: int = 100_000,
        session_seconds: float | None = None,
        jwt_public_key: str | None = None,
        bulk_polls_before_complete: int = 0,
        bulk_results_page: int = 50_000,
        invoice_objects: Iterable[str] = ("blng__Invoice__c", "Invoice__c"),
        long_running_limit: int | None = None,
        processing_delay_s: float = 0.0,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.username = username
        self.password = password
        self.security_token = security_token
        self.demo_refresh_token = "5Aep861sandboxRefreshToken"  # noqa: S105 - demo value
        self.daily_api_limit = daily_api_limit
        self.api_used = 0
        # Salesforce refuses a request while 25 of the org's requests have run over 20 s
        # (REQUEST_LIMIT_EXCEEDED "ConcurrentPerOrgLongTxn Limit exceeded."). Here, with a limit
        # set, every call counts as long-running and takes `processing_delay_s`, so a test meets
        # the refusal without 20-second calls.
        self.long_running_limit = long_running_limit
        self.processing_delay_s = processing_delay_s
        self._in_flight = 0
        self.session_seconds = session_seconds
        self.bulk_polls_before_complete = bulk_polls_before_complete
        # Rows per Bulk 2.0 results page when the client sends no maxRecords: Salesforce cuts
        # pages by size, so tests shrink this to make clients follow Sforce-Locator.
        self.bulk_results_page = bulk_results_page
        self.call_counts: Counter[tuple[str, str]] = Counter()
        self.writes_log: list[dict[str, Any]] = []
        self.schema = build_schema()
        self.rows: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in self.schema}
        self.as_of = portfolio.as_of
        # Clock control: tests may replace this to stage SystemModstamp ties and late commits.
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)
        self._last_stamp = ""
        self._seq = 0
        self._lock = threading.RLock()
        self._tokens: dict[str, tuple[str, float]] = {}
        self._cursors: dict[str, _Cursor] = {}
        self._jobs: dict[str, dict[str, Any]] = {}
        self._locks: dict[str, int] = {}
        self._validation_rules: list[Callable[[str, dict[str, Any]], str | None]] = []
        self._jwt_public_key = jwt_public_key
        self._jwt_private_key: str | None = None
        self._seed(portfolio, set(invoice_objects))

    # ---------------------------------------------------------------- seeding

    def _new_id(self, object_name: str) -> str:
        self._seq += 1
        return make_id(self.schema[object_name].key_prefix, self._seq)

    def _seed(self, portfolio: Portfolio | PortfolioStream, invoice_objects: set[str]) -> None:
        # A data load stamps many rows in the same millisecond; adapters must break ties by Id.
        load = datetime.combine(portfolio.as_of - timedelta(days=2), datetime.min.time(), UTC)
        load = load.replace(hour=10)
        user_ids: dict[str, str] = {}
        users = self.rows["User"]
        integration = self._new_id("User")
        self.integration_user_id = integration
        stamp = sf_datetime(load - timedelta(days=400))
        users[integration] = self._blank("User") | {
            "Id": integration,
            "Name": "Integration User",
            "Username": self.username,
            "Email": self.username,
            "IsActive": True,
            "CreatedDate": stamp,
            "LastModifiedDate": stamp,
            "SystemModstamp": stamp,
        }
        for user in portfolio.users:
            uid = self._new_id("User")
            user_ids[user.key] = uid
            users[uid] = self._blank("User") | {
                "Id": uid,
                "Name": user.name,
                "Username": user.email,
                "Email": user.email,
                "IsActive": user.active,
                "CreatedDate": stamp,
                "LastModifiedDate": stamp,
                "SystemModstamp": stamp,
            }
        self._seed_currencies(stamp)
        if isinstance(portfolio, Portfolio):
            by_account: dict[str, list[SeedInvoice]] = {a.key: [] for a in portfolio.accounts}
            for invoice in portfolio.invoices:
                by_account[invoice.account_key].append(invoice)
            pairs: Iterable[tuple[SeedAccount, list[SeedInvoice]]] = (
                (a, by_account[a.key]) for a in portfolio.accounts
            )
        else:
            pairs = portfolio.pairs
        # Shared strings: a million invoices repeat a few hundred dates and stamps.
        strings: dict[Any, str] = {}

        def iso(day: date) -> str:
            return strings.setdefault(day, day.isoformat())

        def stamp_at(moment: datetime) -> str:
            return strings.setdefault(moment, sf_datetime(moment))

        accounts = self.rows["Account"]
        blng = self.rows["blng__Invoice__c"]
        custom = self.rows["Invoice__c"]
        with_blng = "blng__Invoice__c" in invoice_objects
        with_custom = "Invoice__c" in invoice_objects
        count = 0
        for index, (acc, invoices) in enumerate(pairs):
            aid = self._new_id("Account")
            modstamp = stamp_at(load + timedelta(seconds=index // 25))
            accounts[aid] = self._blank("Account") | {
                "Id": aid,
                "Name": acc.name,
                "OwnerId": user_ids[acc.owner_key],
                "Industry": acc.industry,
                "BillingCountry": acc.country,
                "AnnualRevenue": _num(acc.annual_revenue),
                "NumberOfEmployees": acc.employees,
                "CurrencyIsoCode": acc.currency,
                "CreatedDate": sf_datetime(acc.created_at),
                "LastModifiedDate": modstamp,
                "SystemModstamp": modstamp,
                "Payment_Terms_Days__c": float(acc.payment_terms_days),
                "Credit_Limit__c": _num(acc.credit_limit),
                "External_Score__c": None
                if acc.external_score is None
                else float(acc.external_score),
                "Insured_Limit__c": _num(acc.insured_limit),
                "Credit_Hold__c": False,
                "Manual_Override__c": False,
            }
            for inv in invoices:
                modstamp = stamp_at(load + timedelta(hours=1, seconds=count // 200))
                count += 1
                created = stamp_at(datetime.combine(inv.issue_date, datetime.min.time(), UTC))
                issued, due = iso(inv.issue_date), iso(inv.due_date)
                if with_blng:
                    bid = self._new_id("blng__Invoice__c")
                    days = (self.as_of - inv.due_date).days if inv.open_amount > 0 else 0
                    blng[bid] = {
                        "Id": bid,
                        "IsDeleted": False,
                        "CreatedDate": created,
                        "LastModifiedDate": modstamp,
                        "SystemModstamp": modstamp,
                        "CreatedById": integration,
                        "LastModifiedById": integration,
                        "Name": inv.number,
                        "CurrencyIsoCode": acc.currency,
                        "blng__Account__c": aid,
                        "blng__InvoiceDate__c": issued,
                        "blng__DueDate__c": due,
                        "blng__InvoicePostedDate__c": issued,
                        "blng__TotalAmount__c": float(inv.amount),
                        "blng__Balance__c": float(inv.open_amount),
                        "blng__InvoiceStatus__c": "Cancelled" if inv.status == "void" else "Posted",
                        "blng__PaymentStatus__c": _PAYMENT_STATUS[inv.status],
                        "blng__DaysOutstanding__c": float(max(days, 0)),
                        "blng__UniqueId__c": inv.key,
                    }
                    self._seed_allocations(inv, bid, aid, acc.currency, modstamp, count)
                if with_custom:
                    cid = self._new_id("Invoice__c")
                    custom[cid] = {
                        "Id": cid,
                        "IsDeleted": False,
                        "CreatedDate": created,
                        "LastModifiedDate": modstamp,
                        "SystemModstamp": modstamp,
                        "CreatedById": integration,
                        "LastModifiedById": integration,
                        "Name": inv.number,
                        "CurrencyIsoCode": acc.currency,
                        "Account__c": aid,
                        "Invoice_Date__c": issued,
                        "Due_Date__c": due,
                        "Amount__c": float(inv.amount),
                        "Balance__c": float(inv.open_amount),
                        "Paid_Date__c": iso(inv.paid_date) if inv.paid_date else None,
                        "Status__c": _CUSTOM_STATUS[inv.status],
                    }
        self._last_stamp = sf_datetime(load + timedelta(days=1))

    def _seed_allocations(
        self, inv: SeedInvoice, invoice_id: str, account_id: str, currency: str, stamp: str, n: int
    ) -> None:
        """Billing's payments applied to one invoice: how its paid date can be known.

        A paid invoice is settled by one payment on its paid date; every fifth by two (half
        earlier, the rest on the paid date); every seventh also had a later payment applied
        and taken back (the allocation flagged unallocated, plus its unallocation record),
        which must not date it. A partly paid invoice has one payment for the part paid.
        """
        if inv.status == "paid" and inv.paid_date is not None:
            parts = [(inv.paid_date, inv.amount)]
            if n % 5 == 0 and inv.paid_date > inv.issue_date:
                half = (inv.amount / 2).quantize(Decimal("0.01"))
                earlier = inv.issue_date + (inv.paid_date - inv.issue_date) / 2
                parts = [(earlier, half), (inv.paid_date, inv.amount - half)]
            for day, amount in parts:
                self._seed_payment(invoice_id, account_id, currency, stamp, day, amount)
            if n % 7 == 0:
                later = inv.paid_date + timedelta(days=3)
                self._seed_payment(
                    invoice_id, account_id, currency, stamp, later, inv.amount, taken_back=True
                )
        elif inv.status == "partially_paid" and inv.amount > inv.open_amount:
            day = inv.issue_date + (inv.due_date - inv.issue_date) / 2
            self._seed_payment(
                invoice_id, account_id, currency, stamp, day, inv.amount - inv.open_amount
            )

    def _seed_payment(
        self,
        invoice_id: str,
        account_id: str,
        currency: str,
        stamp: str,
        day: date,
        amount: Decimal,
        *,
        taken_back: bool = False,
    ) -> None:
        pid = self._new_id("blng__Payment__c")
        common = {"CreatedDate": stamp, "LastModifiedDate": stamp, "SystemModstamp": stamp}
        self.rows["blng__Payment__c"][pid] = (
            self._blank("blng__Payment__c")
            | common
            | {
                "Id": pid,
                "Name": f"P-{pid[-6:]}",
                "CurrencyIsoCode": currency,
                "blng__Account__c": account_id,
                "blng__Amount__c": float(amount),
                "blng__PaymentDate__c": day.isoformat(),
                "blng__Status__c": "Processed",
            }
        )
        rows = [("Allocation", taken_back)] + ([("Unallocation", False)] if taken_back else [])
        for kind, flagged in rows:
            lid = self._new_id("blng__PaymentAllocationInvoice__c")
            self.rows["blng__PaymentAllocationInvoice__c"][lid] = (
                self._blank("blng__PaymentAllocationInvoice__c")
                | common
                | {
                    "Id": lid,
                    "Name": f"PAI-{lid[-6:]}",
                    "CurrencyIsoCode": currency,
                    "blng__Amount__c": float(amount),
                    "blng__Invoice__c": invoice_id,
                    "blng__Payment__c": pid,
                    "blng__Type__c": kind,
                    "blng__Unallocated__c": flagged,
                }
            )

    def _seed_currencies(self, stamp: str) -> None:
        """A multi-currency org with advanced currency management: EUR corporate, dated rates."""
        self.rows["Organization"][ORG_ID] = self._blank("Organization") | {
            "Id": ORG_ID,
            "Name": "crm-risk sandbox org",
            "DefaultCurrencyIsoCode": HOME_CURRENCY,
            "CreatedDate": stamp,
            "LastModifiedDate": stamp,
            "SystemModstamp": stamp,
        }
        for code, rate in RATES_PER_EUR.items():
            cid = self._new_id("CurrencyType")
            self.rows["CurrencyType"][cid] = self._blank("CurrencyType") | {
                "Id": cid,
                "IsoCode": code,
                "ConversionRate": float(rate),
                "DecimalPlaces": 0 if code == "JPY" else 2,
                "IsActive": True,
                "IsCorporate": code == HOME_CURRENCY,
                "CreatedDate": stamp,
                "LastModifiedDate": stamp,
                "SystemModstamp": stamp,
            }
            starts = [start for start, _ in RATE_PERIODS]
            for index, start in enumerate(starts):
                did = self._new_id("DatedConversionRate")
                following = starts[index + 1] if index + 1 < len(starts) else None
                self.rows["DatedConversionRate"][did] = self._blank("DatedConversionRate") | {
                    "Id": did,
                    "IsoCode": code,
                    "ConversionRate": float(rate_on(code, start)),
                    "StartDate": start.isoformat(),
                    "NextStartDate": following.isoformat() if following else None,
                    "CreatedDate": stamp,
                    "LastModifiedDate": stamp,
                    "SystemModstamp": stamp,
                }

    def _blank(self, object_name: str) -> dict[str, Any]:
        # Seeded and API-made rows alike are created and changed by the integration user.
        return {f.name: f.default for f in self.schema[object_name].fields} | {
            "IsDeleted": False,
            "CreatedById": self.integration_user_id,
            "LastModifiedById": self.integration_user_id,
        }

    # ---------------------------------------------------------------- inspection API

    def records(self, object_name: str, include_deleted: bool = False) -> list[dict[str, Any]]:
        """Copies of the records of one object (soft-deleted ones only when asked)."""
        obj = self._object(object_name)
        with self._lock:
            return [
                dict(row)
                for row in self.rows[obj.name].values()
                if include_deleted or not row["IsDeleted"]
            ]

    def tasks(self) -> list[dict[str, Any]]:
        """Copies of all Task records."""
        return self.records("Task")

    def set_field(self, object_name: str, record_id: str, field: str, value: Any) -> None:
        """Simulate a person editing a record in the CRM (bumps LastModifiedDate/SystemModstamp)."""
        obj = self._object(object_name)
        fdef = obj.field(field)
        if fdef is None:
            raise KeyError(field)
        with self._lock:
            row = self.rows[obj.name][to_id18(record_id) or record_id]
            row[fdef.name] = value
            self._touch(row, self._stamp())

    def edit_field(
        self,
        object_name: str,
        field: str,
        *,
        picklist: tuple[str, ...] | None = None,
        updateable: bool | None = None,
        delete: bool = False,
    ) -> None:
        """Change a field as an admin would in Setup: its picklist values, edit access, or delete it."""
        obj = self._object(object_name)
        with self._lock:
            fdef = obj.field(field)
            if fdef is None:
                raise KeyError(field)
            index = obj.fields.index(fdef)
            if delete:
                del obj.fields[index]
            else:
                changes: dict[str, Any] = {}
                if picklist is not None:
                    changes["picklist"] = tuple(picklist)
                if updateable is not None:
                    changes["updateable"] = changes["createable"] = updateable
                obj.fields[index] = dataclasses.replace(fdef, **changes)
            obj.__post_init__()

    def delete_record(self, object_name: str, record_id: str) -> None:
        """Soft-delete a record (it moves to the recycle bin: only queryAll sees it)."""
        obj = self._object(object_name)
        with self._lock:
            row = self.rows[obj.name][to_id18(record_id) or record_id]
            row["IsDeleted"] = True
            self._touch(row, self._stamp())

    def expire_tokens(self) -> None:
        """Invalidate every access token (the next API call answers 401 INVALID_SESSION_ID)."""
        with self._lock:
            self._tokens.clear()

    def issue_token(self, user_id: str | None = None) -> str:
        """A valid access token, for tests that use `Salesforce(session_id=...)` directly."""
        token = f"{ORG_ID[:15]}!AQ{secrets.token_urlsafe(40)}"
        with self._lock:
            self._tokens[token] = (user_id or self.integration_user_id, time.monotonic())
        return token

    def lock_record(self, record_id: str, times: int = 1) -> None:
        """Answer UNABLE_TO_LOCK_ROW for the next `times` writes to this record."""
        with self._lock:
            self._locks[to_id18(record_id) or record_id] = times

    def add_validation_rule(self, rule: Callable[[str, dict[str, Any]], str | None]) -> None:
        """A rule (object name, merged record) -> error text or None, like a validation rule."""
        self._validation_rules.append(rule)

    def set_api_usage(self, used: int) -> None:
        """Pretend `used` API calls were already spent today."""
        self.api_used = used

    @property
    def jwt_private_key(self) -> str:
        """PEM of the private key whose public half verifies JWT bearer assertions (made on demand)."""
        if self._jwt_private_key is None:
            from cryptography.hazmat.primitives import serialization
            from cryptography.hazmat.primitives.asymmetric import rsa

            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            self._jwt_private_key = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ).decode()
            self._jwt_public_key = (
                key.public_key()
                .public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                )
                .decode()
            )
        return self._jwt_private_key

    def save_state(self, path: str) -> None:
        """Write all records and counters to a JSON file."""
        with self._lock:
            state = {"rows": self.rows, "seq": self._seq, "api_used": self.api_used}
            text = json.dumps(state)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)

    def load_state(self, path: str) -> None:
        """Replace all records with those of a file written by save_state()."""
        with open(path, encoding="utf-8") as handle:
            state = json.load(handle)
        with self._lock:
            self.rows = {name: state["rows"].get(name, {}) for name in self.schema}
            self._seq = int(state["seq"])
            self.api_used = int(state["api_used"])
            stamps = [row["SystemModstamp"] for rows in self.rows.values() for row in rows.values()]
            self._last_stamp = max(stamps, default="")

    # ---------------------------------------------------------------- clock and writes

    def _stamp(self) -> str:
        # Never go backwards: seeded stamps may lie ahead of the real clock.
        stamp = max(sf_datetime(self.clock()), self._last_stamp)
        self._last_stamp = stamp
        return stamp

    @staticmethod
    def _touch(row: dict[str, Any], stamp: str) -> None:
        row["LastModifiedDate"] = stamp
        row["SystemModstamp"] = stamp

    def _object(self, name: str) -> SObject:
        for obj in self.schema.values():
            if obj.name.lower() == name.lower():
                return obj
        raise KeyError(name)

    def _find_object(self, name: str) -> SObject | None:
        try:
            return self._object(name)
        except KeyError:
            return None

    # ---------------------------------------------------------------- HTTP entry

    def fault_response(self, kind: str) -> Response:
        """Injected faults in Salesforce's JSON-array error shape (no Retry-After: SF sends none)."""
        if kind == "429":
            return _error(429, "REQUEST_LIMIT_EXCEEDED", "ConcurrentPerOrgLongTxn Limit exceeded.")
        if kind == "503":
            return _error(503, "SERVER_UNAVAILABLE", "Service temporarily unavailable.")
        return _error(
            500,
            "UNKNOWN_EXCEPTION",
            "An unexpected error occurred. Please include this ErrorId if you contact support: "
            "1234567890-12345 (-1)",
        )

    def handle(self, request: Request) -> Response:
        """Route one request."""
        path = request.path
        if path.rstrip("/") == "/services/oauth2/token":
            return self._token(request)
        if path.rstrip("/") == "/services/oauth2/userinfo":
            return self._userinfo(request)
        if path.startswith("/id/"):
            return self._identity(request)
        if path.startswith("/services/Soap/u/"):
            return self._soap_login(request)
        if path.rstrip("/") == "/services/data":
            return Response.json(
                200,
                [
                    {
                        "label": f"Sandbox {v:.1f}",
                        "url": f"/services/data/v{v:.1f}",
                        "version": f"{v:.1f}",
                    }
                    for v in (58.0, 59.0, 60.0, 61.0, 62.0)
                ],
            )
        match = re.match(r"^/services/data/v(\d+\.\d)(/.*)?$", path)
        if not match:
            return _not_found()
        version = float(match.group(1))
        if not MIN_VERSION <= version <= LATEST_VERSION:
            return _not_found()
        denied = self._authenticate(request)
        if denied is not None:
            return denied
        with self._lock:
            if self.api_used >= self.daily_api_limit:
                response = _error(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
                response.headers["Sforce-Limit-Info"] = self._usage_header()
                return response
            if self.long_running_limit is not None and self._in_flight >= self.long_running_limit:
                response = _error(
                    403, "REQUEST_LIMIT_EXCEEDED", "ConcurrentPerOrgLongTxn Limit exceeded."
                )
                response.headers["Sforce-Limit-Info"] = self._usage_header()
                return response
            self.api_used += 1
            self._in_flight += 1
        rest = (match.group(2) or "/").rstrip("/") or "/"
        try:
            if self.processing_delay_s > 0:
                time.sleep(self.processing_delay_s)
            response = self._route(request, match.group(1), rest)
        except SoqlError as exc:
            response = _error(400, exc.code, exc.message)
        finally:
            with self._lock:
                self._in_flight -= 1
        response.headers["Sforce-Limit-Info"] = self._usage_header()
        return response

    def _usage_header(self) -> str:
        return f"api-usage={self.api_used}/{self.daily_api_limit}"

    def _authenticate(self, request: Request) -> Response | None:
        if self._session_user(request) is None:
            return _error(401, "INVALID_SESSION_ID", "Session expired or invalid")
        return None

    def _session_user(self, request: Request, *, query_token: bool = False) -> str | None:
        """The user id of the request's live access token (None when missing or expired)."""
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        token = value.strip() if scheme.lower() in ("bearer", "oauth") else ""
        token = token or request.headers.get("x-sfdc-session", "")
        if query_token:  # identity URLs also take the token as ?oauth_token= (Identity URLs page)
            token = token or request.param("oauth_token") or request.param("access_token") or ""
        lifetime = request.faults.expire_tokens_after_s
        if lifetime is None:
            lifetime = self.session_seconds
        with self._lock:
            entry = self._tokens.get(token)
            if entry is not None and lifetime is not None:
                if time.monotonic() - entry[1] > lifetime:
                    del self._tokens[token]
                    entry = None
        return None if entry is None else entry[0]

    def _route(self, request: Request, version: str, rest: str) -> Response:
        method = request.method
        parts = rest.strip("/").split("/") if rest != "/" else []
        head = parts[0].lower() if parts else ""
        if not parts:
            return Response.json(200, self._resources(request, version))
        if head in ("query", "queryall"):
            if len(parts) == 2:
                return self._query_more(request, version, parts[1])
            q = request.param("q")
            if q is None:
                return _error(400, "MALFORMED_QUERY", "A query string has to be specified")
            return self._query(request, version, q, include_deleted=head == "queryall")
        if head == "limits" and method == "GET":
            return Response.json(200, self._limits())
        if head == "sobjects":
            return self._sobjects(request, version, parts[1:])
        if head == "composite" and len(parts) >= 2 and parts[1].lower() == "sobjects":
            return self._collections(request, version, parts[2:])
        if head == "jobs" and len(parts) >= 2:
            return self._jobs_route(request, version, parts[1].lower(), parts[2:])
        return _not_found()

    def _resources(self, request: Request, version: str) -> dict[str, str]:
        base = f"/services/data/v{version}"
        resources = {
            name: f"{base}/{name}"
            for name in ("sobjects", "query", "queryAll", "limits", "composite", "jobs")
        }
        # The versions resource names the caller's identity URL (REST API "Resources by Version").
        user_id = self._session_user(request) or self.integration_user_id
        resources["identity"] = f"{request.base_url}/id/{ORG_ID}/{user_id}"
        return resources

    def _limits(self) -> dict[str, Any]:
        # GET /limits (REST API guide, resources_limits): every allocation as {"Max", "Remaining"}.
        # The API, bulk query and ingest counters move with this org's traffic; the others are
        # the defaults of an Enterprise org and never move here.
        with self._lock:
            remaining = max(self.daily_api_limit - self.api_used, 0)
            query_jobs = sum(1 for j in self._jobs.values() if j.get("_kind") == "query")
            ingest_jobs = len(self._jobs) - query_jobs
        moving = {
            "DailyApiRequests": (self.daily_api_limit, remaining),
            "DailyBulkApiBatches": (15000, 15000 - ingest_jobs),
            "DailyBulkV2QueryJobs": (10000, 10000 - query_jobs),
        }
        fixed = {
            "ActiveScratchOrgs": 3,
            "AnalyticsExternalDataSizeMB": 40960,
            "ConcurrentAsyncGetReportInstances": 200,
            "ConcurrentSyncReportRuns": 20,
            "DailyAnalyticsDataflowJobExecutions": 60,
            "DailyAnalyticsUploadedFilesSizeMB": 51200,
            "DailyAsyncApexExecutions": 250000,
            "DailyAsyncApexTests": 500,
            "DailyBulkV2QueryFileStorageMB": 976562,
            "DailyDeliveredPlatformEvents": 50000,
            "DailyDurableGenericStreamingApiEvents": 10000,
            "DailyDurableStreamingApiEvents": 10000,
            "DailyGenericStreamingApiEvents": 10000,
            "DailyScratchOrgs": 6,
            "DailyStandardVolumePlatformEvents": 10000,
            "DailyStreamingApiEvents": 10000,
            "DailyWorkflowEmails": 1000,
            "DataStorageMB": 1024,
            "DurableStreamingApiConcurrentClients": 20,
            "FileStorageMB": 20480,
            "HourlyAsyncReportRuns": 1200,
            "HourlyDashboardRefreshes": 200,
            "HourlyDashboardResults": 5000,
            "HourlyDashboardStatuses": 999999999,
            "HourlyLongTermIdMapping": 100000,
            "HourlyODataCallout": 10000,
            "HourlyPublishedPlatformEvents": 50000,
            "HourlyPublishedStandardVolumePlatformEvents": 1000,
            "HourlyShortTermIdMapping": 100000,
            "HourlySyncReportRuns": 500,
            "HourlyTimeBasedWorkflow": 50,
            "MassEmail": 10,
            "Package2VersionCreates": 6,
            "Package2VersionCreatesWithoutValidation": 500,
            "PermissionTypes": {"Max": 30000, "Remaining": 30000},
            "SingleEmail": 15,
            "StreamingApiConcurrentClients": 20,
        }
        limits: dict[str, Any] = {
            name: {"Max": top, "Remaining": left} for name, (top, left) in moving.items()
        }
        for name, value in fixed.items():
            limits[name] = value if isinstance(value, dict) else {"Max": value, "Remaining": value}
        limits["DataStorageMB"]["Remaining"] = 1000
        return dict(sorted(limits.items()))

    # ---------------------------------------------------------------- OAuth

    def _token(self, request: Request) -> Response:
        if request.method != "POST":
            return _not_found()
        # OAuth asks for a urlencoded form; a multipart one carries the same fields [A: whether
        # Salesforce's token endpoint takes multipart is not documented].
        form = request.form()
        grant = form.get("grant_type", "")
        client_id = form.get("client_id")
        client_secret = form.get("client_secret")
        basic = request.headers.get("authorization", "")
        if basic.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(basic[6:]).decode()
            except ValueError:
                return self._oauth_error("invalid_client", "invalid client credentials")
            client_id, _, client_secret = decoded.partition(":")
        user_id = self.integration_user_id
        if grant == "client_credentials":
            if client_id != self.client_id:
                return self._oauth_error("invalid_client_id", "client identifier invalid")
            if not _same(client_secret, self.client_secret):
                return self._oauth_error("invalid_client", "invalid client credentials")
        elif grant == "password":
            if client_id != self.client_id:
                return self._oauth_error("invalid_client_id", "client identifier invalid")
            if not _same(client_secret, self.client_secret):
                return self._oauth_error("invalid_client", "invalid client credentials")
            password = form.get("password", "")
            if form.get("username") != self.username or password not in (
                self.password,
                self.password + self.security_token,
            ):
                return self._oauth_error("invalid_grant", "authentication failure")
        elif grant == "refresh_token":
            if client_id != self.client_id:
                return self._oauth_error("invalid_client_id", "client identifier invalid")
            if client_secret is not None and not _same(client_secret, self.client_secret):
                return self._oauth_error("invalid_client", "invalid client credentials")
            if not _same(form.get("refresh_token"), self.demo_refresh_token):
                return self._oauth_error("invalid_grant", "expired access/refresh token")
        elif grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            problem = self._check_assertion(form.get("assertion", ""), request.base_url)
            if problem is not None:
                return self._oauth_error(*problem)
        else:
            return self._oauth_error("unsupported_grant_type", "grant type not supported")
        token = self.issue_token(user_id)
        issued = str(int(time.time() * 1000))
        identity = f"{request.base_url}/id/{ORG_ID}/{user_id}"
        signature = base64.b64encode(
            hmac.new(
                self.client_secret.encode(), (identity + issued).encode(), hashlib.sha256
            ).digest()
        ).decode()
        return Response.json(
            200,
            {
                "access_token": token,
                "instance_url": request.base_url,
                "id": identity,
                "token_type": "Bearer",
                "issued_at": issued,
                "signature": signature,
                "scope": "api",
            },
        )

    @staticmethod
    def _oauth_error(code: str, description: str) -> Response:
        return Response.json(400, {"error": code, "error_description": description})

    def _check_assertion(self, assertion: str, base_url: str) -> tuple[str, str] | None:
        import jwt

        try:
            if self._jwt_public_key is not None:
                claims = jwt.decode(
                    assertion,
                    self._jwt_public_key,
                    algorithms=["RS256"],
                    options={"verify_exp": False, "verify_aud": False},
                )
            else:
                claims = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            return ("invalid_grant", "invalid assertion")
        if claims.get("iss") != self.client_id:
            return ("invalid_client_id", "client identifier invalid")
        if claims.get("sub") != self.username:
            return ("invalid_grant", "user hasn't approved this consumer")
        audiences = {
            base_url,
            "https://login.salesforce.com",
            "https://test.salesforce.com",
        }
        audience = claims.get("aud")
        given = set(audience) if isinstance(audience, list) else {audience}
        if not given & audiences:
            return ("invalid_grant", "audience is invalid")
        try:
            expires = float(claims["exp"])  # simple-salesforce sends exp as a string
        except (KeyError, TypeError, ValueError):
            return ("invalid_grant", "expiration is invalid")
        if expires < time.time():
            return ("invalid_grant", "expired authorization code")
        return None

    def _soap_login(self, request: Request) -> Response:
        # SOAP partner API login(): simple-salesforce prefixes the elements (<n1:username>),
        # jsforce puts them in the default namespace (<username>); both are the same XML.
        credentials = soap_credentials(request.body.decode("utf-8", "replace"))
        if (
            credentials is None
            or credentials[0] != self.username
            or credentials[1] not in (self.password, self.password + self.security_token)
        ):
            return Response(
                500, SOAP_LOGIN_FAULT.encode(), {"Content-Type": "text/xml;charset=UTF-8"}
            )
        token = self.issue_token()
        version = request.path.rstrip("/").rsplit("/", 1)[-1]
        server = f"{request.base_url}/services/Soap/u/{version}/{ORG_ID}"
        body = soap_login_result(
            self._org_user(self.integration_user_id),
            server,
            token,
            int(self.session_seconds or 7200),
        )
        return Response(200, body.encode(), {"Content-Type": "text/xml;charset=UTF-8"})

    def _org_user(self, user_id: str) -> OrgUser:
        with self._lock:
            row = self.rows["User"][user_id]
            return OrgUser(
                org_id=ORG_ID,
                org_name="crm-risk sandbox org",
                user_id=user_id,
                username=row["Username"],
                email=row["Email"],
                full_name=row["Name"],
                active=bool(row["IsActive"]),
                last_modified=row["LastModifiedDate"],
            )

    def _identity(self, request: Request) -> Response:
        # GET (or POST) /id/{orgId}/{userId}, the URL every token response returns as `id`.
        user_id = self._session_user(request, query_token=True)
        if user_id is None:
            return Response(403, b"Bad_OAuth_Token", {"Content-Type": "text/plain"})
        parts = request.path.strip("/").split("/")
        if len(parts) != 3 or parts[1] not in (ORG_ID, ORG_ID[:15]):
            return _not_found()
        # Another user's identity needs the api/full scope and View Setup; the sandbox's
        # integration user has both, so any user of the org may be looked up.
        wanted = to_id18(parts[2])
        if wanted is None or wanted not in self.rows["User"]:
            return _not_found()
        version = request.param("version")
        if version == "latest":
            version = f"{LATEST_VERSION:.1f}"
        document = identity_document(
            self._org_user(wanted), request.base_url, request.base_url, version
        )
        return Response.json(200, document)

    def _userinfo(self, request: Request) -> Response:
        # OpenID Connect UserInfo: GET or POST with the access token as a bearer header.
        user_id = self._session_user(request, query_token=True)
        if user_id is None:
            return Response(403, b"Bad_OAuth_Token", {"Content-Type": "text/plain"})
        return Response.json(
            200, userinfo_document(self._org_user(user_id), request.base_url, request.base_url)
        )

    # ---------------------------------------------------------------- SOQL

    def _invalid_field(self, query: Query, ref: FieldRef, entity: str, name: str) -> SoqlError:
        caret = " " * (ref.column - 1) + "^"
        return SoqlError(
            "INVALID_FIELD",
            f"\n{query.text}\n{caret}\nERROR at Row:1:Column:{ref.column}\n"
            f"No such column '{name}' on entity '{entity}'. If you are attempting to use a "
            "custom field, be sure to append the '__c' after the custom field name. Please "
            "reference your WSDL or the describe call for the appropriate names.",
        )

    def _resolve(self, query: Query, obj: SObject, ref: FieldRef) -> list[tuple[SObject, FieldDef]]:
        """The chain of (object, field) a path walks: relationships, then the final field."""
        chain: list[tuple[SObject, FieldDef]] = []
        current = obj
        for part in ref.path[:-1]:
            rel = current.relationships.get(part.lower())
            if rel is None:
                raise self._invalid_field(query, ref, current.name, part)
            chain.append((current, rel))
            current = self.schema[rel.reference_to[0]]
        fdef = current.field(ref.path[-1])
        if fdef is None:
            raise self._invalid_field(query, ref, current.name, ref.path[-1])
        chain.append((current, fdef))
        return chain

    def _getter(self, chain: list[tuple[SObject, FieldDef]]) -> Callable[[dict[str, Any]], Any]:
        if len(chain) == 1:
            name = chain[0][1].name
            return lambda row: row.get(name)
        steps = [(self.rows[self.schema[f.reference_to[0]].name], f.name) for _, f in chain[:-1]]
        last = chain[-1][1].name

        def get(row: dict[str, Any]) -> Any:
            current: dict[str, Any] | None = row
            for table, fname in steps:
                ref_id = current.get(fname) if current else None
                current = table.get(ref_id) if ref_id else None
            return current.get(last) if current else None

        return get

    def _compile(
        self, query: Query, obj: SObject, cond: Condition
    ) -> Callable[[dict[str, Any]], bool]:
        if isinstance(cond, BoolOp):
            parts = [self._compile(query, obj, p) for p in cond.parts]
            if cond.op == "and":
                return lambda row: all(p(row) for p in parts)
            return lambda row: any(p(row) for p in parts)
        if isinstance(cond, Not):
            inner = self._compile(query, obj, cond.part)
            return lambda row: not inner(row)
        return self._compile_comparison(query, obj, cond)

    def _compile_comparison(
        self, query: Query, obj: SObject, cond: Comparison
    ) -> Callable[[dict[str, Any]], bool]:
        chain = self._resolve(query, obj, cond.field)
        fdef = chain[-1][1]
        get = self._getter(chain)
        op = cond.op
        if op in ("IN", "NOTIN"):
            values = {self._literal(fdef, v, cond) for v in cond.value}
            folded = {_fold(fdef, v) for v in values}
            if op == "IN":
                return lambda row: _fold(fdef, get(row)) in folded
            return lambda row: _fold(fdef, get(row)) not in folded
        if op == "LIKE":
            regex = like_to_regex(cond.value)
            return lambda row: (v := get(row)) is not None and bool(regex.match(str(v)))
        if isinstance(cond.value, DateKeyword) and fdef.type in ("date", "datetime"):
            start, end = resolve_date_keyword(cond.value, self.clock().date())
            lo, hi = start.isoformat(), end.isoformat()

            def keyword_match(row: dict[str, Any]) -> bool:
                value = get(row)
                if value is None:
                    return op == "!="
                day = str(value)[:10]
                outcome: bool = {
                    "=": lo <= day <= hi,
                    "!=": not lo <= day <= hi,
                    "<": day < lo,
                    "<=": day <= hi,
                    ">": day > hi,
                    ">=": day >= lo,
                }[op]
                return outcome

            return keyword_match
        literal = self._literal(fdef, cond.value, cond)
        if literal is None:
            if op == "=":
                return lambda row: get(row) is None
            if op == "!=":
                return lambda row: get(row) is not None
            raise SoqlError("MALFORMED_QUERY", "null can only be compared with = or !=")
        target = _fold(fdef, literal)
        compare: Callable[[Any, Any], bool] = {
            "=": lambda a, b: a == b,
            "!=": lambda a, b: a != b,
            "<": lambda a, b: a < b,
            "<=": lambda a, b: a <= b,
            ">": lambda a, b: a > b,
            ">=": lambda a, b: a >= b,
        }[op]

        def match(row: dict[str, Any]) -> bool:
            value = get(row)
            if value is None:
                return op == "!="
            return compare(_fold(fdef, value), target)

        return match

    def _literal(self, fdef: FieldDef, value: Any, cond: Comparison) -> Any:
        if value is None:
            return None
        kind = fdef.type
        if kind == "datetime":
            if isinstance(value, DateTimeLiteral):
                return sf_datetime(value.value)
            raise SoqlError(
                "INVALID_FIELD",
                f"value of filter criterion for field '{fdef.name}' must be of type dateTime "
                "and should not be enclosed in quotes",
            )
        if kind == "date":
            if isinstance(value, DateLiteral):
                return value.value.isoformat()
            raise SoqlError(
                "INVALID_FIELD",
                f"value of filter criterion for field '{fdef.name}' must be of type date "
                "and should not be enclosed in quotes",
            )
        if kind in NUMBER_TYPES:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise SoqlError(
                    "INVALID_FIELD",
                    f"value of filter criterion for field '{fdef.name}' must be of type "
                    f"{kind} and should not be enclosed in quotes",
                )
            return float(value)
        if kind == "boolean":
            if not isinstance(value, bool):
                raise SoqlError(
                    "INVALID_FIELD",
                    f"value of filter criterion for field '{fdef.name}' must be of type boolean "
                    "and should not be enclosed in quotes",
                )
            return value
        if not isinstance(value, str):
            raise SoqlError(
                "MALFORMED_QUERY",
                f"value of filter criterion for field '{fdef.name}' must be a quoted string",
            )
        if kind in ("id", "reference"):
            return to_id18(value) or value
        return value

    def _object_for(self, query: Query) -> SObject:
        obj = self._find_object(query.object_name)
        if obj is None:
            caret = " " * (query.object_column - 1) + "^"
            raise SoqlError(
                "INVALID_TYPE",
                f"\n{query.text}\n{caret}\nERROR at Row:1:Column:{query.object_column}\n"
                f"sObject type '{query.object_name}' is not supported. If you are attempting "
                "to use a custom object, be sure to append the '__c' after the entity name. "
                "Please reference your WSDL or the describe call for the appropriate names.",
            )
        return obj

    def _select_rows(
        self, query: Query, obj: SObject, include_deleted: bool, *, ordered: bool = True
    ) -> list[dict[str, Any]]:
        """Rows of `obj` that pass WHERE, in ORDER BY order (call with the lock held)."""
        predicate = self._compile(query, obj, query.where) if query.where else None
        rows = [
            row
            for row in self.rows[obj.name].values()
            if (include_deleted or not row["IsDeleted"]) and (predicate is None or predicate(row))
        ]
        if not ordered:
            return rows
        for item in reversed(query.order_by):
            chain = self._resolve(query, obj, item.field)
            get, fdef = self._getter(chain), chain[-1][1]
            nulls_last = item.nulls_last if item.nulls_last is not None else item.descending
            present = [r for r in rows if get(r) is not None]
            missing = [r for r in rows if get(r) is None]
            present.sort(key=_row_key(fdef, get), reverse=item.descending)
            rows = present + missing if nulls_last else missing + present
        return rows

    def _child_plan(self, parent: SObject, sub: Query, include_deleted: bool) -> _ChildPlan:
        """Resolve `(SELECT ... FROM Tasks)` on `parent` and run it for every parent at once."""
        for child in self.schema.values():
            for fdef in child.fields:
                name = child_relationship_name(child, fdef)
                if (
                    parent.name in fdef.reference_to
                    and name
                    and name.lower() == sub.object_name.lower()
                ):
                    for ref in sub.fields:
                        self._resolve(sub, child, ref)
                    by_parent: dict[str, list[str]] = {}
                    for row in self._select_rows(sub, child, include_deleted):
                        owner = row.get(fdef.name)
                        if owner:
                            by_parent.setdefault(owner, []).append(row["Id"])
                    if sub.limit is not None:
                        by_parent = {k: v[: sub.limit] for k, v in by_parent.items()}
                    return _ChildPlan(name, child, list(sub.fields), by_parent)
        raise SoqlError(
            "INVALID_TYPE",
            f"\n{sub.text}\nERROR at Row:1:Column:{sub.object_column}\nDidn't understand "
            f"relationship '{sub.object_name}' in FROM part of query call. If you are attempting "
            "to use a custom relationship, be sure to append the '__r' after the custom "
            "relationship name. Please reference your WSDL or the describe call for the "
            "appropriate names.",
        )

    def _run(
        self, query: Query, include_deleted: bool
    ) -> tuple[SObject, list[str], list[PlanItem]]:
        obj = self._object_for(query)
        for ref in query.fields:
            self._resolve(query, obj, ref)
        plan: list[PlanItem] = list(query.fields)
        with self._lock:
            plan += [self._child_plan(obj, sub, include_deleted) for sub in query.subqueries]
            ids = [row["Id"] for row in self._select_rows(query, obj, include_deleted)]
        ids = ids[query.offset :]
        if query.limit is not None:
            ids = ids[: query.limit]
        return obj, ids, plan

    def _aggregate(self, query: Query, include_deleted: bool) -> dict[str, Any]:
        """A grouped or aggregate SELECT: one AggregateResult row per group (no query locator)."""
        obj = self._object_for(query)
        grouped = {tuple(p.lower() for p in ref.path) for ref in query.group_by}
        for ref in query.fields:
            if tuple(p.lower() for p in ref.path) not in grouped:
                raise SoqlError(
                    "MALFORMED_QUERY",
                    f"\n{query.text}\nERROR at Row:1:Column:{ref.column}\n"
                    f"Field must be grouped or aggregated: {ref.text}",
                )
        keys = [(ref, self._resolve(query, obj, ref)) for ref in query.group_by]
        key_getters = [self._getter(chain) for _, chain in keys]
        measures = [
            (agg, self._getter(self._resolve(query, obj, agg.field)) if agg.field else None)
            for agg in query.aggregates
        ]
        groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
        with self._lock:
            for row in self._select_rows(query, obj, include_deleted, ordered=False):
                groups.setdefault(tuple(g(row) for g in key_getters), []).append(row)
        if not query.group_by and not groups:
            groups[()] = []  # an aggregate without GROUP BY always answers one row
        records: list[dict[str, Any]] = []
        sort_keys: list[list[Any]] = []
        unnamed = 0
        names: list[str] = []
        for agg, _ in measures:
            if agg.alias:
                names.append(agg.alias)
            else:
                names.append(f"expr{unnamed}")
                unnamed += 1
        for key, members in groups.items():
            record: dict[str, Any] = {"attributes": {"type": "AggregateResult"}}
            for (ref, chain), value in zip(keys, key, strict=True):
                if any(ref.path == f.path for f in query.fields):
                    record[chain[-1][1].name] = value
            for name, (agg, get) in zip(names, measures, strict=True):
                record[name] = _aggregate_value(agg.func, get, members)
            records.append(record)
            order: list[Any] = []
            for item in query.order_by:
                if item.aggregate is not None:
                    agg = item.aggregate
                    get = self._getter(self._resolve(query, obj, agg.field)) if agg.field else None
                    order.append(_aggregate_value(agg.func, get, members))
                else:
                    path = tuple(p.lower() for p in item.field.path)
                    position = [tuple(p.lower() for p in r.path) for r, _ in keys].index(path)
                    order.append(key[position])
            sort_keys.append(order)
        ranked = list(range(len(records)))
        for index, item in reversed(list(enumerate(query.order_by))):
            nulls_last = item.nulls_last if item.nulls_last is not None else item.descending
            present = [i for i in ranked if sort_keys[i][index] is not None]
            missing = [i for i in ranked if sort_keys[i][index] is None]
            present.sort(key=lambda i: sort_keys[i][index], reverse=item.descending)
            ranked = present + missing if nulls_last else missing + present
        rows = [records[i] for i in ranked][query.offset :]
        if query.limit is not None:
            rows = rows[: query.limit]
        return {"totalSize": len(rows), "done": True, "records": rows}

    def _render(
        self, obj: SObject, row: dict[str, Any], plan: Sequence[PlanItem], version: str
    ) -> dict[str, Any]:
        out: dict[str, Any] = {
            "attributes": {
                "type": obj.name,
                "url": f"/services/data/v{version}/sobjects/{obj.name}/{row['Id']}",
            }
        }
        for item in plan:
            if isinstance(item, _ChildPlan):
                # Children nest as a query result of their own; none at all is null, not [].
                table = self.rows[item.obj.name]
                kids = [table[i] for i in item.by_parent.get(row["Id"], ()) if i in table]
                out[item.name] = (
                    {
                        "totalSize": len(kids),
                        "done": True,
                        "records": [self._render(item.obj, k, item.plan, version) for k in kids],
                    }
                    if kids
                    else None
                )
                continue
            self._render_path(obj, row, item.path, out, version)
        return out

    def _render_path(
        self,
        obj: SObject,
        row: dict[str, Any] | None,
        path: tuple[str, ...],
        out: dict[str, Any],
        version: str,
    ) -> None:
        if len(path) == 1:
            fdef = obj.field(path[0])
            if fdef is not None:
                out[fdef.name] = row.get(fdef.name) if row else None
            return
        rel = obj.relationships[path[0].lower()]
        target = self.schema[rel.reference_to[0]]
        ref_id = row.get(rel.name) if row else None
        parent = self.rows[target.name].get(ref_id) if ref_id else None
        key = rel.relationship_name or rel.name
        if parent is None:
            out.setdefault(key, None)
            return
        nested = out.get(key)
        if not isinstance(nested, dict):
            nested = {
                "attributes": {
                    "type": target.name,
                    "url": f"/services/data/v{version}/sobjects/{target.name}/{parent['Id']}",
                }
            }
            out[key] = nested
        self._render_path(target, parent, path[1:], nested, version)

    def _column(self, fdef: FieldDef, name: str, display: str) -> dict[str, Any]:
        return {
            "aggregate": False,
            "apexType": _APEX_TYPES.get(fdef.type, "String"),
            "booleanType": fdef.type == "boolean",
            "columnName": name,
            "custom": fdef.custom,
            "displayName": display,
            "foreignKeyName": None,
            "insertable": fdef.createable,
            "joinColumns": [],
            "numberType": fdef.type in NUMBER_TYPES,
            "textType": fdef.type in STRING_TYPES and fdef.type not in ("id", "reference"),
            "updatable": fdef.updateable,
        }

    def _columns(self, query: Query) -> dict[str, Any]:
        """`query?q=...&columns=true`: the columns a query returns, not its rows.

        Undocumented but served by Salesforce and read by its CLI (`sf data query`) and the
        Developer Console: relationship paths nest as joinColumns under the relationship,
        subqueries and functions are `aggregate` columns.
        """
        obj = self._object_for(query)
        columns: list[dict[str, Any]] = []

        def place(target: list[dict[str, Any]], owner: SObject, ref: FieldRef) -> None:
            chain = self._resolve(query, owner, ref)
            prefix = ""
            level = target
            for _owner, rel in chain[:-1]:
                name = rel.relationship_name or rel.name
                prefix += name + "."
                found = next((c for c in level if c["columnName"] == name), None)
                if found is None:
                    found = self._column(rel, name, prefix[:-1]) | {"foreignKeyName": rel.name}
                    level.append(found)
                level = found["joinColumns"]
            fdef = chain[-1][1]
            level.append(self._column(fdef, fdef.name, prefix + fdef.name))

        for ref in query.fields:
            place(columns, obj, ref)
        with self._lock:
            for sub in query.subqueries:
                child = self._child_plan(obj, sub, include_deleted=False)
                joined: list[dict[str, Any]] = []
                for ref in sub.fields:
                    place(joined, child.obj, ref)
                columns.append(
                    {
                        "aggregate": True,
                        "apexType": None,
                        "booleanType": False,
                        "columnName": child.name,
                        "custom": child.name.endswith("__r"),
                        "displayName": child.name,
                        "foreignKeyName": None,
                        "insertable": False,
                        "joinColumns": joined,
                        "numberType": False,
                        "textType": False,
                        "updatable": False,
                    }
                )
        unnamed = 0
        for agg in query.aggregates:
            name = agg.alias or f"expr{unnamed}"
            unnamed += 0 if agg.alias else 1
            numeric = agg.func in ("COUNT", "COUNT_DISTINCT", "SUM", "AVG")
            columns.append(
                {
                    "aggregate": True,
                    "apexType": "Integer" if agg.func.startswith("COUNT") else "Decimal",
                    "booleanType": False,
                    "columnName": name,
                    "custom": False,
                    "displayName": agg.alias or agg.text,
                    "foreignKeyName": None,
                    "insertable": False,
                    "joinColumns": [],
                    "numberType": numeric,
                    "textType": False,
                    "updatable": False,
                }
            )
        return {
            "columnMetadata": columns,
            "entityName": obj.name,
            "groupBy": bool(query.group_by),
            "idSelected": any(ref.path == ("Id",) for ref in query.fields),
            "keyPrefix": obj.key_prefix,
        }

    def _page_size(self, request: Request) -> int:
        options = request.headers.get("sforce-query-options", "")
        found = re.search(r"batchSize\s*=\s*(\d+)", options, re.IGNORECASE)
        if not found:
            return 2000
        return min(max(int(found.group(1)), 200), 2000)

    def _query(self, request: Request, version: str, text: str, include_deleted: bool) -> Response:
        query = parse(text)
        if (request.param("columns") or "").lower() == "true":
            return Response.json(200, self._columns(query))
        if query.is_aggregate:
            return Response.json(200, self._aggregate(query, include_deleted))
        obj, ids, plan = self._run(query, include_deleted)
        if query.count_only:
            return Response.json(200, {"totalSize": len(ids), "done": True, "records": []})
        locator = None
        if len(ids) > self._page_size(request):
            locator = "01g" + secrets.token_hex(8)[:12].upper() + "AA2"
            with self._lock:
                self._cursors[locator] = _Cursor(obj.name, plan, ids)
                while len(self._cursors) > 500:  # bounded, like Salesforce's open-cursor limit
                    self._cursors.pop(next(iter(self._cursors)))
        return self._page(request, version, obj, plan, ids, 0, locator)

    def _page(
        self,
        request: Request,
        version: str,
        obj: SObject,
        plan: list[PlanItem],
        ids: list[str],
        start: int,
        locator: str | None,
    ) -> Response:
        size = self._page_size(request)
        chunk = ids[start : start + size]
        table = self.rows[obj.name]
        with self._lock:
            records = [self._render(obj, table[i], plan, version) for i in chunk if i in table]
        payload: dict[str, Any] = {"totalSize": len(ids), "done": True, "records": records}
        end = start + len(chunk)
        if end < len(ids) and locator:
            payload["done"] = False
            payload["nextRecordsUrl"] = f"/services/data/v{version}/query/{locator}-{end}"
        return Response.json(200, payload)

    def _query_more(self, request: Request, version: str, token: str) -> Response:
        locator, _, position = token.rpartition("-")
        cursor = self._cursors.get(locator)
        if cursor is None or not position.isdigit():
            return _error(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        obj = self.schema[cursor.object_name]
        return self._page(request, version, obj, cursor.plan, cursor.ids, int(position), locator)

    # ---------------------------------------------------------------- describe and sObjects

    def _describe(self, obj: SObject, version: str) -> dict[str, Any]:
        return object_describe(self.schema, obj, version)

    def _global_describe(self, version: str) -> dict[str, Any]:
        return {
            "encoding": "UTF-8",
            "maxBatchSize": 200,
            "sobjects": [global_entry(obj, version) for obj in self.schema.values()],
        }

    def _sobjects(self, request: Request, version: str, parts: list[str]) -> Response:
        method = request.method
        if not parts:
            return Response.json(200, self._global_describe(version))
        obj = self._find_object(parts[0])
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
        row = self.rows[obj.name].get(record_id)
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
            with self._lock:
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
                with self._lock:
                    self._write(obj, [(record_id, data)], creating=False, request=request)
            except RecordError as exc:
                return _error(400, exc.code, exc.message, exc.fields)
            return Response(204)
        if method == "DELETE":
            with self._lock:
                row["IsDeleted"] = True
                self._touch(row, self._stamp())
                self.writes_log.append(
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
        with self._lock:
            gone = [
                {"id": row["Id"], "deletedDate": row["SystemModstamp"]}
                for row in self.rows[obj.name].values()
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
        with self._lock:
            ids = [
                row["Id"]
                for row in self.rows[obj.name].values()
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
            with self._lock:
                results = self._write(obj, [(None, data)], creating=True, request=request)
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
        with self._lock:
            found = [
                row["Id"]
                for row in self.rows[obj.name].values()
                if not row["IsDeleted"] and row.get(fdef.name) == value
            ]
            if len(found) > 1:
                return Response.json(
                    300, [f"/services/data/sobjects/{obj.name}/{i}" for i in found]
                )
            try:
                if found:
                    self._write(obj, [(found[0], data)], creating=False, request=request)
                    return Response.json(
                        200, {"id": found[0], "success": True, "errors": [], "created": False}
                    )
                data[fdef.name] = value
                results = self._write(obj, [(None, data)], creating=True, request=request)
            except RecordError as exc:
                return _error(400, exc.code, exc.message, exc.fields)
        return Response.json(
            201, {"id": results[0]["id"], "success": True, "errors": [], "created": True}
        )

    # ---------------------------------------------------------------- sObject Collections

    def _collections(self, request: Request, version: str, parts: list[str]) -> Response:
        method = request.method
        if method in ("GET", "POST") and len(parts) == 1:
            return self._collections_retrieve(request, version, parts[0])
        if method == "PATCH" and len(parts) == 2:
            return self._collections_upsert(request, parts[0], parts[1])
        if method == "DELETE":
            ids = [i for i in (request.param("ids") or "").split(",") if i]
            deleted: list[dict[str, Any]] = []
            with self._lock:
                for raw in ids[:COLLECTION_LIMIT]:
                    rid = to_id18(raw) or raw
                    row = next((t[rid] for t in self.rows.values() if rid in t), None)
                    if row is None or row["IsDeleted"]:
                        deleted.append(
                            {
                                "success": False,
                                "errors": [
                                    {
                                        "statusCode": "ENTITY_IS_DELETED",
                                        "message": "entity is deleted",
                                        "fields": [],
                                    }
                                ],
                            }
                        )
                        continue
                    row["IsDeleted"] = True
                    self._touch(row, self._stamp())
                    deleted.append({"id": rid, "success": True, "errors": []})
            return Response.json(200, deleted)
        if method not in ("POST", "PATCH") or parts:
            return _not_found()
        parsed = _collection_records(request)
        if isinstance(parsed, Response):
            return parsed
        records, all_or_none = parsed
        creating = method == "POST"
        results: list[dict[str, Any]] = []
        # Salesforce processes each run of same-type records as one chunk; keep order.
        with self._lock:
            prepared: list[
                tuple[SObject | None, str | None, dict[str, Any], RecordError | None]
            ] = []
            for raw in records:
                typed = _typed_record(raw)
                if isinstance(typed, Response):
                    return typed
                data, type_name = typed
                obj = self._find_object(type_name)
                if obj is None:
                    return _error(
                        400, "INVALID_TYPE", f"sObject type '{type_name}' is not supported."
                    )
                record_id: str | None = None
                problem: RecordError | None = None
                if creating:
                    if "id" in data or "Id" in data:
                        problem = RecordError(
                            "INVALID_FIELD", "cannot specify Id in an insert call", ["Id"]
                        )
                else:
                    raw_id = data.pop("id", None) or data.pop("Id", None)
                    if not raw_id:
                        return _error(400, "MISSING_ARGUMENT", "Id not specified in an update call")
                    record_id = to_id18(str(raw_id))
                    if record_id is None:
                        problem = RecordError("MALFORMED_ID", f"malformed id {raw_id}", ["Id"])
                prepared.append(
                    (obj, record_id or (None if creating else str(raw_id)), data, problem)
                )
            outcomes: list[dict[str, Any] | RecordError] = []
            staged: list[tuple[SObject, str | None, dict[str, Any]]] = []
            for obj, record_id, data, problem in prepared:
                assert obj is not None
                if problem is None:
                    try:
                        clean = self._validate(obj, record_id, data, creating, request)
                        staged.append((obj, record_id, clean))
                        outcomes.append({"pending": True})
                        continue
                    except RecordError as exc:
                        problem = exc
                outcomes.append(problem)
            failed = any(isinstance(o, RecordError) for o in outcomes)
            staged_iter = iter(staged)
            for (_, record_id, _, _), outcome in zip(prepared, outcomes, strict=True):
                if isinstance(outcome, RecordError):
                    result: dict[str, Any] = {"success": False, "errors": [outcome.as_result()]}
                    if record_id and not creating:
                        result = {"id": record_id} | result
                    results.append(result)
                    continue
                sobj, staged_id, clean = next(staged_iter)
                if failed and all_or_none:
                    results.append({"success": False, "errors": [_ROLLED_BACK]})
                    continue
                new_id = self._apply(sobj, staged_id, clean, self._stamp())
                results.append({"id": new_id, "success": True, "errors": []})
        return Response.json(200, results)

    def _collections_retrieve(self, request: Request, version: str, object_name: str) -> Response:
        # sObject Collections retrieve: GET ?ids=&fields= (up to 800 ids in the URL) or POST
        # {"ids": [...], "fields": [...]} (up to 2,000 ids); null for ids that are not there
        # (REST API guide, resources_composite_sobjects_collections_retrieve).
        obj = self._find_object(object_name)
        if obj is None:
            return _error(404, "NOT_FOUND", "The requested resource does not exist")
        if request.method == "POST":
            try:
                body = request.json()
            except ValueError:
                return _error(400, "JSON_PARSER_ERROR", "Malformed JSON body")
            if not isinstance(body, dict):
                return _error(400, "JSON_PARSER_ERROR", "Expected a JSON object")
            ids = [str(i) for i in body.get("ids") or []]
            names = [str(n) for n in body.get("fields") or []]
            cap = 2000
        else:
            ids = [i for i in (request.param("ids") or "").split(",") if i]
            names = [n for n in (request.param("fields") or "").split(",") if n]
            cap = 800
        if not ids or not names:
            missing = "ids" if not ids else "fields"
            return _error(400, "MISSING_ARGUMENT", f"{missing} is required")
        if len(ids) > cap:
            return _error(400, "EXCEEDED_ID_LIMIT", f"cannot retrieve more than {cap} ids")
        plan: list[FieldRef] = []
        for name in names:
            ref = FieldRef(tuple(name.strip().split(".")), 1)
            if ref.path == ("Id",) or self._find_path(obj, ref.path):
                plan.append(ref)
                continue
            return _error(
                400, "INVALID_FIELD", f"No such column '{name}' on entity '{obj.name}'", [name]
            )
        if all(ref.path != ("Id",) for ref in plan):
            plan.insert(0, FieldRef(("Id",), 1))
        out: list[dict[str, Any] | None] = []
        with self._lock:
            for raw in ids:
                row = self.rows[obj.name].get(to_id18(raw) or raw)
                out.append(
                    None
                    if row is None or row["IsDeleted"]
                    else self._render(obj, row, plan, version)
                )
        return Response.json(200, out)

    def _find_path(self, obj: SObject, path: tuple[str, ...]) -> bool:
        current = obj
        for hop in path[:-1]:
            link = current.relationships.get(hop.lower())
            if link is None or not link.reference_to:
                return False
            current = self.schema[link.reference_to[0]]
        return current.field(path[-1]) is not None

    def _collections_upsert(self, request: Request, object_name: str, field_name: str) -> Response:
        # PATCH composite/sobjects/{object}/{externalIdField}: create or update up to 200
        # records matched on an external id; each result says `created` (REST API guide,
        # resources_composite_sobjects_collections_upsert).
        obj = self._find_object(object_name)
        if obj is None:
            return _error(404, "NOT_FOUND", "The requested resource does not exist")
        key = obj.field(field_name)
        if key is None or not (key.external_id or key.name == "Id"):
            return _error(
                400,
                "INVALID_FIELD",
                f"Field name provided, {field_name} is not an External ID or indexed field for "
                f"{obj.name}",
            )
        parsed = _collection_records(request)
        if isinstance(parsed, Response):
            return parsed
        records, all_or_none = parsed
        with self._lock:
            plans: list[tuple[str | None, dict[str, Any]] | RecordError] = []
            seen: Counter[str] = Counter()
            for raw in records:
                typed = _typed_record(raw)
                if isinstance(typed, Response):
                    return typed
                data, type_name = typed
                if type_name.lower() != obj.name.lower():
                    return _error(
                        400, "INVALID_TYPE", f"Record type {type_name} does not match {obj.name}"
                    )
                value = next((v for k, v in data.items() if k.lower() == key.name.lower()), None)
                if value in (None, ""):
                    plans.append(
                        RecordError(
                            "MISSING_ARGUMENT", f"{key.name} not specified in an upsert call"
                        )
                    )
                    continue
                seen[str(value)] += 1
                found = [
                    row["Id"]
                    for row in self.rows[obj.name].values()
                    if not row["IsDeleted"] and str(row.get(key.name)) == str(value)
                ]
                if len(found) > 1:
                    plans.append(
                        RecordError(
                            "DUPLICATE_EXTERNAL_ID",
                            f"{key.name}: more than one record found for external id field: "
                            f"{found}",
                            [key.name],
                        )
                    )
                    continue
                if not found and key.name == "Id":
                    plans.append(
                        RecordError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id")
                    )
                    continue
                if found:  # matched on it; the key itself is not rewritten
                    data = {k: v for k, v in data.items() if k.lower() != key.name.lower()}
                plans.append((found[0] if found else None, data))
            outcomes: list[dict[str, Any] | RecordError] = []
            staged: list[tuple[str | None, dict[str, Any]]] = []
            for index, plan in enumerate(plans):
                if isinstance(plan, RecordError):
                    outcomes.append(plan)
                    continue
                value = str(
                    next(v for k, v in records[index].items() if k.lower() == key.name.lower())
                )
                if seen[value] > 1:
                    outcomes.append(
                        RecordError(
                            "DUPLICATE_VALUE",
                            f"Duplicate external id specified: {value}",
                            [key.name],
                        )
                    )
                    continue
                record_id, data = plan
                try:
                    clean = self._validate(obj, record_id, data, record_id is None, request)
                except RecordError as exc:
                    outcomes.append(exc)
                    continue
                staged.append((record_id, clean))
                outcomes.append({"pending": True})
            failed = any(isinstance(o, RecordError) for o in outcomes)
            staged_iter = iter(staged)
            results: list[dict[str, Any]] = []
            for outcome in outcomes:
                if isinstance(outcome, RecordError):
                    results.append({"success": False, "errors": [outcome.as_result()]})
                    continue
                record_id, clean = next(staged_iter)
                if failed and all_or_none:
                    results.append({"success": False, "errors": [_ROLLED_BACK]})
                    continue
                new_id = self._apply(obj, record_id, clean, self._stamp())
                results.append(
                    {"id": new_id, "success": True, "errors": [], "created": record_id is None}
                )
        return Response.json(200, results)

    # ---------------------------------------------------------------- validation and apply

    def _write(
        self,
        obj: SObject,
        items: list[tuple[str | None, dict[str, Any]]],
        *,
        creating: bool,
        request: Request | None = None,
    ) -> list[dict[str, Any]]:
        """Validate then apply; raises the first RecordError (single-record semantics)."""
        staged = [(rid, self._validate(obj, rid, data, creating, request)) for rid, data in items]
        stamp = self._stamp()
        return [{"id": self._apply(obj, rid, clean, stamp)} for rid, clean in staged]

    def _validate(
        self,
        obj: SObject,
        record_id: str | None,
        data: dict[str, Any],
        creating: bool,
        request: Request | None,
    ) -> dict[str, Any]:
        if not creating:
            if record_id is None or record_id not in self.rows[obj.name]:
                raise RecordError(
                    "INVALID_CROSS_REFERENCE_KEY" if record_id else "MALFORMED_ID",
                    "invalid cross reference id",
                    [],
                )
            if self.rows[obj.name][record_id]["IsDeleted"]:
                raise RecordError("ENTITY_IS_DELETED", "entity is deleted", [])
        clean: dict[str, Any] = {}
        not_writable: list[str] = []
        for key, value in data.items():
            fdef = obj.field(key)
            if fdef is None:
                raise RecordError(
                    "INVALID_FIELD", f"No such column '{key}' on sobject of type {obj.name}", [key]
                )
            if not (fdef.createable if creating else fdef.updateable):
                not_writable.append(fdef.name)
                continue
            clean[fdef.name] = self._coerce(obj, fdef, value)
        if not_writable:
            names = ", ".join(not_writable)
            raise RecordError(
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                f"Unable to create/update fields: {names}. Please check the security settings of "
                "this field and verify that it is read/write for your profile or permission set.",
                not_writable,
            )
        if creating:
            for fdef in obj.fields:
                # OwnerId defaults to the calling user, as in Salesforce.
                required = not fdef.nillable and fdef.createable and fdef.default is None
                if required and fdef.name != "OwnerId" and clean.get(fdef.name) is None:
                    raise RecordError(
                        "REQUIRED_FIELD_MISSING",
                        f"Required fields are missing: [{fdef.name}]",
                        [fdef.name],
                    )
        else:
            for name, value in clean.items():
                if value is None and not obj.by_lower[name.lower()].nillable:
                    raise RecordError(
                        "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{name}]", [name]
                    )
        if obj.name == "Task":
            owner = clean.get("OwnerId")
            if owner is not None and not self.rows["User"][owner]["IsActive"]:
                raise RecordError(
                    "INACTIVE_OWNER_OR_USER", "operation performed with inactive user", ["OwnerId"]
                )
        if record_id is not None and self._locks.get(record_id, 0) > 0:
            self._locks[record_id] -= 1
            raise RecordError(
                "UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access to this record", []
            )
        faults = request.faults if request is not None else None
        if faults is not None:
            if faults.roll(faults.lock_error_rate):
                raise RecordError(
                    "UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access to this record", []
                )
            if faults.roll(faults.record_error_rate):
                raise RecordError(
                    "FIELD_CUSTOM_VALIDATION_EXCEPTION",
                    "Sandbox validation rule rejected this record (injected fault)",
                    [],
                )
        if self._validation_rules:
            merged = dict(self.rows[obj.name][record_id]) if record_id else {}
            merged.update(clean)
            for rule in self._validation_rules:
                message = rule(obj.name, merged)
                if message:
                    raise RecordError("FIELD_CUSTOM_VALIDATION_EXCEPTION", message, [])
        return clean

    def _coerce(self, obj: SObject, fdef: FieldDef, value: Any) -> Any:
        # Salesforce names the field by its label in these messages ("Account Name: data value
        # too large: ..."), while `fields` carries the API name.
        label = fdef.label or fdef.name.replace("__c", "").replace("_", " ")

        def wrong() -> RecordError:
            return RecordError(
                "INVALID_TYPE_ON_FIELD_IN_RECORD",
                f"{label}: value not of required type: {value}",
                [fdef.name],
            )

        if value is None:
            return None
        kind = fdef.type
        if kind in NUMBER_TYPES:
            if isinstance(value, bool):
                raise wrong()
            try:
                number = Decimal(str(value))
            except InvalidOperation:
                raise wrong() from None
            if not number.is_finite():
                raise wrong()
            digits = fdef.digits if kind == "int" else fdef.precision
            scale = 0 if kind == "int" else fdef.scale
            rounded = round(number, scale)
            if digits and abs(rounded) >= Decimal(10) ** (digits - scale):
                raise RecordError(
                    "NUMBER_OUTSIDE_VALID_RANGE",
                    f"{label}: value outside of valid range on numeric field: {value}",
                    [fdef.name],
                )
            if kind == "int":
                if number != number.to_integral_value():
                    raise wrong()
                return int(number)
            return float(rounded)
        if kind == "boolean":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower() == "true"
            raise wrong()
        if kind == "date":
            try:
                return date.fromisoformat(str(value)).isoformat()
            except ValueError:
                raise wrong() from None
        if kind == "datetime":
            try:
                return sf_datetime(parse_datetime_literal(str(value)))
            except ValueError:
                raise wrong() from None
        if isinstance(value, bool | dict | list):
            raise wrong()
        text = str(value)
        if kind == "reference":
            ref = to_id18(text)
            if ref is None:
                raise RecordError(
                    "MALFORMED_ID", f"{label}: id value of incorrect type: {text}", [fdef.name]
                )
            targets = [self.schema[t].name for t in fdef.reference_to]
            if not any(ref in self.rows[t] and not self.rows[t][ref]["IsDeleted"] for t in targets):
                raise RecordError(
                    "INVALID_CROSS_REFERENCE_KEY",
                    "invalid cross reference id",
                    [fdef.name],
                )
            return ref
        if kind == "picklist" and fdef.restricted and text not in fdef.picklist:
            raise RecordError(
                "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                f"{label}: bad value for restricted picklist field: {text}",
                [fdef.name],
            )
        if fdef.length and len(text) > fdef.length:
            raise RecordError(
                "STRING_TOO_LONG",
                f"{label}: data value too large: {text[:40]}... (max length={fdef.length})",
                [fdef.name],
            )
        return text

    def _apply(self, obj: SObject, record_id: str | None, clean: dict[str, Any], stamp: str) -> str:
        table = self.rows[obj.name]
        if record_id is None:
            record_id = self._new_id(obj.name)
            row = self._blank(obj.name) | {"Id": record_id, "CreatedDate": stamp}
            if "OwnerId" in obj.position:
                row["OwnerId"] = self.integration_user_id
            table[record_id] = row
            op = "create"
        else:
            row = table[record_id]
            op = "update"
        row.update(clean)
        if obj.name == "Task":
            row["IsClosed"] = row.get("Status") in CLOSED_TASK_STATUSES
            what = row.get("WhatId")
            row["AccountId"] = what if what and what in self.rows["Account"] else None
        self._touch(row, stamp)
        self.writes_log.append(
            {"object": obj.name, "id": record_id, "op": op, "fields": dict(clean)}
        )
        if obj.name == "blng__PaymentAllocationInvoice__c":
            self._roll_up_payments(row.get("blng__Invoice__c"), stamp)
        return record_id

    def _roll_up_payments(self, invoice_id: Any, stamp: str) -> None:
        """Billing's roll-up: an allocation changes its invoice's balance and payment status.

        The impact of an allocation is its amount, of an unallocation minus its amount; the
        invoice's balance is its total less the impacts, and like any roll-up summary the
        change stamps the invoice, so an incremental read sees it again.
        """
        invoice = self.rows["blng__Invoice__c"].get(str(invoice_id))
        if invoice is None:
            return
        applied = sum(
            (-1 if row.get("blng__Type__c") == "Unallocation" else 1)
            * Decimal(str(row.get("blng__Amount__c") or 0))
            for row in self.rows["blng__PaymentAllocationInvoice__c"].values()
            if row.get("blng__Invoice__c") == invoice["Id"] and not row["IsDeleted"]
        )
        total = Decimal(str(invoice.get("blng__TotalAmount__c") or 0))
        balance = max(total - applied, Decimal(0))
        invoice["blng__Balance__c"] = float(balance)
        invoice["blng__PaymentStatus__c"] = (
            "Paid" if balance <= 0 else "Partially Paid" if balance < total else "Unpaid"
        )
        self._touch(invoice, stamp)

    # ---------------------------------------------------------------- Bulk API 2.0

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
        job = self._jobs.get(parts[0])
        if job is None or job["_kind"] != kind:
            return _error(404, "NOT_FOUND", "The requested resource does not exist")
        tail = parts[1].lower() if len(parts) > 1 else ""
        if not tail:
            if method == "GET":
                if job["state"] in ("UploadComplete", "InProgress"):
                    if job["_polls"] >= self.bulk_polls_before_complete:
                        job["state"] = job["_final"]
                    else:
                        job["_polls"] += 1
                        job["state"] = "InProgress"
                return Response.json(200, self._job_json(job))
            if method == "PATCH":
                return self._patch_job(request, job)
            if method == "DELETE":
                del self._jobs[parts[0]]
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
        with self._lock:
            self._seq += 1
            job_id = make_id("750", self._seq)
        now = self._stamp()
        job: dict[str, Any] = {
            "id": job_id,
            "operation": operation,
            "createdById": self.integration_user_id,
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
            obj, ids, plan = self._run(query, operation == "queryAll")
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
            found = self._find_object(str(obj_name))
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
        with self._lock:
            self._jobs[job_id] = job
        return Response.json(200, self._job_json(job))

    def _query_results(self, request: Request, job: dict[str, Any]) -> Response:
        try:
            max_records = int(request.param("maxRecords") or self.bulk_results_page)
            start = int(base64.b64decode(request.param("locator") or "MA==").decode())
        except ValueError:
            return _error(400, "INVALID_LOCATOR", "invalid locator")
        max_records = max(1, max_records)
        ids: list[str] = job["_ids"]
        obj = self.schema[job["_object"]]
        plan: list[FieldRef] = job["_plan"]
        sep = _DELIMITERS[job["columnDelimiter"]]
        eol = "\r\n" if job["lineEnding"] == "CRLF" else "\n"
        chunk = ids[start : start + max_records]
        lines = [sep.join(_csv_cell(".".join(ref.path)) for ref in plan)]
        table = self.rows[obj.name]
        with self._lock:
            for record_id in chunk:
                row = table.get(record_id)
                if row is None:
                    continue
                flat = self._render(obj, row, plan, "62.0")
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
        obj = self.schema[job["object"]]
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
        with self._lock:
            try:
                if operation in ("delete", "hardDelete"):
                    row = self.rows[obj.name].get(to_id18(raw_id) or "")
                    if row is None or row["IsDeleted"]:
                        raise RecordError("ENTITY_IS_DELETED", "entity is deleted", [])
                    row["IsDeleted"] = True
                    self._touch(row, self._stamp())
                    return row["Id"], False
                if operation == "upsert" and external_field:
                    fdef = obj.field(external_field)
                    key_value = record.get(external_field, "")
                    match = [
                        r["Id"]
                        for r in self.rows[obj.name].values()
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
        clean = self._validate(obj, record_id, data, creating, request)
        return self._apply(obj, record_id, clean, self._stamp())


def _num(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def _same(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def _fold(fdef: FieldDef, value: Any) -> Any:
    # SOQL compares text case-insensitively; ids compare exactly.
    if isinstance(value, str) and fdef.type not in ("id", "reference", "date", "datetime"):
        return value.casefold()
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _row_key(
    fdef: FieldDef, get: Callable[[dict[str, Any]], Any]
) -> Callable[[dict[str, Any]], Any]:
    return lambda row: _fold(fdef, get(row))


def _dig(record: dict[str, Any], path: tuple[str, ...]) -> Any:
    current: Any = record
    for part in path:
        if not isinstance(current, dict):
            return None
        key = next((k for k in current if k.lower() == part.lower()), None)
        if key is None:
            # Relationship keys use the relationship name (Owner), paths may too.
            return None
        current = current[key]
    return current


def _csv_cell(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def _csv_value(value: Any) -> str:
    # Bulk 2.0 query results: every value quoted, null as an empty unquoted cell.
    if value is None:
        return ""
    if isinstance(value, bool):
        return _csv_cell("true" if value else "false")
    if isinstance(value, float) and value.is_integer():
        return _csv_cell(str(int(value)))
    return _csv_cell(str(value))


def _csv_doc(header: list[str], rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def _aggregate_value(
    func: str, get: Callable[[dict[str, Any]], Any] | None, rows: list[dict[str, Any]]
) -> Any:
    """COUNT/COUNT_DISTINCT/SUM/AVG/MIN/MAX over a group's rows (nulls ignored, as in SOQL)."""
    if get is None:
        return len(rows)
    values = [v for v in (get(r) for r in rows) if v is not None]
    if func == "COUNT":
        return len(values)
    if func == "COUNT_DISTINCT":
        return len({str(v).lower() for v in values})
    if not values:
        return None
    if func == "MIN":
        return min(values)
    if func == "MAX":
        return max(values)
    total = sum(float(v) for v in values)
    return total if func == "SUM" else total / len(values)
