"""A person at the CRM: edits and reads records through the sandbox's public REST API, with clients we did not write.

Salesforce goes through unmodified simple-salesforce; Zoho and Fxiaoke through plain `requests`
calls written from the vendors' documentation (Zoho CRM v8; Fxiaoke's Open API manual). Field names
are the sandboxes' own API names (hard-coded here, not read from our mappings), so a test that
checks a value through this class checks what the CRM holds.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import requests
from simple_salesforce import Salesforce

from connector.protocol import find_task_marker

API_VERSION = "62.0"
# The fields our presets write, by meaning (see FIELDS).
OUTPUT_MEANINGS = (
    "risk_score",
    "risk_band",
    "risk_level",
    "risk_reasons",
    "recommended_limit",
    "credit_limit",
    "reviewed_at",
)
CLOSED_TASK_STATUSES = frozenset({"Completed"})

# Canonical meaning -> the sandbox's API name, per CRM.
FIELDS: dict[str, dict[str, str]] = {
    "salesforce": {
        "account": "Account",
        "invoice": "Invoice__c",
        "name": "Name",
        "manual_override": "Manual_Override__c",
        "credit_limit": "Credit_Limit__c",
        "annual_revenue": "AnnualRevenue",
        "payment_terms": "Payment_Terms_Days__c",
        "risk_score": "Risk_Score__c",
        "risk_band": "Risk_Rating__c",
        "risk_level": "Risk_Level__c",
        "risk_reasons": "Risk_Reasons__c",
        "recommended_limit": "Recommended_Credit_Limit__c",
        "reviewed_at": "Risk_Reviewed_At__c",
        "invoice_account": "Account__c",
        "issue_date": "Invoice_Date__c",
        "due_date": "Due_Date__c",
        "amount": "Amount__c",
        "balance": "Balance__c",
        "paid_date": "Paid_Date__c",
        "status": "Status__c",
        "open_status": "Open",
    },
    "zoho": {
        "account": "Accounts",
        "invoice": "Invoices",
        "name": "Account_Name",
        "manual_override": "Manual_Override",
        "credit_limit": "Credit_Limit",
        "annual_revenue": "Annual_Revenue",
        "payment_terms": "Payment_Terms_Days",
        "risk_score": "Risk_Score",
        "risk_band": "Risk_Rating",
        "risk_level": "Risk_Level",
        "risk_reasons": "Risk_Reasons",
        "recommended_limit": "Recommended_Credit_Limit",
        "reviewed_at": "Risk_Reviewed_At",
        "invoice_account": "Account_Name",
        "issue_date": "Invoice_Date",
        "due_date": "Due_Date",
        "amount": "Grand_Total",
        "balance": "Balance",
        "paid_date": "Paid_Date",
        "status": "Status",
        "open_status": "Overdue",
    },
    # Fxiaoke has no invoice balance or paid-date field: a payment plan (回款计划) has a planned
    # and a collected amount, and payments (回款明细) booked against it; see FxiaokeUser.
    "fxiaoke": {
        "account": "AccountObj",
        "invoice": "PaymentPlanObj",
        "name": "name",
        "manual_override": "field_MnO7f__c",
        "credit_limit": "field_CrL4c__c",
        "annual_revenue": "field_AnRv1__c",
        "payment_terms": "field_Trm3b__c",
        "risk_score": "field_Rk02b__c",
        "risk_band": "field_Rk01a__c",
        "risk_level": "field_Lv05e__c",
        "risk_reasons": "field_Rr04d__c",
        "recommended_limit": "field_Cl03c__c",
        "reviewed_at": "field_Rv06f__c",
        "invoice_account": "account_id",
        "issue_date": "create_time",
        "due_date": "plan_payment_time",
        "amount": "plan_payment_amount",
        "collected": "actual_payment_amount",
        "status": "plan_payment_status",
        "open_status": "overdue",
    },
}


def _session(ca_bundle: str | None) -> requests.Session:
    session = requests.Session()
    session.verify = ca_bundle or True
    session.trust_env = False  # REQUESTS_CA_BUNDLE would override verify
    return session


class CrmUser:
    """Edits and reads records as a person (or another integration) would."""

    crm: str

    def name(self, meaning: str) -> str:
        """The CRM's API name for a canonical meaning (`credit_limit`, `invoice`, ...)."""
        return FIELDS[self.crm][meaning]

    def update(self, kind: str, record_id: str, values: dict[str, Any]) -> None:
        """Change fields of one record (`kind` is "account" or "invoice"); keys are meanings."""
        raise NotImplementedError

    def get(self, kind: str, record_id: str) -> dict[str, Any]:
        """One record with its values by meaning."""
        raise NotImplementedError

    def accounts(self) -> list[dict[str, Any]]:
        """Every account as {"id", "name"}."""
        raise NotImplementedError

    def account_values(
        self, meanings: tuple[str, ...] = OUTPUT_MEANINGS
    ) -> dict[str, dict[str, Any]]:
        """Every account's values of the given meanings, by account id (one paged read)."""
        raise NotImplementedError

    def invoices(self) -> list[dict[str, Any]]:
        """Every invoice with id, account id and its values by meaning."""
        raise NotImplementedError

    def tasks(self) -> list[dict[str, Any]]:
        """Every task as {"id", "what_id", "subject", "description", "status", "priority"}."""
        raise NotImplementedError

    def _by_meaning(self, record: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for meaning, api_name in FIELDS[self.crm].items():
            if api_name in record:
                out[meaning] = record[api_name]
        return out


class SalesforceUser(CrmUser):
    """simple-salesforce, unmodified, against the sandbox's REST API."""

    crm = "salesforce"

    def __init__(self, sandbox: Any) -> None:
        self.session = _session(sandbox.ca_bundle)
        answer = self.session.post(
            sandbox.token_url,
            data={"grant_type": "client_credentials"},
            auth=(sandbox.client_id, sandbox.client_secret),
            timeout=10,
        )
        answer.raise_for_status()
        token = answer.json()
        self.sf = Salesforce(
            instance_url=token["instance_url"],
            session_id=token["access_token"],
            session=self.session,
            version=API_VERSION,
        )

    def update(self, kind: str, record_id: str, values: dict[str, Any]) -> None:
        data = {self.name(meaning): value for meaning, value in values.items()}
        getattr(self.sf, self.name(kind)).update(record_id, data)

    def get(self, kind: str, record_id: str) -> dict[str, Any]:
        record = dict(getattr(self.sf, self.name(kind)).get(record_id))
        return {"id": record["Id"], **self._by_meaning(record)}

    def accounts(self) -> list[dict[str, Any]]:
        rows = self.sf.query_all("SELECT Id, Name FROM Account ORDER BY Id")["records"]
        return [{"id": row["Id"], "name": row["Name"]} for row in rows]

    def account_values(
        self, meanings: tuple[str, ...] = OUTPUT_MEANINGS
    ) -> dict[str, dict[str, Any]]:
        columns = ", ".join(["Id", *(self.name(n) for n in meanings)])
        rows = self.sf.query_all(f"SELECT {columns} FROM Account ORDER BY Id")["records"]
        return {row["Id"]: self._by_meaning(row) for row in rows}

    def invoices(self) -> list[dict[str, Any]]:
        names = ["invoice_account", "issue_date", "due_date", "amount", "balance", "status"]
        columns = ", ".join(["Id", *(self.name(n) for n in names)])
        rows = self.sf.query_all(f"SELECT {columns} FROM Invoice__c ORDER BY Id")["records"]
        return [
            {"id": row["Id"], "account_id": row["Account__c"], **self._by_meaning(row)}
            for row in rows
        ]

    def tasks(self) -> list[dict[str, Any]]:
        rows = self.sf.query_all(
            "SELECT Id, WhatId, OwnerId, Subject, Description, Status, Priority FROM Task "
            "ORDER BY Id"
        )["records"]
        return [
            {
                "id": row["Id"],
                "what_id": row["WhatId"],
                "owner_id": row["OwnerId"],
                "subject": row["Subject"],
                "description": row["Description"],
                "status": row["Status"],
                "priority": row["Priority"],
            }
            for row in rows
        ]


class ZohoUser(CrmUser):
    """Plain requests against the Zoho sandbox's v8 REST API."""

    crm = "zoho"

    def __init__(self, sandbox: Any) -> None:
        self.session = _session(sandbox.ca_bundle)
        self.api = sandbox.base_url + "/crm/v8"
        answer = self.session.post(
            sandbox.token_url,
            data={
                "grant_type": "refresh_token",
                "client_id": sandbox.client_id,
                "client_secret": sandbox.client_secret,
                "refresh_token": sandbox.refresh_token or "",
            },
            timeout=10,
        )
        answer.raise_for_status()
        self.headers = {"Authorization": f"Zoho-oauthtoken {answer.json()['access_token']}"}

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        answer = self.session.request(
            method, f"{self.api}/{path}", headers=self.headers, timeout=10, **kwargs
        )
        if answer.status_code == 204:
            return {}
        body = answer.json()
        assert answer.status_code < 300, body
        return body

    def update(self, kind: str, record_id: str, values: dict[str, Any]) -> None:
        data = {self.name(meaning): value for meaning, value in values.items()}
        body = self._call(
            "PUT", self.name(kind), json={"data": [{"id": record_id, **data}], "trigger": []}
        )
        assert body["data"][0]["code"] == "SUCCESS", body

    def get(self, kind: str, record_id: str) -> dict[str, Any]:
        record = self._call("GET", f"{self.name(kind)}/{record_id}")["data"][0]
        return {"id": record["id"], **self._by_meaning(record)}

    def _all(self, module: str, fields: list[str]) -> Iterator[dict[str, Any]]:
        page = 1
        while True:
            body = self._call(
                "GET",
                module,
                params={"fields": ",".join(fields), "page": page, "per_page": 200},
            )
            yield from body.get("data") or []
            if not (body.get("info") or {}).get("more_records"):
                return
            page += 1

    def accounts(self) -> list[dict[str, Any]]:
        return [
            {"id": row["id"], "name": row["Account_Name"]}
            for row in self._all("Accounts", ["Account_Name"])
        ]

    def account_values(
        self, meanings: tuple[str, ...] = OUTPUT_MEANINGS
    ) -> dict[str, dict[str, Any]]:
        rows = self._all("Accounts", [self.name(n) for n in meanings])
        return {row["id"]: self._by_meaning(row) for row in rows}

    def invoices(self) -> list[dict[str, Any]]:
        names = ["invoice_account", "issue_date", "due_date", "amount", "balance", "status"]
        rows = self._all("Invoices", [self.name(n) for n in names])
        return [
            {"id": row["id"], "account_id": row["Account_Name"]["id"], **self._by_meaning(row)}
            for row in rows
        ]

    def tasks(self) -> list[dict[str, Any]]:
        rows = self._all(
            "Tasks", ["Subject", "Description", "What_Id", "Owner", "Status", "Priority"]
        )
        return [
            {
                "id": row["id"],
                "what_id": (row.get("What_Id") or {}).get("id"),
                "owner_id": (row.get("Owner") or {}).get("id"),
                "subject": row.get("Subject"),
                "description": row.get("Description"),
                "status": row.get("Status"),
                "priority": row.get("Priority"),
            }
            for row in rows
        ]


# Fxiaoke stores dates as epoch ms of the tenant's midnight; describe says GMT+8 (the default).
CHINA = timezone(timedelta(hours=8))
_PRIORITY = re.compile(r"Priority: \S+ (high|normal|low)")


class FxiaokeUser(CrmUser):
    """Plain requests against the Fxiaoke sandbox, as the Open API manual documents the calls.

    Token: `POST /oauth2.0/token` with appId/appSecret/permanentCode and `grantType: app_secret`,
    then `authorization: Bearer`, `x-fs-ea`, `x-fs-userid` headers (developer.fxiaoke.com
    openapi_v2 .../start/auth/app-info.html). Reads are `data/query` pages of 100 by `_id GT`
    (the manual's deep-paging answer), writes `data/update` with the flags at the top level.
    Values come back as a person sees them: custom select fields by label (their values are
    generated codes), money and numbers as numbers, dates as ISO dates in the tenant's zone.
    A follow-up (销售记录) is "Completed" when its status field says 已完成.
    """

    crm = "fxiaoke"
    STATUS_FIELD = "field_Fs08h__c"

    def __init__(self, sandbox: Any) -> None:
        self.session = _session(sandbox.ca_bundle)
        self.base = sandbox.base_url
        token = self._post(
            "/oauth2.0/token",
            {
                "appId": sandbox.client_id,
                "appSecret": sandbox.client_secret,
                "permanentCode": sandbox.refresh_token,
                "grantType": "app_secret",
            },
        )
        self.headers = {
            "authorization": f"Bearer {token['accessToken']}",
            "x-fs-ea": token["ea"],
            "x-fs-userid": str(sandbox.emulator.username),
        }
        self._described: dict[str, dict[str, dict[str, Any]]] = {}

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = self.session.post(
            f"{self.base}{path}",
            params={"thirdTraceId": str(uuid.uuid4())},
            json=body,
            headers=getattr(self, "headers", {}),
            timeout=10,
        )
        payload: dict[str, Any] = answer.json()
        assert answer.status_code == 200 and payload.get("errorCode") == 0, payload
        return payload

    def fields(self, obj: str, *, fresh: bool = False) -> dict[str, dict[str, Any]]:
        """describe's field entries of one object (cached until `fresh` or an unknown option)."""
        if fresh or obj not in self._described:
            answer = self._post(
                "/cgi/crm/v2/object/describe", {"data": {"apiName": obj, "includeDetail": False}}
            )
            self._described[obj] = answer["data"]["describe"]["fields"]
        return self._described[obj]

    def _options(self, obj: str, field: str, value: Any) -> list[dict[str, Any]]:
        """A select field's options; describe is read again when `value` is none of them (an
        admin changed the options since)."""
        options = list(self.fields(obj).get(field, {}).get("options") or [])
        if not any(value in (o["label"], o["value"]) for o in options):
            options = list(self.fields(obj, fresh=True).get(field, {}).get("options") or [])
        return options

    def _to_wire(self, obj: str, field: str, value: Any) -> Any:
        spec = self.fields(obj).get(field) or {}
        kind = spec.get("type")
        if value is None:
            return None
        if kind in ("select_one", "select_many"):
            for option in self._options(obj, field, value):
                if value in (option["label"], option["value"]):
                    return option["value"]
            return value  # not an option: let the CRM refuse it
        if kind == "date" and isinstance(value, str):
            day = date.fromisoformat(value)
            return int(datetime(day.year, day.month, day.day, tzinfo=CHINA).timestamp() * 1000)
        if kind == "date_time" and isinstance(value, str):
            return int(datetime.fromisoformat(value).timestamp() * 1000)
        return value

    def _from_wire(self, obj: str, field: str, value: Any) -> Any:
        spec = self.fields(obj).get(field) or {}
        kind = spec.get("type")
        if value is None or value == "":
            return None
        if kind in ("number", "currency", "percentile"):
            return float(Decimal(str(value)))
        if kind == "date":
            return datetime.fromtimestamp(int(value) / 1000, CHINA).date().isoformat()
        if kind == "date_time":
            return datetime.fromtimestamp(int(value) / 1000, CHINA).isoformat()
        if kind == "select_one" and spec.get("define_type") == "custom":
            labels = {o["value"]: o["label"] for o in self._options(obj, field, value)}
            return labels.get(value, value)
        return value

    def _readable(self, obj: str, row: dict[str, Any]) -> dict[str, Any]:
        out = {"id": row["_id"]}
        for meaning, api_name in FIELDS[self.crm].items():
            if api_name in row:
                out[meaning] = self._from_wire(obj, api_name, row[api_name])
        if obj == "PaymentPlanObj" and out.get("amount") is not None:
            # What is still to be collected: the plan's amount less what was collected.
            out["balance"] = out["amount"] - (out.get("collected") or 0.0)
        return out

    def _all(
        self, obj: str, projection: list[str], filters: list[dict[str, Any]] | None = None
    ) -> Iterator[dict[str, Any]]:
        last: str | None = None
        while True:
            where = list(filters or [])
            if last is not None:
                where.append({"field_name": "_id", "operator": "GT", "field_values": [last]})
            answer = self._post(
                "/cgi/crm/v2/data/query",
                {
                    "data": {
                        "dataObjectApiName": obj,
                        "search_query_info": {
                            "limit": 100,
                            "offset": 0,
                            "filters": where,
                            "orders": [{"fieldName": "_id", "isAsc": True}],
                            "fieldProjection": ["_id", *projection],
                        },
                    }
                },
            )
            rows = answer["data"]["dataList"]
            yield from rows
            if len(rows) < 100:
                return
            last = rows[-1]["_id"]

    def _get(self, obj: str, record_id: str) -> dict[str, Any]:
        answer = self._post(
            "/cgi/crm/v2/data/get", {"data": {"dataObjectApiName": obj, "objectDataId": record_id}}
        )
        return dict(answer["data"])

    def _update(self, obj: str, record_id: str, data: dict[str, Any]) -> None:
        # The manual's update page: the trigger flags at the top level; no approval flow, as a
        # person saving the form with approvals off.
        self._post(
            "/cgi/crm/v2/data/update",
            {
                "triggerApprovalFlow": False,
                "triggerWorkFlow": False,
                "data": {"object_data": {"_id": record_id, "dataObjectApiName": obj, **data}},
            },
        )

    def update(self, kind: str, record_id: str, values: dict[str, Any]) -> None:
        obj = self.name(kind)
        values = dict(values)
        if "issue_date" in values:
            raise NotImplementedError(
                "Fxiaoke sets create_time itself: a payment plan's issue date cannot be edited"
            )
        data: dict[str, Any] = {}
        if kind == "invoice" and "balance" in values:
            balance = values.pop("balance")
            planned = self._readable(obj, self._get(obj, record_id))["amount"]
            data["actual_payment_amount"] = str(Decimal(str(planned)) - Decimal(str(balance)))
        paid = values.pop("paid_date", None) if kind == "invoice" else None
        for meaning, value in values.items():
            field = self.name(meaning)
            data[field] = self._to_wire(obj, field, value)
        self._update(obj, record_id, data)
        if paid is not None:
            self._date_payments(record_id, paid)

    def _date_payments(self, plan_id: str, paid: str) -> None:
        """A paid date is the date of the payments booked against the plan (回款明细)."""
        lines = list(
            self._all(
                "OrderPaymentObj",
                ["payment_time"],
                [{"field_name": "payment_plan_id", "operator": "EQ", "field_values": [plan_id]}],
            )
        )
        if not lines:
            raise NotImplementedError(f"plan {plan_id} has no payment to date; book one first")
        for line in lines:
            when = self._to_wire("OrderPaymentObj", "payment_time", paid)
            self._update("OrderPaymentObj", line["_id"], {"payment_time": when})

    def get(self, kind: str, record_id: str) -> dict[str, Any]:
        obj = self.name(kind)
        return self._readable(obj, self._get(obj, record_id))

    def accounts(self) -> list[dict[str, Any]]:
        return [
            {"id": row["_id"], "name": row["name"]} for row in self._all("AccountObj", ["name"])
        ]

    def account_values(
        self, meanings: tuple[str, ...] = OUTPUT_MEANINGS
    ) -> dict[str, dict[str, Any]]:
        rows = self._all("AccountObj", [self.name(n) for n in meanings])
        out = {}
        for row in rows:
            readable = self._readable("AccountObj", row)
            out[row["_id"]] = {k: v for k, v in readable.items() if k in meanings}
        return out

    def invoices(self) -> list[dict[str, Any]]:
        names = ["invoice_account", "issue_date", "due_date", "amount", "collected", "status"]
        rows = self._all("PaymentPlanObj", [self.name(n) for n in names])
        return [
            {"account_id": row["account_id"], **self._readable("PaymentPlanObj", row)}
            for row in rows
        ]

    def tasks(self) -> list[dict[str, Any]]:
        # Invalidated (作废) follow-ups are the CRM's deleted ones: a query leaves them out.
        rows = self._all(
            "ActiveRecordObj",
            ["active_record_content", "related_object_data", "owner", self.STATUS_FIELD],
        )
        done = self._to_wire("ActiveRecordObj", self.STATUS_FIELD, "已完成")
        out = []
        for row in rows:
            text = row.get("active_record_content") or ""
            related = [
                item["id"]
                for item in row.get("related_object_data") or []
                if item.get("describe_api_name") == "AccountObj"
            ]
            priority = _PRIORITY.search(text)
            out.append(
                {
                    "id": row["_id"],
                    "what_id": related[0] if related else None,
                    "owner_id": (row.get("owner") or [None])[0],
                    "subject": text.split("\n", 1)[0],
                    "description": text,
                    "status": "Completed" if row.get(self.STATUS_FIELD) == done else "Open",
                    "priority": priority.group(1).capitalize() if priority else None,
                }
            )
        return out


def crm_user(sandbox: Any) -> CrmUser:
    """The person's client for this sandbox.

    Raises:
        NotImplementedError: no client for the sandbox's CRM yet (a newly added CRM), naming
            the CRM and this file.
    """
    users: dict[str, Callable[[Any], CrmUser]] = {
        "salesforce": SalesforceUser,
        "zoho": ZohoUser,
        "fxiaoke": FxiaokeUser,
    }
    if sandbox.crm not in users:
        raise NotImplementedError(
            f"no person's client for the CRM {sandbox.crm!r}: add a CrmUser subclass for it, "
            f"its FIELDS entry and its line in crm_user() to tests/crm_user.py (CONTRIBUTING.md, "
            f"'Adding a CRM'); the chaos and sandbox suites check the CRM through it"
        )
    return users[sandbox.crm](sandbox)


def open_marked_tasks(user: CrmUser) -> list[dict[str, Any]]:
    """Open tasks that carry our dedupe marker, each with its "key"."""
    out = []
    for task in user.tasks():
        key = find_task_marker(task.get("description"))
        if key and task.get("status") not in CLOSED_TASK_STATUSES:
            out.append({**task, "key": key})
    return out
