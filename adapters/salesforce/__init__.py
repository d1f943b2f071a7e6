"""Salesforce adapter: REST and Bulk API 2.0 on simple-salesforce, with our own OAuth and session."""

from __future__ import annotations

from adapters.salesforce.adapter import SalesforceAdapter

__all__ = ["SalesforceAdapter"]
