"""A person at the CRM: edits and reads records through the sandbox's public REST API, with clients we did not write.

Salesforce goes through unmodified simple-salesforce; Zoho through plain `requests` calls written
from Zoho's v8 documentation. Field names are the sandboxes' own API names (hard-coded here, not
read from our mappings), so a test that checks a value through this class checks what the CRM holds.
"""

from __future__ import annotations

from collections.abc import Iterator
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


def crm_user(sandbox: Any) -> CrmUser:
    """The person's client for this sandbox."""
    return SalesforceUser(sandbox) if sandbox.crm == "salesforce" else ZohoUser(sandbox)


def open_marked_tasks(user: CrmUser) -> list[dict[str, Any]]:
    """Open tasks that carry our dedupe marker, each with its "key"."""
    out = []
    for task in user.tasks():
        key = find_task_marker(task.get("description"))
        if key and task.get("status") not in CLOSED_TASK_STATUSES:
            out.append({**task, "key": key})
    return out
