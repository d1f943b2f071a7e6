"""What a person or an auditor sees in a sandbox CRM, read and edited through the CRM's own REST API.

Tests judge the connector by this view, never by its adapters: Salesforce through
simple-salesforce, Zoho through plain REST v8 calls as Zoho documents them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import requests
from simple_salesforce import Salesforce

from connector.protocol import find_task_marker

SF_API_VERSION = "62.0"
# Fields the presets write, per CRM (canonical -> CRM).
OUTPUT_FIELDS = {
    "salesforce": {
        "risk_score": "Risk_Score__c",
        "risk_band": "Risk_Rating__c",
        "risk_level": "Risk_Level__c",
        "risk_reasons": "Risk_Reasons__c",
        "recommended_credit_limit": "Recommended_Credit_Limit__c",
        "current_credit_limit": "Credit_Limit__c",
        "risk_reviewed_at": "Risk_Reviewed_At__c",
    },
    "zoho": {
        "risk_score": "Risk_Score",
        "risk_band": "Risk_Rating",
        "risk_level": "Risk_Level",
        "risk_reasons": "Risk_Reasons",
        "recommended_credit_limit": "Recommended_Credit_Limit",
        "current_credit_limit": "Credit_Limit",
        "risk_reviewed_at": "Risk_Reviewed_At",
    },
}


def _session(ca_bundle: str | None) -> requests.Session:
    session = requests.Session()
    session.verify = ca_bundle or True
    session.trust_env = False
    return session


class CrmApi:
    """One sandbox CRM seen through its public REST API (a fresh token per instance)."""

    def __init__(self, sandbox: Any) -> None:
        self.crm: str = sandbox.crm
        self.sandbox = sandbox
        self.http = _session(sandbox.ca_bundle)
        if self.crm == "salesforce":
            token = self.http.post(
                sandbox.token_url,
                data={"grant_type": "client_credentials"},
                auth=(sandbox.client_id, sandbox.client_secret),
                timeout=10,
            )
            token.raise_for_status()
            body = token.json()
            self.sf = Salesforce(
                instance_url=body["instance_url"],
                session_id=body["access_token"],
                session=self.http,
                version=SF_API_VERSION,
            )
        else:
            token = self.http.post(
                sandbox.token_url,
                data={
                    "grant_type": "refresh_token",
                    "client_id": sandbox.client_id,
                    "client_secret": sandbox.client_secret,
                    "refresh_token": sandbox.refresh_token,
                },
                timeout=10,
            )
            token.raise_for_status()
            self.zoho_base = f"{sandbox.base_url}/crm/v8"
            self.http.headers["Authorization"] = f"Zoho-oauthtoken {token.json()['access_token']}"

    def close(self) -> None:
        self.http.close()

    # -- Zoho plumbing ---------------------------------------------------------------------------

    def _zoho(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, f"{self.zoho_base}/{path}", timeout=20, **kwargs)
        if response.status_code == 204:
            return {}
        response.raise_for_status()
        return response.json()

    def _zoho_list(self, module: str, fields: list[str]) -> Iterator[dict[str, Any]]:
        page = 1
        while True:
            body = self._zoho(
                "GET",
                module,
                params={"fields": ",".join(fields), "per_page": 200, "page": page},
            )
            yield from body.get("data", [])
            if not body.get("info", {}).get("more_records"):
                return
            page += 1

    # -- reading -----------------------------------------------------------------------------------

    def accounts(self, fields: list[str]) -> dict[str, dict[str, Any]]:
        """Account id -> the given CRM fields."""
        if self.crm == "salesforce":
            rows = self.sf.query_all(f"SELECT Id, {', '.join(fields)} FROM Account")["records"]
            return {row["Id"]: {name: row.get(name) for name in fields} for row in rows}
        return {
            row["id"]: {name: row.get(name) for name in fields}
            for row in self._zoho_list("Accounts", fields)
        }

    def output_values(self) -> dict[str, dict[str, Any]]:
        """Account id -> canonical output field -> CRM value."""
        names = OUTPUT_FIELDS[self.crm]
        rows = self.accounts(list(names.values()))
        return {
            account: {canonical: row.get(crm) for canonical, crm in names.items()}
            for account, row in rows.items()
        }

    def tasks(self) -> list[dict[str, Any]]:
        """Every task: id, account, subject, description, closed, dedupe key (None if not ours)."""
        out = []
        if self.crm == "salesforce":
            rows = self.sf.query_all(
                "SELECT Id, WhatId, Subject, Description, IsClosed, OwnerId, Status FROM Task"
            )["records"]
            for row in rows:
                out.append(
                    {
                        "id": row["Id"],
                        "account_id": row.get("WhatId"),
                        "subject": row.get("Subject") or "",
                        "description": row.get("Description") or "",
                        "closed": bool(row.get("IsClosed")),
                        "owner_id": row.get("OwnerId"),
                        "key": find_task_marker(row.get("Description")),
                    }
                )
            return out
        fields = ["Subject", "Description", "Status", "What_Id", "Owner"]
        for row in self._zoho_list("Tasks", fields):
            what = row.get("What_Id")
            owner = row.get("Owner")
            out.append(
                {
                    "id": row["id"],
                    "account_id": what.get("id") if isinstance(what, dict) else what,
                    "subject": row.get("Subject") or "",
                    "description": row.get("Description") or "",
                    "closed": row.get("Status") == "Completed",
                    "owner_id": owner.get("id") if isinstance(owner, dict) else owner,
                    "key": find_task_marker(row.get("Description")),
                }
            )
        return out

    def open_marked_tasks(self) -> list[dict[str, Any]]:
        """Open tasks carrying our marker."""
        return [task for task in self.tasks() if task["key"] and not task["closed"]]

    # -- editing as a person -----------------------------------------------------------------------

    def update_account(self, account_id: str, values: dict[str, Any]) -> None:
        """Change fields of one account, as a person would in the CRM."""
        if self.crm == "salesforce":
            self.sf.Account.update(account_id, values)
            return
        body = self._zoho("PUT", "Accounts", json={"data": [{"id": account_id, **values}]})
        assert body["data"][0]["status"] == "success", body


@contextmanager
def crm_api(sandbox: Any) -> Iterator[CrmApi]:
    """A CrmApi that is closed afterwards."""
    api = CrmApi(sandbox)
    try:
        yield api
    finally:
        api.close()
